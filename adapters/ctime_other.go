//go:build !linux

package adapters

import (
	"os"
	"time"
)

// changeTime is fi's modification time (the status change time is Linux's).
func changeTime(fi os.FileInfo) time.Time { return fi.ModTime() }
