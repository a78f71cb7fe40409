package adapters

import (
	"os"
	"path/filepath"
	"testing"
	"time"
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
	weights, _ := os.ReadFile(filepath.Join(src, WeightsName))

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
	copyPart(t, filepath.Join(src, ConfigName), filepath.Join(dir, ConfigName), 1<<20)
	scanAt(0)
	scanAt(2 * time.Second)
	if reg.Has("new") {
		t.Fatal("registered without adapter_model.safetensors")
	}
	// The weights arrive in thirds, 0.6 s apart: never settled.
	for i := 1; i <= 3; i++ {
		copyPart(t, filepath.Join(src, WeightsName), filepath.Join(dir, WeightsName), i*len(weights)/3)
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

	// A change is a new version, also after the debounce.
	b := randomAdapter(tinyConfig(t), 4, 8, 2, 0.2, nil)
	saveAdapter(t, dir, b)
	scanAt(100 * time.Millisecond)
	if got, _ := reg.Get("new"); got.Version != in.Version {
		t.Fatal("new version taken before it settled")
	}
	scanAt(time.Second)
	got, _ := reg.Get("new")
	if fp, _ := fingerprint(dir); got.Version == in.Version || got.Version != fp {
		t.Fatalf("version %s after the change, want %s", got.Version, fp)
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
