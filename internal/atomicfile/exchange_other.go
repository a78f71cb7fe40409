//go:build !linux

package atomicfile

import "errors"

// exchange is Linux's renameat2(RENAME_EXCHANGE); elsewhere ReplaceDir
// renames the old directory aside instead.
func exchange(a, b string) error { return errors.ErrUnsupported }
