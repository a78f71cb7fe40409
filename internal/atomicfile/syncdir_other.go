//go:build !unix

package atomicfile

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(dir string) error { return nil }
