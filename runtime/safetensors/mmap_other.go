//go:build !unix

package safetensors

import (
	"io"
	"os"
)

// mapFile reads the first size bytes of f into memory (no mmap here).
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	buf := make([]byte, size)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, size), buf); err != nil {
		return nil, nil, err
	}
	return buf, func() error { return nil }, nil
}

// evictPages does nothing: without mmap the file is one heap buffer.
func evictPages([]byte) {}
