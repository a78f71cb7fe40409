//go:build unix

package safetensors

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mapFile maps the first size bytes of f read-only.
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%d bytes do not fit this platform's address space", size)
	}
	buf, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return buf, func() error { return unix.Munmap(buf) }, nil
}

// evictPages drops the whole pages of a mapped range from this process's
// resident set (madvise MADV_DONTNEED). The mapping is a shared read-only
// map of the file, so the bytes stay valid: a later read faults them back
// in from the page cache or the file.
func evictPages(b []byte) {
	page := uintptr(os.Getpagesize())
	if len(b) == 0 {
		return
	}
	start := uintptr(unsafe.Pointer(&b[0]))
	lo := (start + page - 1) &^ (page - 1)
	hi := (start + uintptr(len(b))) &^ (page - 1)
	if hi <= lo {
		return
	}
	// Best effort: on failure the pages stay resident, which is only memory.
	_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_DONTNEED)
}
