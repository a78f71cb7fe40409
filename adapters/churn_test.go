package adapters

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/adapters/peft"
)

// copyDir copies the adapter files of src into dst, one after the other,
// as cp -r does.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{peft.ConfigName, peft.WeightsName} {
		data, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// An adapter directory replaced by a new complete version every 400 ms,
// with a 400 ms debounce (the reported case, scaled down: a new version
// every second with the default 1 s debounce), by Save, by rm -rf and a
// copy, or by a rename into place. Each version has been complete on disk
// for as long as the debounce before the next arrives: most of them must
// be registered while newer ones keep coming. Before the settle clock
// counted from the files' own timestamps and took directories renamed into
// place whole at once, each change restarted the quiet period when the
// watcher noticed it, and none was (0 of 8 in every mode).
func TestWatcherPicksUpVersionsUnderChurn(t *testing.T) {
	const versions = 8
	const every = 400 * time.Millisecond
	const debounce = 400 * time.Millisecond
	base := tinyConfig(t)
	srcs := t.TempDir()
	for i := range versions {
		saveAdapter(t, filepath.Join(srcs, string(rune('a'+i))), randomAdapter(base, 4, 8, uint64(i+1), 0.2, nil))
	}
	writers := map[string]func(t *testing.T, dir string, i int){
		"save": func(t *testing.T, dir string, i int) {
			saveAdapter(t, dir, mustLoad(t, filepath.Join(srcs, string(rune('a'+i)))))
		},
		"rm and copy": func(t *testing.T, dir string, i int) {
			removeAll(t, dir)
			copyDir(t, filepath.Join(srcs, string(rune('a'+i))), dir)
		},
		"rename into place": func(t *testing.T, dir string, i int) {
			tmp := filepath.Join(filepath.Dir(dir), ".incoming")
			copyDir(t, filepath.Join(srcs, string(rune('a'+i))), tmp)
			removeAll(t, dir)
			if err := os.Rename(tmp, dir); err != nil {
				t.Fatal(err)
			}
		},
	}
	for mode, write := range writers {
		t.Run(mode, func(t *testing.T) {
			t.Parallel() // mostly sleeping
			root := t.TempDir()
			dir := filepath.Join(root, "churn")
			reg, err := NewRegistry(root)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			registered := map[string]bool{}
			reg.onChange(func(name string) {
				if in, ok := reg.Get(name); ok {
					mu.Lock()
					registered[in.Version] = true
					mu.Unlock()
				}
			})
			w := Watch(reg, WatchOptions{Debounce: debounce})
			defer w.Close()
			var written []string
			for i := range versions {
				write(t, dir, i)
				fp, err := fingerprint(dir)
				if err != nil {
					t.Fatal(err)
				}
				written = append(written, fp)
				time.Sleep(every) // the churn itself, not synchronisation
			}
			mu.Lock()
			defer mu.Unlock()
			picked := 0
			for _, v := range written {
				if registered[v] {
					picked++
				}
			}
			t.Logf("%s: %d of %d versions registered", mode, picked, versions)
			if picked < versions/2 {
				t.Errorf("%s: only %d of %d versions registered under churn", mode, picked, versions)
			}
		})
	}
}
