//go:build unix

package peft

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// Weights truncated while they are read through the file mapping (a cp
// over the file while a server loads it) fault with SIGBUS; that is an
// error of the read, not the end of the process.
func TestReadSurvivesTruncatedMapping(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a")
	a := randomAdapter(8, 16, 1, 0.2, nil)
	saveAdapter(t, dir, a)
	f, err := safetensors.Open(filepath.Join(dir, WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(filepath.Join(dir, WeightsName), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := readMapped(f, &a.Config); err == nil || !strings.Contains(err.Error(), "shrank while it was read") {
		t.Fatalf("reading a truncated mapping: %v", err)
	}
}
