//go:build !unix

package safetensors

// syncDir is a no-op where directories cannot be fsynced.
func syncDir(dir string) error { return nil }
