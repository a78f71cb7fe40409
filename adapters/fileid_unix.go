//go:build unix

package adapters

import (
	"os"
	"syscall"
)

// fileID is the inode number of fi's file.
func fileID(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
