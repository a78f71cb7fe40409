//go:build !unix

package adapters

import "os"

const openNonblock = 0

// fileID is 0 where the platform has no portable file identity: the size
// and modification time then tell versions apart.
func fileID(fi os.FileInfo) uint64 { return 0 }
