//go:build unix

package adapters

import (
	"os"
	"syscall"
)

// openNonblock keeps an open of a FIFO put in an adapter file's place from
// blocking; it changes nothing for regular files.
const openNonblock = syscall.O_NONBLOCK

// fileID is the inode number of fi's file.
func fileID(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
