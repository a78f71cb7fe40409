package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// ReplaceDir replaces the directory dir (made, with its parents, if
// missing) with a new one that fill writes, so that a reader, or a crash at
// any point, finds either the old directory or the new one, whole:
//
//  1. the staging sibling <parent>/.<base>.staging-<n> is made and fill
//     writes into it; the files and directories it wrote are fsynced;
//  2. every entry of the old dir that fill did not write (files and whole
//     sub-directories: checkpoints, logs) is carried into it by hard links
//     (copies where links fail), so nothing else in dir is lost;
//  3. the staging directory and dir trade places in one
//     renameat2(RENAME_EXCHANGE) (rename(2)), and the parent is fsynced;
//  4. the old tree, now under the staging name, is removed.
//
// Where the exchange is not available (not Linux, or a filesystem that
// refuses it), step 3 renames dir aside to <staging>.old and the staging
// directory into place: a crash between the two renames leaves no dir, and
// the next ReplaceDir of dir puts the old one back. Every ReplaceDir starts
// by removing the staging directories that killed runs of it left, so there
// must be one writer of dir at a time; entries written into dir by others
// while it runs are lost. A dir that is a symbolic link is followed: the
// directory it names is replaced and the link stays.
func ReplaceDir(dir string, fill func(staging string) error) error {
	return replacer{exchange: exchange}.replace(dir, fill)
}

// ReplaceDirSteps is ReplaceDir calling step with the name of each step
// once it is done ("staged", "filled", "carried", "synced", "aside" on the
// fallback only, "swapped", "done"): crash tests stop the process there.
func ReplaceDirSteps(dir string, fill func(staging string) error, step func(name string)) error {
	return replacer{exchange: exchange, step: step}.replace(dir, fill)
}

// replacer is one ReplaceDir; tests swap its exchange for the fallback's.
type replacer struct {
	exchange func(a, b string) error // errors.ErrUnsupported: rename aside instead
	step     func(name string)       // nil: none
}

const stagingInfix = ".staging-"

func (r replacer) done(step string) {
	if r.step != nil {
		r.step(step)
	}
}

func (r replacer) replace(dir string, fill func(staging string) error) (err error) {
	if dir, err = target(dir); err != nil {
		return err
	}
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	if err := recoverDir(parent, base); err != nil {
		return fmt.Errorf("replace %s: cleaning up an earlier run: %w", dir, err)
	}
	old, err := os.Stat(dir)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	case exists && !old.IsDir():
		return fmt.Errorf("replace %s: not a directory", dir)
	}
	staging, err := os.MkdirTemp(parent, "."+base+stagingInfix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging) // the new tree, or after the exchange the old one
		}
	}()
	mode := fs.FileMode(0o755)
	if exists {
		mode = old.Mode().Perm()
	}
	if err := os.Chmod(staging, mode); err != nil { // MkdirTemp makes it 0700
		return err
	}
	r.done("staged")
	if err := fill(staging); err != nil {
		return err
	}
	r.done("filled")
	if err := syncTree(staging, true); err != nil {
		return err
	}
	if exists {
		if err := carry(dir, staging); err != nil {
			return fmt.Errorf("replace %s: carrying over its other entries: %w", dir, err)
		}
	}
	r.done("carried")
	if err := syncTree(staging, false); err != nil { // the directories carry made, and staging itself
		return err
	}
	r.done("synced")

	if !exists {
		if err := os.Rename(staging, dir); err != nil {
			return err
		}
		r.done("swapped")
		if err := SyncDir(parent); err != nil {
			return err
		}
		r.done("done")
		return nil
	}
	oldTree := staging // after the exchange
	switch err := r.exchange(staging, dir); {
	case errors.Is(err, errors.ErrUnsupported):
		oldTree = staging + ".old"
		if err := os.Rename(dir, oldTree); err != nil {
			return err
		}
		r.done("aside")
		if err := os.Rename(staging, dir); err != nil {
			os.Rename(oldTree, dir) // best effort; else the next ReplaceDir restores it
			return err
		}
	case err != nil:
		return err
	}
	r.done("swapped")
	if err := SyncDir(parent); err != nil {
		return err
	}
	// The new directory is in place: a failure to remove the old tree is
	// not one of the replace; the next ReplaceDir removes what is left.
	os.RemoveAll(oldTree)
	r.done("done")
	return nil
}

// target is dir made absolute, with a final symbolic link followed.
func target(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if fi, err := os.Lstat(dir); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return filepath.EvalSymlinks(dir)
	}
	return dir, nil
}

// recoverDir undoes what killed ReplaceDirs of parent/base left: an old
// directory renamed aside with nothing in its place is put back; staging
// directories (partial new trees, or old trees after an exchange) are
// removed.
func recoverDir(parent, base string) error {
	leftover := regexp.MustCompile(`^\.` + regexp.QuoteMeta(base) + regexp.QuoteMeta(stagingInfix) + `[0-9]+(\.old)?$`)
	ents, err := os.ReadDir(parent)
	if err != nil {
		return err
	}
	dir := filepath.Join(parent, base)
	_, err = os.Lstat(dir)
	missing := errors.Is(err, fs.ErrNotExist)
	for _, e := range ents {
		m := leftover.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		path := filepath.Join(parent, e.Name())
		if m[1] != "" && missing {
			if err := os.Rename(path, dir); err != nil {
				return err
			}
			missing = false
			if err := SyncDir(parent); err != nil {
				return err
			}
			continue
		}
		if err := os.RemoveAll(path); err != nil {
			return err
		}
	}
	return nil
}

// syncTree fsyncs every directory under root (root included) and, with
// files, every regular file.
func syncTree(root string, files bool) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			return SyncDir(path)
		case files && d.Type().IsRegular():
			return syncFile(path)
		}
		return nil
	})
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// carry links every entry of from that to lacks into to, recursing into
// directories (which it makes with the same permissions).
func carry(from, to string) error {
	ents, err := os.ReadDir(from)
	if err != nil {
		return err
	}
	for _, e := range ents {
		src, dst := filepath.Join(from, e.Name()), filepath.Join(to, e.Name())
		if _, err := os.Lstat(dst); err == nil {
			continue // fill wrote it: the new one wins, whole
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if !e.IsDir() {
			if err := os.Link(src, dst); err != nil {
				if err := copyEntry(src, dst); err != nil {
					return err
				}
			}
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if err := os.Mkdir(dst, 0o700); err != nil {
			return err
		}
		if err := carry(src, dst); err != nil {
			return err
		}
		if err := os.Chmod(dst, fi.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// copyEntry copies a regular file (fsynced, with its permissions) or a
// symbolic link, for filesystems that refuse hard links.
func copyEntry(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is neither a file, a directory nor a symbolic link", src)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
