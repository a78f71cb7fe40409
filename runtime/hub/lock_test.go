//go:build unix

package hub

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// flock locks belong to the open file, so a second open in this process
// waits exactly as another process (or huggingface_hub's filelock) would.
func TestLockFileExcludes(t *testing.T) {
	p := filepath.Join(t.TempDir(), ".locks", "models--a--b", "etag.lock")
	unlock, err := lockFile(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, p); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want a deadline error", err)
	}
	unlock()
	unlock2, err := lockFile(context.Background(), p)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	unlock2()
}
