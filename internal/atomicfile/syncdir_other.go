//go:build !unix

package atomicfile

// SyncDir is a no-op where directories cannot be fsynced.
func SyncDir(dir string) error { return nil }
