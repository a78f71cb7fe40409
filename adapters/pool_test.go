package adapters

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

func loadStories(t testing.TB) *llama.Loaded {
	t.Helper()
	be := cpu.New(2)
	t.Cleanup(be.Close)
	l, err := llama.Load(storiesDir, llama.LoadOptions{Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testPool serves the adapters under root from a fresh stories260K model.
type testPool struct {
	*Pool
	model   *llama.Loaded
	metrics *Metrics
	prom    *prometheus.Registry
	watcher *Watcher
}

func newTestPool(t *testing.T, root string, slots, maxRank int) *testPool {
	t.Helper()
	l := loadStories(t)
	reg, err := NewRegistry(root, "stories")
	if err != nil {
		t.Fatal(err)
	}
	w := Watch(reg, WatchOptions{Debounce: 50 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	t.Cleanup(func() { w.Close() })
	m := NewMetrics(MetricsOptions{})
	prom := prometheus.NewRegistry()
	if err := m.Register(prom); err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(l.Model, slots, maxRank, 0, reg, PoolOptions{Metrics: m, MaxWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &testPool{Pool: p, model: l, metrics: m, prom: prom, watcher: w}
}

// holds checks that slot i contains adapter a: its A rows (zero-padded to
// the max rank) and its B scaled by the PEFT scale, for every projection
// (zero where a has no module).
func (tp *testPool) holds(t *testing.T, slot int, a *peft.Adapter) {
	t.Helper()
	if name := tp.differs(slot, a); name != "" {
		t.Fatalf("slot %d, %s does not hold the expected adapter", slot, name)
	}
}

// differs returns the first projection where slot does not hold a, "" if
// it holds a.
func (tp *testPool) differs(slot int, a *peft.Adapter) string {
	for i := range tp.model.Model.Weights.Layers {
		for _, l := range tp.model.Model.Weights.Layers[i].Projections() {
			s, _ := tp.ls.Module(l.Name)
			gotA, gotB := s.ReadSlot(tp.model.Model.Backend, slot)
			wantA := make([]float32, len(gotA))
			wantB := make([]float32, len(gotB))
			if m := a.Modules[l.Name]; m != nil {
				copy(wantA, m.A)
				scale := a.Config.Scale(l.Name)
				for o := range m.Out {
					for r := range m.Rank {
						wantB[o*s.MaxRank+r] = scale * m.B[o*m.Rank+r]
					}
				}
			}
			if s.BF16 { // what the stack stores
				roundBF16(wantA)
				roundBF16(wantB)
			}
			if !slices.Equal(gotA, wantA) || !slices.Equal(gotB, wantB) {
				return l.Name
			}
		}
	}
	return ""
}

// status returns name's entry in Adapters().
func (tp *testPool) status(t *testing.T, name string) Info {
	t.Helper()
	for _, in := range tp.Adapters() {
		if in.Name == name {
			return in
		}
	}
	t.Fatalf("adapter %s is not registered", name)
	return Info{}
}

// info returns the labels of the lora_requests_info series.
func (tp *testPool) info(t *testing.T) map[string]string {
	t.Helper()
	mfs, err := tp.prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == metricPrefix+"lora_requests_info" {
			if len(mf.Metric) != 1 {
				t.Fatalf("%d lora_requests_info series", len(mf.Metric))
			}
			out := map[string]string{}
			for _, lp := range mf.Metric[0].Label {
				out[lp.GetName()] = lp.GetValue()
			}
			return out
		}
	}
	t.Fatal("no lora_requests_info")
	return nil
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func acquire(t *testing.T, p *Pool, name string) *Claim {
	t.Helper()
	l, err := p.Acquire(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPoolLazyLoadLRUAndRefcounts(t *testing.T) {
	root := t.TempDir()
	base := loadStories(t).Model.Config
	ads := map[string]*peft.Adapter{}
	for i, name := range []string{"a", "b", "c"} {
		ads[name] = randomAdapter(base, 4, 8, uint64(i+1), 0.2, nil)
		saveAdapter(t, filepath.Join(root, name), ads[name])
	}
	tp := newTestPool(t, root, 2, 8)

	// Lazy: registered, nothing resident.
	for _, n := range []string{"a", "b", "c"} {
		if in := tp.status(t, n); in.Status != StatusAvailable || in.Slot != -1 {
			t.Fatalf("%s before use: %+v", n, in)
		}
	}
	la := acquire(t, tp.Pool, "a")
	if la.Slot() != 0 || tp.status(t, "a").Status != StatusLoaded || tp.status(t, "a").Refs != 1 {
		t.Fatalf("a: slot %d, %+v", la.Slot(), tp.status(t, "a"))
	}
	tp.holds(t, 0, ads["a"])
	if got := tp.info(t); got["running_lora_adapters"] != "a" || got["max_lora"] != "2" {
		t.Errorf("lora_requests_info %v", got)
	}
	la.Release()
	la.Release() // a second release is a no-op
	if tp.status(t, "a").Refs != 0 {
		t.Fatalf("a refs after release: %d", tp.status(t, "a").Refs)
	}
	lb := acquire(t, tp.Pool, "b") // a free slot is taken before an idle one is evicted
	if lb.Slot() != 1 {
		t.Fatalf("b in slot %d, want the free slot 1", lb.Slot())
	}
	lb.Release()
	lc := acquire(t, tp.Pool, "c") // evicts the least recently used idle adapter: a
	if lc.Slot() != 0 || tp.status(t, "a").Status != StatusAvailable || tp.status(t, "b").Status != StatusLoaded {
		t.Fatalf("c in slot %d; a %+v; b %+v", lc.Slot(), tp.status(t, "a"), tp.status(t, "b"))
	}
	tp.holds(t, 0, ads["c"])
	if n := testutil.ToFloat64(tp.metrics.evictions); n != 1 {
		t.Errorf("evictions = %v, want 1", n)
	}

	// Both slots held: a waits, and gets ErrBusy past its deadline; nothing held is touched.
	lb = acquire(t, tp.Pool, "b")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := tp.Acquire(ctx, "a")
	cancel()
	if !errors.Is(err, ErrBusy) || !errors.Is(err, engine.ErrOverloaded) {
		t.Fatalf("acquire with every slot held: %v, want ErrBusy", err)
	}
	tp.holds(t, 0, ads["c"])
	tp.holds(t, 1, ads["b"])

	// A waiter gets the first slot released, and is visible as waiting meanwhile.
	got := make(chan *Claim)
	go func() {
		l, err := tp.Acquire(context.Background(), "a")
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	eventually(t, "a waiting", func() bool { return tp.info(t)["waiting_lora_adapters"] == "a" })
	if info := tp.info(t); info["running_lora_adapters"] != "b,c" {
		t.Errorf("running adapters %q, want b,c", info["running_lora_adapters"])
	}
	lb.Release()
	la = <-got
	if la.Slot() != 1 {
		t.Fatalf("a got slot %d, want b's slot 1", la.Slot())
	}
	tp.holds(t, 1, ads["a"])
	tp.holds(t, 0, ads["c"])
	if n := testutil.ToFloat64(tp.metrics.loaded); n != 2 {
		t.Errorf("loaded adapters = %v, want 2", n)
	}
	if n := testutil.CollectAndCount(tp.metrics.loadSeconds); n != 1 {
		t.Errorf("load histogram series %d", n)
	}

	// A cancelled wait returns the context's error, not ErrBusy.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := tp.Acquire(ctx, "b"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	la.Release()
	lc.Release()
	if _, err := tp.Acquire(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown adapter: %v", err)
	}
}

// A changed adapter is a new version in another slot; holders of the old
// one keep it until they release it. A removed adapter is unloaded once idle.
func TestPoolReloadAndRemove(t *testing.T) {
	root := t.TempDir()
	base := loadStories(t).Model.Config
	v1 := randomAdapter(base, 4, 8, 1, 0.2, nil)
	v2 := randomAdapter(base, 8, 8, 2, 0.2, []string{"self_attn.q_proj", "mlp.down_proj"})
	dir := filepath.Join(root, "pirate")
	saveAdapter(t, dir, v1)
	tp := newTestPool(t, root, 3, 8)

	old := acquire(t, tp.Pool, "pirate")
	tp.holds(t, int(old.Slot()), v1)
	oldVersion := tp.status(t, "pirate").Version
	saveAdapter(t, dir, v2)
	eventually(t, "the new version", func() bool { return tp.status(t, "pirate").Version != oldVersion })

	cur := acquire(t, tp.Pool, "pirate")
	if cur.Slot() == old.Slot() {
		t.Fatalf("new version loaded into the held slot %d", cur.Slot())
	}
	tp.holds(t, int(cur.Slot()), v2)
	tp.holds(t, int(old.Slot()), v1) // untouched while held
	if in := tp.status(t, "pirate"); in.Slot != int(cur.Slot()) || in.Refs != 2 {
		t.Fatalf("status %+v", in)
	}
	old.Release()
	if n := testutil.ToFloat64(tp.metrics.loaded); n != 1 {
		t.Fatalf("loaded adapters after the old version went idle: %v, want 1", n)
	}
	again := acquire(t, tp.Pool, "pirate")
	if again.Slot() != cur.Slot() {
		t.Fatalf("current version acquired from slot %d, want %d", again.Slot(), cur.Slot())
	}
	again.Release()

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	eventually(t, "removal", func() bool { return !tp.Registry().Has("pirate") })
	if _, err := tp.Acquire(context.Background(), "pirate"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed adapter: %v", err)
	}
	if n := testutil.ToFloat64(tp.metrics.loaded); n != 1 {
		t.Fatalf("a held removed adapter must stay resident: loaded = %v", n)
	}
	tp.holds(t, int(cur.Slot()), v2)
	cur.Release()
	if n := testutil.ToFloat64(tp.metrics.loaded); n != 0 {
		t.Fatalf("removed adapter still resident once idle: loaded = %v", n)
	}
}

// Invalid adapters are refused with a clear error on Acquire, once (the
// refusal is remembered for that version), and serving goes on.
func TestPoolRefusalsDoNotDisturbServing(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	l := loadStories(t)
	base := l.Model.Config
	saveAdapter(t, filepath.Join(root, "good"), randomAdapter(base, 4, 8, 1, 0.2, nil))
	saveAdapter(t, filepath.Join(root, "big"), randomAdapter(base, 16, 8, 2, 0.2, []string{"self_attn.q_proj"}))
	saveAdapter(t, filepath.Join(root, "tiny"), randomAdapter(tinyConfig(t), 4, 8, 3, 0.2, []string{"mlp.down_proj"}))
	saveAdapter(t, filepath.Join(root, "corrupt"), randomAdapter(base, 4, 8, 4, 0.2, nil))
	w := filepath.Join(root, "corrupt", peft.WeightsName)
	data, _ := os.ReadFile(w)
	os.WriteFile(w, data[:len(data)/2], 0o644)
	saveAdapter(t, filepath.Join(outside, "escape"), randomAdapter(base, 4, 8, 5, 0.2, nil))
	if err := os.Symlink(filepath.Join(outside, "escape"), filepath.Join(root, "escape")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "linkfile"), 0o755)
	os.Symlink(filepath.Join(outside, "escape", peft.ConfigName), filepath.Join(root, "linkfile", peft.ConfigName))
	os.Symlink(filepath.Join(outside, "escape", peft.WeightsName), filepath.Join(root, "linkfile", peft.WeightsName))

	tp := newTestPool(t, root, 2, 8)
	good := acquire(t, tp.Pool, "good")
	for name, want := range map[string]string{
		"big":      "rank 16, above the maximum LoRA rank 8",
		"tiny":     "trained for another model",
		"corrupt":  "corrupt",
		"escape":   "outside the adapters directory",
		"linkfile": "outside the adapters directory",
	} {
		for range 2 {
			_, err := tp.Acquire(context.Background(), name)
			var re *RefusedError
			if !errors.As(err, &re) || !strings.Contains(err.Error(), want) {
				t.Fatalf("%s: %v, want a refusal containing %q", name, err, want)
			}
		}
		if in := tp.status(t, name); in.Status != StatusError || !strings.Contains(in.Error, want) {
			t.Errorf("%s: status %+v", name, in)
		}
	}
	// Each bad version was read once; the escapes and the truncated weights
	// (refused by the watcher, from their header) never.
	if n := testutil.ToFloat64(tp.metrics.loadFailures); n != 2 {
		t.Errorf("load failures = %v, want 2 (big, tiny, each once)", n)
	}
	tp.holds(t, int(good.Slot()), mustLoad(t, filepath.Join(root, "good")))
	good.Release()
	if l2 := acquire(t, tp.Pool, "good"); l2.Slot() != good.Slot() {
		t.Fatalf("good moved from slot %d to %d", good.Slot(), l2.Slot())
	}

	// Fixing the corrupt adapter (a new version) makes it servable.
	saveAdapter(t, filepath.Join(root, "corrupt"), randomAdapter(base, 4, 8, 4, 0.2, nil))
	eventually(t, "the fixed version", func() bool { return tp.status(t, "corrupt").Status == StatusAvailable })
	acquire(t, tp.Pool, "corrupt").Release()
}

func mustLoad(t *testing.T, dir string) *peft.Adapter {
	t.Helper()
	a, err := peft.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestPoolMemoryBudget(t *testing.T) {
	l := loadStories(t)
	per := SlotBytes(l.Model, 8)
	// stories260K: 5 layers; per layer q,k,v,o,gate,up,down (in+out) = 128+96+96+128+236+236+236,
	// 2 bytes a value (the CPU backend's bfloat16 slots).
	if want := int64(5 * 8 * 2 * (128 + 96 + 96 + 128 + 236 + 236 + 236)); per != want {
		t.Fatalf("slot bytes %d, want %d", per, want)
	}
	reg, _ := NewRegistry("")
	p, err := NewPool(l.Model, 4, 8, per*5/2, reg, PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Slots() != 2 {
		t.Fatalf("budget for 2.5 slots gave %d slots", p.Slots())
	}
	if _, err := NewPool(loadStories(t).Model, 4, 8, per-1, reg, PoolOptions{}); err == nil || !strings.Contains(err.Error(), "cannot hold one slot") {
		t.Fatalf("budget below one slot: %v", err)
	}
}

func TestAdminLoadUnload(t *testing.T) {
	root := t.TempDir()
	base := loadStories(t).Model.Config
	saveAdapter(t, filepath.Join(root, ".staging", "x"), randomAdapter(base, 4, 8, 1, 0.2, nil)) // hidden: not watched
	saveAdapter(t, filepath.Join(root, ".staging", "bad"), randomAdapter(tinyConfig(t), 4, 8, 1, 0.2, []string{"mlp.up_proj"}))
	elsewhere := t.TempDir()
	saveAdapter(t, elsewhere, randomAdapter(base, 4, 8, 1, 0.2, nil))
	tp := newTestPool(t, root, 2, 8)
	if tp.Registry().Has("x") {
		t.Fatal("hidden staging directories must not be registered")
	}
	for _, tc := range []struct {
		req  LoadLoRAAdapterRequest
		kind error
		msg  string
	}{
		{LoadLoRAAdapterRequest{LoraName: "x"}, ErrInvalidInput, "Both 'lora_name' and 'lora_path' must be provided."},
		{LoadLoRAAdapterRequest{LoraName: "x", LoraPath: "../outside"}, ErrRefused, "outside the adapters directory"},
		{LoadLoRAAdapterRequest{LoraName: "x", LoraPath: elsewhere}, ErrRefused, "outside the adapters directory"},
		{LoadLoRAAdapterRequest{LoraName: "x", LoraPath: ".staging/none"}, ErrNotFound, "No adapter found"},
		{LoadLoRAAdapterRequest{LoraName: "stories", LoraPath: ".staging/x"}, ErrInvalidInput, "base model's name"},
		{LoadLoRAAdapterRequest{LoraName: "bad", LoraPath: ".staging/bad"}, ErrRefused, "trained for another model"},
	} {
		_, err := tp.LoadAdapter(tc.req)
		var ae *AdminError
		if !errors.As(err, &ae) || !errors.Is(err, tc.kind) || !strings.Contains(ae.Message, tc.msg) {
			t.Errorf("load %+v: %v, want %v %q", tc.req, err, tc.kind, tc.msg)
		}
	}
	if tp.Registry().Has("bad") {
		t.Error("a refused admin load stays registered")
	}
	msg, err := tp.LoadAdapter(LoadLoRAAdapterRequest{LoraName: "x", LoraPath: ".staging/x"})
	if err != nil || msg != "Success: LoRA adapter 'x' added successfully." {
		t.Fatalf("load: %q %v", msg, err)
	}
	if _, err := tp.LoadAdapter(LoadLoRAAdapterRequest{LoraName: "x", LoraPath: ".staging/x"}); err == nil ||
		err.Error() != "The lora adapter 'x' has already been loaded." {
		t.Fatalf("second load: %v", err)
	}
	held := acquire(t, tp.Pool, "x")
	msg, err = tp.UnloadAdapter(UnloadLoRAAdapterRequest{LoraName: "x"})
	if err != nil || msg != "Success: LoRA adapter 'x' removed successfully." {
		t.Fatalf("unload: %q %v", msg, err)
	}
	if _, err := tp.Acquire(context.Background(), "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unloaded adapter: %v", err)
	}
	if testutil.ToFloat64(tp.metrics.loaded) != 1 {
		t.Fatal("an unloaded adapter held by a request must stay resident until released")
	}
	held.Release()
	if testutil.ToFloat64(tp.metrics.loaded) != 0 {
		t.Fatal("an unloaded adapter must leave its slot once idle")
	}
	_, err = tp.UnloadAdapter(UnloadLoRAAdapterRequest{LoraName: "x"})
	var ae *AdminError
	if !errors.As(err, &ae) || !errors.Is(err, ErrNotFound) || ae.Message != "The lora adapter 'x' cannot be found." {
		t.Fatalf("second unload: %v", err)
	}
}

// A sub-directory unloaded by the admin API stays unloaded until it changes.
func TestAdminUnloadOfWatchedDirectory(t *testing.T) {
	root := t.TempDir()
	base := loadStories(t).Model.Config
	dir := filepath.Join(root, "d")
	saveAdapter(t, dir, randomAdapter(base, 4, 8, 1, 0.2, nil))
	tp := newTestPool(t, root, 1, 8)
	if _, err := tp.UnloadAdapter(UnloadLoRAAdapterRequest{LoraName: "d"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // several polls
	if tp.Registry().Has("d") {
		t.Fatal("the watcher brought back an unloaded adapter whose files did not change")
	}
	saveAdapter(t, dir, randomAdapter(base, 4, 8, 2, 0.2, nil))
	eventually(t, "the changed adapter to come back", func() bool { return tp.Registry().Has("d") })
}

// Files rewritten after the registry last saw them settle are not loaded:
// Acquire waits for the new version to be published (here by hand, as the
// watcher would after its debounce), and reports a retryable error if it is
// not in time.
func TestPoolWaitsForChangedFilesToSettle(t *testing.T) {
	l := loadStories(t)
	dir := filepath.Join(t.TempDir(), "s")
	v1 := randomAdapter(l.Model.Config, 4, 8, 1, 0.2, nil)
	v2 := randomAdapter(l.Model.Config, 4, 8, 2, 0.2, nil)
	saveAdapter(t, dir, v1)
	reg, _ := NewRegistry("")
	if err := reg.Add("s", dir); err != nil {
		t.Fatal(err)
	}
	p, err := NewPool(l.Model, 1, 8, 0, reg, PoolOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tp := &testPool{Pool: p, model: l}
	saveAdapter(t, dir, v2) // not yet published
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = p.Acquire(ctx, "s")
	cancel()
	if !errors.Is(err, engine.ErrOverloaded) || !strings.Contains(err.Error(), "being updated") {
		t.Fatalf("acquire of unsettled files: %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		fp, err := fingerprint(dir)
		if err != nil {
			t.Error(err)
		}
		reg.setVersion("s", fp, 0)
	}()
	ls := acquire(t, p, "s")
	tp.holds(t, int(ls.Slot()), v2)
	ls.Release()
}

// roundBF16 rounds v in place to the bfloat16 values a CPU LoRA stack stores.
func roundBF16(v []float32) {
	for i, x := range v {
		v[i] = kernels.BF16ToF32(kernels.F32ToBF16(x))
	}
}
