package adapters

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// fingerprint identifies the version of the adapter in dir: the size,
// modification time and file identity (inode) of both files, and a hash of
// the (small) config. Writers that replace files by rename change the
// inode, writers in place change the mtime, so any rewrite gives a new one.
func fingerprint(dir string) (string, error) {
	h := sha256.New()
	for _, name := range []string{ConfigName, WeightsName} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%s is not a regular file", filepath.Join(dir, name))
		}
		fmt.Fprintf(h, "%s %d %d %d\n", name, fi.Size(), fi.ModTime().UnixNano(), fileID(fi))
	}
	cfg, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if err != nil {
		return "", err
	}
	h.Write(cfg)
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// resolveInside resolves path (following symlinks) and refuses it unless it
// lies inside root (itself resolved), as do the two adapter files in it:
// a symlink or ".." must not lead the server to read files elsewhere.
func resolveInside(root, path string) (string, error) {
	if abs, err := filepath.Abs(path); err != nil || !within(root, abs) {
		return "", fmt.Errorf("%s is outside the adapters directory %s", path, root)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", err
	}
	if !within(root, real) {
		return "", fmt.Errorf("%s resolves to %s, outside the adapters directory %s", path, real, root)
	}
	for _, name := range []string{ConfigName, WeightsName} {
		f, err := filepath.EvalSymlinks(filepath.Join(real, name))
		if err != nil {
			continue // missing files are reported when the adapter is read
		}
		if !within(root, f) {
			return "", fmt.Errorf("%s/%s resolves to %s, outside the adapters directory %s", path, name, f, root)
		}
	}
	return real, nil
}

// within reports whether path is root or below it (both cleaned, absolute).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// checkName refuses names a client could not use as a model name.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty adapter name")
	case strings.ContainsAny(name, "\x00\n\r"):
		return fmt.Errorf("adapter name %q has control characters", name)
	}
	return nil
}
