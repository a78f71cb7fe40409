//go:build !unix

package hub

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// lockFile only creates the lock file on systems without flock(2): concurrent
// downloads of one blob are not excluded there.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o777); err != nil {
		return nil, fmt.Errorf("hub: creating lock folder: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("hub: opening lock: %w", err)
	}
	return func() { f.Close() }, nil
}
