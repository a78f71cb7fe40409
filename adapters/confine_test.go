package adapters

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/adapters/peft"
)

// refused asserts that acquiring name fails with a refusal containing want.
func refused(t *testing.T, p *Pool, name, want string) {
	t.Helper()
	l, err := p.Acquire(context.Background(), name)
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), want) {
		if l != nil {
			l.Release()
		}
		t.Fatalf("acquire %s: %v, want a refusal containing %q", name, err, want)
	}
}

// An adapter loaded through the admin API stays confined to the adapters
// directory for life: once its directory (or one of its files) is replaced
// by a symlink leading outside, neither the pool nor the watcher reads the
// files there. The pool refuses to load them even if told of a new version
// (as the watcher once did, from a fingerprint of the outside files); the
// watcher marks the entry refused; a request holding the old version keeps
// it, and no slot ever holds the outside weights. Put back inside, the
// adapter is served again.
func TestAdminAdapterStaysConfined(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	l := loadStories(t)
	base := l.Model.Config
	v1 := randomAdapter(base, 4, 8, 1, 0.2, nil)
	evil := randomAdapter(base, 4, 8, 2, 0.2, nil)
	saveAdapter(t, filepath.Join(root, "t1"), v1)
	saveAdapter(t, filepath.Join(root, "t2"), v1)
	saveAdapter(t, filepath.Join(outside, "evil"), evil)

	reg, err := NewRegistry(root, "stories")
	if err != nil {
		t.Fatal(err)
	}
	w := newWatcher(reg, WatchOptions{Debounce: time.Second})
	now := time.Now()
	w.now = func() time.Time { return now }
	p, err := NewPool(l.Model, 3, 8, 0, reg, PoolOptions{MaxWait: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPool{Pool: p, model: l}
	for name, path := range map[string]string{"x": "t1", "y": "t2"} {
		if _, err := p.LoadAdapter(LoadLoRAAdapterRequest{LoraName: name, LoraPath: path}); err != nil {
			t.Fatal(err)
		}
	}
	held := acquire(t, p, "x")
	tp.holds(t, int(held.Slot()), v1)
	acquire(t, p, "y").Release()
	noEvil := func() {
		t.Helper()
		for i := range p.Slots() {
			if tp.differs(i, evil) == "" {
				t.Fatalf("slot %d holds the weights from outside the adapters directory", i)
			}
		}
	}

	// t1 becomes a symlink to the outside adapter; t2 keeps its directory
	// but its weights become a symlink to the outside weights.
	removeAll(t, filepath.Join(root, "t1"))
	if err := os.Symlink(filepath.Join(outside, "evil"), filepath.Join(root, "t1")); err != nil {
		t.Fatal(err)
	}
	w2 := filepath.Join(root, "t2", peft.WeightsName)
	removeAll(t, w2)
	if err := os.Symlink(filepath.Join(outside, "evil", peft.WeightsName), w2); err != nil {
		t.Fatal(err)
	}

	// The pool, told of the outside files' version, refuses to read them.
	for _, name := range []string{"x", "y"} {
		e, _ := reg.lookup(name)
		fp, err := fingerprint(filepath.Join(root, map[string]string{"x": "t1", "y": "t2"}[name]))
		if err != nil {
			t.Fatal(err)
		}
		reg.setVersion(name, fp, e.dirID)
		refused(t, p, name, "outside the adapters directory")
		if in := tp.status(t, name); in.Status != StatusError {
			t.Fatalf("%s after the refused load: %+v", name, in)
		}
	}
	noEvil()
	tp.holds(t, int(held.Slot()), v1) // the request holding the old version keeps it

	// The watcher refuses them too, at once, and the entries stay refused.
	for range 3 {
		now = now.Add(2 * time.Second)
		w.scan(false)
		for _, name := range []string{"x", "y", "t1", "t2"} {
			refused(t, p, name, "outside the adapters directory")
		}
	}
	noEvil()
	tp.holds(t, int(held.Slot()), v1)
	held.Release()

	// Back inside: served again.
	removeAll(t, filepath.Join(root, "t1"))
	saveAdapter(t, filepath.Join(root, "t1"), v1)
	w.scan(false)
	again := acquire(t, p, "x")
	tp.holds(t, int(again.Slot()), v1)
	again.Release()
	noEvil()
}

// What reaches API clients names the adapter and a reason, never a server
// path: the refusals of Acquire, the admin routes' messages and the
// registry's Info.Error, for every kind of failure. The log keeps the
// paths.
func TestErrorsNameNoServerPath(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	base := loadStories(t).Model.Config
	good := randomAdapter(base, 4, 8, 1, 0.2, nil)
	write := func(dir string, a *peft.Adapter) string {
		saveAdapter(t, dir, a)
		return dir
	}
	write(filepath.Join(outside, "evil"), good)
	os.Symlink(filepath.Join(outside, "evil"), filepath.Join(root, "escape"))
	os.MkdirAll(filepath.Join(root, "linkfile"), 0o755)
	os.Symlink(filepath.Join(outside, "evil", peft.ConfigName), filepath.Join(root, "linkfile", peft.ConfigName))
	os.Symlink(filepath.Join(outside, "evil", peft.WeightsName), filepath.Join(root, "linkfile", peft.WeightsName))
	os.Remove(filepath.Join(write(filepath.Join(root, ".admin", "noweights"), good), peft.WeightsName))
	os.WriteFile(filepath.Join(write(filepath.Join(root, "badjson"), good), peft.ConfigName), []byte(`{"r": 4,`), 0o644)
	os.WriteFile(filepath.Join(write(filepath.Join(root, ".admin", "badjson"), good), peft.ConfigName), []byte(`{"r": 4,`), 0o644)
	os.WriteFile(filepath.Join(write(filepath.Join(root, "dora"), good), peft.ConfigName), []byte(`{"r": 4, "use_dora": true}`), 0o644)
	os.WriteFile(filepath.Join(write(filepath.Join(root, "rank"), good), peft.ConfigName), []byte(`{"r": 16}`), 0o644)
	os.WriteFile(filepath.Join(write(filepath.Join(root, ".admin", "rank"), good), peft.ConfigName), []byte(`{"r": 16}`), 0o644)
	write(filepath.Join(root, "tiny"), randomAdapter(tinyConfig(t), 4, 8, 3, 0.2, []string{"mlp.down_proj"}))
	write(filepath.Join(root, ".admin", "tiny"), randomAdapter(tinyConfig(t), 4, 8, 3, 0.2, []string{"mlp.down_proj"}))
	write(filepath.Join(root, "big"), randomAdapter(base, 16, 8, 2, 0.2, []string{"self_attn.q_proj"}))
	wp := filepath.Join(write(filepath.Join(root, "corrupt"), good), peft.WeightsName)
	data, _ := os.ReadFile(wp)
	os.WriteFile(wp, data[:len(data)/2], 0o644)
	cfgDir := write(filepath.Join(root, "cfgdir"), good)
	os.Remove(filepath.Join(cfgDir, peft.ConfigName))
	os.Mkdir(filepath.Join(cfgDir, peft.ConfigName), 0o755)

	var logs bytes.Buffer
	reg, err := NewRegistry(root, "stories")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w := Watch(reg, WatchOptions{Debounce: 50 * time.Millisecond, Logger: log})
	defer w.Close()
	p, err := NewPool(loadStories(t).Model, 2, 8, 0, reg, PoolOptions{MaxWait: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}

	var msgs []string
	check := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error containing %q", what, err, want)
			return
		}
		msgs = append(msgs, err.Error())
	}
	for name, want := range map[string]string{
		"escape":   "its directory is outside the adapters directory",
		"linkfile": "adapter_config.json is outside the adapters directory",
		"badjson":  "adapter_config.json is not valid JSON",
		"dora":     "DoRA",
		"rank":     "gives it r=16",
		"tiny":     "trained for another model",
		"big":      "above the maximum LoRA rank 8",
		"corrupt":  "truncated or corrupt",
		"cfgdir":   "adapter_config.json is not a regular file",
	} {
		_, err := p.Acquire(context.Background(), name)
		check("acquire "+name, err, want)
		if in := (&testPool{Pool: p}).status(t, name); in.Status == StatusError {
			msgs = append(msgs, in.Error)
		} else {
			t.Errorf("%s: status %+v", name, in)
		}
	}
	_, err = p.Acquire(context.Background(), "nope")
	check("acquire unknown", err, "not found")
	for path, want := range map[string]string{
		"../elsewhere":      "outside the adapters directory",
		outside + "/evil":   "outside the adapters directory",
		"escape":            "outside the adapters directory",
		"linkfile":          "outside the adapters directory",
		".admin/none":       "No adapter found",
		".admin/noweights":  "no adapter_model.safetensors",
		".admin/badjson":    "not valid JSON",
		".admin/rank":       "gives it r=16",
		".admin/tiny":       "trained for another model",
		"cfgdir":            "not a regular file",
		"../" + outside[1:]: "outside the adapters directory",
	} {
		_, err := p.LoadAdapter(LoadLoRAAdapterRequest{LoraName: "admin", LoraPath: path})
		check("load "+path, err, want)
	}
	_, err = p.UnloadAdapter(UnloadLoRAAdapterRequest{LoraName: "nope"})
	check("unload unknown", err, "cannot be found")

	for _, m := range msgs {
		if strings.Contains(m, root) || strings.Contains(m, outside) || strings.Contains(m, os.TempDir()+string(filepath.Separator)) {
			t.Errorf("a server path reaches the client: %s", m)
		}
	}
	if !strings.Contains(logs.String(), filepath.Join(outside, "evil")) {
		t.Errorf("the log does not say where the escaping adapter leads:\n%s", logs.String())
	}
}

// Files that settle into something unservable (here a config of another
// rank beside the old weights) keep a resident version serving from its
// slot, but a version that is not resident is refused at once with the
// reason, rather than waited for until the request's deadline.
func TestPoolServesResidentVersionWhoseFilesAreGone(t *testing.T) {
	root := t.TempDir()
	l := loadStories(t)
	base := l.Model.Config
	a, b := randomAdapter(base, 4, 8, 1, 0.2, nil), randomAdapter(base, 4, 8, 2, 0.2, nil)
	saveAdapter(t, filepath.Join(root, "a"), a)
	saveAdapter(t, filepath.Join(root, "b"), b)
	reg, _ := NewRegistry(root)
	w := newWatcher(reg, WatchOptions{Debounce: time.Second})
	now := time.Unix(1_000_000, 0)
	w.now = func() time.Time { return now }
	w.scan(true)
	p, err := NewPool(l.Model, 2, 8, 0, reg, PoolOptions{MaxWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPool{Pool: p, model: l}
	acquire(t, p, "a").Release()
	for _, name := range []string{"a", "b"} {
		os.WriteFile(filepath.Join(root, name, peft.ConfigName), []byte(`{"r": 16, "lora_alpha": 8}`), 0o644)
	}
	w.scan(false)
	now = now.Add(2 * time.Second)
	w.scan(false)

	la := acquire(t, p, "a")
	tp.holds(t, int(la.Slot()), a)
	la.Release()
	start := time.Now()
	refused(t, p, "b", "adapter_config.json gives it r=16")
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the refusal took %v", d)
	}
}
