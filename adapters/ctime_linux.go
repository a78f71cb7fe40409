//go:build linux

package adapters

import (
	"os"
	"syscall"
	"time"
)

// changeTime is the later of fi's modification and status change times:
// the status change time moves whenever the file is written, linked or
// renamed, even by a copy that keeps the modification time (cp -p).
func changeTime(fi os.FileInfo) time.Time {
	t := fi.ModTime()
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if c := time.Unix(st.Ctim.Sec, st.Ctim.Nsec); c.After(t) {
			t = c
		}
	}
	return t
}
