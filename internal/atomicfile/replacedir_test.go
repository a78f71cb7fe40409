package atomicfile

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tree reads every file and symbolic link under dir: path -> content (a
// link as "-> target"). Nil if dir does not exist.
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			out[rel] = "-> " + target
			return err
		}
		data, err := os.ReadFile(path)
		out[rel] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The old and new versions of the directory in these tests: ReplaceDir's
// fill writes a and b, the rest is carried over.
var (
	others   = map[string]string{"keep.txt": "kept", "checkpoint-3/state.json": "{}", "checkpoint-3/deep/x": "x", "link": "-> keep.txt"}
	oldFiles = merge(others, map[string]string{"a": "old a", "b": "old b"})
	newFiles = merge(others, map[string]string{"a": "new a", "b": "new b"})
)

func merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// fillNew writes the new a and b, calling step between them.
func fillNew(step func(string)) func(string) error {
	return func(staging string) error {
		if err := os.WriteFile(filepath.Join(staging, "a"), []byte("new a"), 0o644); err != nil {
			return err
		}
		if step != nil {
			step("half filled")
		}
		return os.WriteFile(filepath.Join(staging, "b"), []byte("new b"), 0o644)
	}
}

func unsupported(a, b string) error { return errors.ErrUnsupported }

// siblings lists the entries of dir's parent other than dir.
func siblings(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != filepath.Base(dir) {
			out = append(out, e.Name())
		}
	}
	return out
}

// ReplaceDir makes a missing directory, and replaces an existing one
// keeping (by hard link) everything fill did not write; with the exchange
// and with the rename-aside fallback alike.
func TestReplaceDir(t *testing.T) {
	for _, r := range []struct {
		name string
		r    replacer
	}{{"exchange", replacer{exchange: exchange}}, {"fallback", replacer{exchange: unsupported}}} {
		t.Run(r.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "parent", "out")
			if err := r.r.replace(dir, fillNew(nil)); err != nil {
				t.Fatal(err)
			}
			if got := tree(t, dir); !maps.Equal(got, map[string]string{"a": "new a", "b": "new b"}) {
				t.Fatalf("new directory holds %v", got)
			}
			if st, _ := os.Stat(dir); st.Mode().Perm() != 0o755 {
				t.Fatalf("new directory mode %v", st.Mode())
			}

			os.RemoveAll(dir)
			writeFiles(t, dir, oldFiles)
			os.Chmod(dir, 0o750)
			before, _ := os.Stat(filepath.Join(dir, "checkpoint-3", "deep", "x"))
			if err := r.r.replace(dir, fillNew(nil)); err != nil {
				t.Fatal(err)
			}
			if got := tree(t, dir); !maps.Equal(got, newFiles) {
				t.Fatalf("replaced directory holds %v, want %v", got, newFiles)
			}
			after, _ := os.Stat(filepath.Join(dir, "checkpoint-3", "deep", "x"))
			if !os.SameFile(before, after) {
				t.Error("a carried file was copied, not linked")
			}
			if st, _ := os.Stat(dir); st.Mode().Perm() != 0o750 {
				t.Errorf("replaced directory mode %v, want the old 0750", st.Mode())
			}
			if s := siblings(t, dir); len(s) != 0 {
				t.Fatalf("left beside the directory: %v", s)
			}
		})
	}
}

// A failing fill leaves the old directory as it was, and nothing beside it.
func TestReplaceDirFillError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	writeFiles(t, dir, oldFiles)
	boom := errors.New("boom")
	err := ReplaceDir(dir, func(staging string) error {
		os.WriteFile(filepath.Join(staging, "a"), []byte("half"), 0o644)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	if got := tree(t, dir); !maps.Equal(got, oldFiles) {
		t.Fatalf("after a failed fill the directory holds %v", got)
	}
	if s := siblings(t, dir); len(s) != 0 {
		t.Fatalf("left beside the directory: %v", s)
	}
}

// A directory given as a symbolic link: the directory it names is
// replaced, the link stays.
func TestReplaceDirThroughSymlink(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "run-3")
	writeFiles(t, real, oldFiles)
	link := filepath.Join(root, "latest")
	if err := os.Symlink("run-3", link); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceDir(link, fillNew(nil)); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(link); err != nil || target != "run-3" {
		t.Fatalf("link now %q, %v", target, err)
	}
	if got := tree(t, real); !maps.Equal(got, newFiles) {
		t.Fatalf("linked directory holds %v", got)
	}
}

// What killed runs leave is cleaned up by the next one: staging trees are
// removed, and an old directory renamed aside with none in its place comes
// back. Look-alike names of other directories are left alone.
func TestReplaceDirRecovers(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "out")
	writeFiles(t, filepath.Join(root, ".out.staging-123"), map[string]string{"a": "partial"})
	writeFiles(t, filepath.Join(root, ".out.staging-456.old"), oldFiles)
	writeFiles(t, filepath.Join(root, ".out.staging-789"), newFiles)
	writeFiles(t, filepath.Join(root, ".out2.staging-1"), map[string]string{"a": "another directory's"})
	writeFiles(t, filepath.Join(root, ".out.staging-x"), map[string]string{"a": "not ours"})
	if err := ReplaceDir(dir, fillNew(nil)); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dir); !maps.Equal(got, newFiles) {
		t.Fatalf("the directory put back and replaced holds %v, want %v", got, newFiles)
	}
	if s := siblings(t, dir); !slices.Equal(s, []string{".out.staging-x", ".out2.staging-1"}) {
		t.Fatalf("beside the directory: %v", s)
	}
	// With the directory in place, an aside copy is stale.
	writeFiles(t, filepath.Join(root, ".out.staging-5.old"), map[string]string{"a": "stale"})
	if err := ReplaceDir(dir, fillNew(nil)); err != nil {
		t.Fatal(err)
	}
	if got := tree(t, dir); !maps.Equal(got, newFiles) {
		t.Fatalf("directory holds %v", got)
	}
	if s := siblings(t, dir); len(s) != 2 {
		t.Fatalf("beside the directory: %v", s)
	}
}

func TestReplaceDirRefusesAFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("x"), 0o644)
	if err := ReplaceDir(p, fillNew(nil)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("replacing a file: %v", err)
	}
}
