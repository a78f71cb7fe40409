package adapters

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/adapters/peft"
)

// copyPart writes the first n bytes of src to dst (a copy in progress).
func copyPart(t *testing.T, src, dst string, n int) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data[:min(n, len(data))], 0o644); err != nil {
		t.Fatal(err)
	}
}

// A directory is taken only once both files exist and kept their sizes and
// mtimes for the debounce interval; a removed one is dropped at once.
// The clock is fake: each scan is one poll.
func TestWatcherDebounce(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	a := randomAdapter(tinyConfig(t), 4, 8, 1, 0.2, nil)
	saveAdapter(t, src, a)
	weights, _ := os.ReadFile(filepath.Join(src, peft.WeightsName))

	root := t.TempDir()
	reg, err := NewRegistry(root)
	if err != nil {
		t.Fatal(err)
	}
	w := newWatcher(reg, WatchOptions{Debounce: time.Second})
	now := time.Unix(1_000_000, 0)
	w.now = func() time.Time { return now }
	scanAt := func(d time.Duration) {
		now = now.Add(d)
		w.scan(false)
	}
	dir := filepath.Join(root, "new")
	os.MkdirAll(dir, 0o755)
	copyPart(t, filepath.Join(src, peft.ConfigName), filepath.Join(dir, peft.ConfigName), 1<<20)
	scanAt(0)
	scanAt(2 * time.Second)
	if reg.Has("new") {
		t.Fatal("registered without adapter_model.safetensors")
	}
	// The weights arrive in thirds, 0.6 s apart: never settled.
	for i := 1; i <= 3; i++ {
		copyPart(t, filepath.Join(src, peft.WeightsName), filepath.Join(dir, peft.WeightsName), i*len(weights)/3)
		scanAt(600 * time.Millisecond)
		if reg.Has("new") {
			t.Fatalf("registered while being copied (%d/3)", i)
		}
	}
	scanAt(900 * time.Millisecond) // 0.9 s after the last change
	if reg.Has("new") {
		t.Fatal("registered before the debounce interval passed")
	}
	scanAt(200 * time.Millisecond)
	in, ok := reg.Get("new")
	if !ok {
		t.Fatal("complete, settled adapter not registered")
	}
	if fp, _ := fingerprint(dir); in.Version != fp || in.Origin != OriginDir || in.Status != StatusAvailable {
		t.Fatalf("entry %+v, fingerprint %s", in, fp)
	}

	// A change written in place is a new version, also after the debounce.
	b := randomAdapter(tinyConfig(t), 4, 8, 2, 0.2, nil)
	saveAdapter(t, src, b)
	copyPart(t, filepath.Join(src, peft.WeightsName), filepath.Join(dir, peft.WeightsName), 1<<30)
	scanAt(100 * time.Millisecond)
	if got, _ := reg.Get("new"); got.Version != in.Version {
		t.Fatal("new version taken before it settled")
	}
	scanAt(time.Second)
	got, _ := reg.Get("new")
	if fp, _ := fingerprint(dir); got.Version == in.Version || got.Version != fp {
		t.Fatalf("version %s after the change, want %s", got.Version, fp)
	}

	// A version saved by Save is renamed into place whole: taken at once.
	saveAdapter(t, dir, a)
	scanAt(0)
	got, _ = reg.Get("new")
	if fp, _ := fingerprint(dir); got.Version != fp {
		t.Fatalf("a directory renamed into place complete was not taken at once: version %s, want %s", got.Version, fp)
	}

	// Explicit entries are followed too.
	other := filepath.Join(t.TempDir(), "static")
	saveAdapter(t, other, a)
	if err := reg.Add("static", other); err != nil {
		t.Fatal(err)
	}
	if err := reg.Add("static", other); err == nil {
		t.Fatal("a name registered twice")
	}
	sv, _ := reg.Get("static")
	saveAdapter(t, other, b)
	scanAt(100 * time.Millisecond)
	scanAt(time.Second)
	if got, _ := reg.Get("static"); got.Version == sv.Version || got.Origin != OriginStatic {
		t.Fatalf("explicit entry after a change: %+v (was %s)", got, sv.Version)
	}

	// Removal is immediate; hidden directories are ignored.
	os.RemoveAll(dir)
	saveAdapter(t, filepath.Join(root, ".tmp-copy"), a)
	scanAt(0)
	if reg.Has("new") || reg.Has(".tmp-copy") {
		t.Fatalf("registry after removal: %+v", reg.List())
	}
	if d, ok := w.nextDue(); ok {
		t.Fatalf("with nothing changing, a scan is still due in %v", d)
	}

	// The first scan of a watcher takes complete adapters without waiting.
	saveAdapter(t, filepath.Join(root, "ready"), a)
	reg2, _ := NewRegistry(root)
	w2 := newWatcher(reg2, WatchOptions{})
	w2.scan(true)
	if !reg2.Has("ready") {
		t.Fatal("the initial scan did not register a complete adapter")
	}
}

// With real notifications and polling: a directory copied in is servable
// shortly after, and one removed is gone.
func TestWatcherFollowsDirectory(t *testing.T) {
	root := t.TempDir()
	reg, err := NewRegistry(root)
	if err != nil {
		t.Fatal(err)
	}
	w := Watch(reg, WatchOptions{Debounce: 50 * time.Millisecond, PollInterval: time.Second})
	defer w.Close()
	saveAdapter(t, filepath.Join(root, "pirate-lora-v2"), randomAdapter(tinyConfig(t), 4, 8, 1, 0.2, nil))
	eventually(t, "registration", func() bool { return reg.Has("pirate-lora-v2") })
	os.RemoveAll(filepath.Join(root, "pirate-lora-v2"))
	eventually(t, "removal", func() bool { return !reg.Has("pirate-lora-v2") })
}

// copyFile replaces the content of dst with src's in place, as cp does.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	copyPart(t, src, dst, 1<<30)
}

// A tool copying a new version file by file over an old one (cp -r new/*
// x/) passes through a config of one version beside the weights of the
// other. That pair is incomplete, however long it stays: the registered
// version keeps serving. Once the second file arrives the new version is
// registered after the debounce, not before. In either copy order, for a
// watched directory and for an explicit entry alike.
func TestWatcherWaitsForMatchingPair(t *testing.T) {
	base := tinyConfig(t)
	src := t.TempDir()
	saveAdapter(t, filepath.Join(src, "r8"), randomAdapter(base, 8, 16, 1, 0.2, nil))
	saveAdapter(t, filepath.Join(src, "r16"), randomAdapter(base, 16, 32, 2, 0.2, nil))
	for _, order := range [][]string{{peft.ConfigName, peft.WeightsName}, {peft.WeightsName, peft.ConfigName}} {
		for _, explicit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s first, explicit %v", order[0], explicit), func(t *testing.T) {
				root := t.TempDir()
				dir := filepath.Join(root, "x")
				name := "x"
				reg, _ := NewRegistry(root)
				if explicit {
					dir = filepath.Join(t.TempDir(), "x")
					name = "static"
				}
				saveAdapter(t, dir, mustLoad(t, filepath.Join(src, "r8")))
				if explicit {
					if err := reg.Add(name, dir); err != nil {
						t.Fatal(err)
					}
				}
				w := newWatcher(reg, WatchOptions{Debounce: time.Second})
				// A fake clock long before the files' timestamps: only what
				// the watcher sees across scans counts, not the real time.
				now := time.Unix(1_000_000, 0)
				w.now = func() time.Time { return now }
				scanAfter := func(d time.Duration) {
					now = now.Add(d)
					w.scan(false)
				}
				scanAfter(0)
				old, ok := reg.Get(name)
				if !ok || old.Status != StatusAvailable {
					t.Fatalf("r=8 adapter not registered: %+v", old)
				}
				keeps := func(when string) {
					t.Helper()
					if got, _ := reg.Get(name); got.Version != old.Version || got.Status != StatusAvailable {
						t.Fatalf("%s: the entry is %+v, want the r=8 version %s serving", when, got, old.Version)
					}
				}

				copyFile(t, filepath.Join(src, "r16", order[0]), filepath.Join(dir, order[0]))
				scanAfter(0)
				keeps("with the first file copied")
				if e, _ := reg.lookup(name); e.gone != nil {
					t.Fatalf("marked gone before the debounce: %v", e.gone)
				}
				scanAfter(2 * time.Second)
				scanAfter(2 * time.Second)
				keeps("with the first file copied, after the debounce")
				// Still served while resident, but a request would not wait to load it.
				if e, _ := reg.lookup(name); e.gone == nil {
					t.Fatal("the registered version's files settled into a mismatched pair, but it is not marked gone")
				}

				copyFile(t, filepath.Join(src, "r16", order[1]), filepath.Join(dir, order[1]))
				scanAfter(0)
				keeps("just after the second file")
				scanAfter(500 * time.Millisecond)
				keeps("before the debounce")
				scanAfter(600 * time.Millisecond)
				got, _ := reg.Get(name)
				fp, _ := fingerprint(dir)
				if got.Version != fp || got.Status != StatusAvailable {
					t.Fatalf("after the debounce: %+v, want version %s", got, fp)
				}
				if e, _ := reg.lookup(name); e.gone != nil {
					t.Fatalf("the new version is marked gone: %v", e.gone)
				}
				if a := mustLoad(t, dir); a.MaxRank() != 16 {
					t.Fatalf("registered files have rank %d", a.MaxRank())
				}
			})
		}
	}
}

// A steady stream of file notifications (a trainer rewriting its state
// file beside the adapter every few milliseconds) must not postpone scans:
// a new version is still registered, with polling out of the picture.
func TestWatcherScansDuringNotificationStorm(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "busy")
	base := tinyConfig(t)
	saveAdapter(t, dir, randomAdapter(base, 4, 8, 1, 0.2, nil))
	src := filepath.Join(t.TempDir(), "v2")
	saveAdapter(t, src, randomAdapter(base, 4, 8, 2, 0.2, nil))
	reg, err := NewRegistry(root)
	if err != nil {
		t.Fatal(err)
	}
	w := Watch(reg, WatchOptions{Debounce: 100 * time.Millisecond, PollInterval: time.Hour})
	defer w.Close()
	if w.fsw == nil {
		t.Skip("no file notifications here")
	}
	old, _ := reg.Get("busy")
	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			os.WriteFile(filepath.Join(dir, "trainer_state.json"), []byte(fmt.Sprint(i)), 0o644)
		}
	}()
	defer func() { close(stop); <-stopped }()
	copyFile(t, filepath.Join(src, peft.WeightsName), filepath.Join(dir, peft.WeightsName))
	eventually(t, "the new version during the storm", func() bool {
		got, _ := reg.Get("busy")
		return got.Version != old.Version
	})
}
