package backends

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	b, closeFn, err := New("cpu", 1)
	if err != nil || !strings.HasPrefix(b.Name(), "cpu") {
		t.Fatalf("cpu backend: %v, %v", b, err)
	}
	closeFn()
	if _, _, err := New("metal", 1); err == nil || !strings.Contains(err.Error(), "unknown backend") {
		t.Fatalf("unknown backend: %v", err)
	}
}
