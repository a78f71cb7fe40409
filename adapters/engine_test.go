package adapters

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parrot-llm/parrot/runtime"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

var greedy = sampler.Params{Temperature: 0, TopP: 1}

// pauser is an engine Observer that can hold the scheduler between steps,
// so a test can change things while streams are provably in flight. It
// counts steps, not time: a loaded machine cannot make a stream finish
// before the hold.
type pauser struct {
	mu   sync.Mutex
	gate *gate // nil: the scheduler runs freely
}

// gate holds the scheduler at the start of a step once after more steps
// have run, until open is closed.
type gate struct {
	after  int
	open   chan struct{}
	parked chan struct{} // closed when the scheduler stops at the gate
	once   sync.Once
}

func newGate(after int) *gate {
	return &gate{after: after, open: make(chan struct{}), parked: make(chan struct{})}
}

func (p *pauser) Queue(running, waiting int) {
	p.mu.Lock()
	g := p.gate
	if g != nil && g.after > 0 {
		g.after--
		g = nil
	}
	p.mu.Unlock()
	if g != nil {
		g.once.Do(func() { close(g.parked) })
		<-g.open
	}
}
func (p *pauser) Finished(int, int, runtime.Timing, string) {}
func (p *pauser) Token(bool, time.Duration)                 {}

// pause holds the scheduler at its next step.
func (p *pauser) pause() { p.pauseAfter(0) }

// pauseAfter lets the scheduler run n more steps (releasing it if held),
// then holds it.
func (p *pauser) pauseAfter(n int) {
	p.mu.Lock()
	old := p.gate
	p.gate = newGate(n)
	p.mu.Unlock()
	if old != nil {
		close(old.open)
	}
}

// held waits until the scheduler stops at the current gate.
func (p *pauser) held() {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	<-g.parked
}

// resume lets the scheduler go on (a no-op if it is not held).
func (p *pauser) resume() {
	p.mu.Lock()
	old := p.gate
	p.gate = nil
	p.mu.Unlock()
	if old != nil {
		close(old.open)
	}
}

// inFlightSteps is how many steps streams run before a hold: enough for
// the prompts' prefill and a few tokens, far fewer than streamTokens.
const inFlightSteps = 8

// stream collects one request's tokens; started closes after its first two.
type stream struct {
	tokens  []int32
	err     error
	started chan struct{}
	done    chan struct{}
}

func startStream(t *testing.T, submit func() (<-chan runtime.Event, error)) *stream {
	t.Helper()
	ch, err := submit()
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{started: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ev := range ch {
			if ev.Done {
				if ev.Err != nil || ev.FinishReason != runtime.FinishLength {
					s.err = fmt.Errorf("stream ended with %q, %v", ev.FinishReason, ev.Err)
				}
				continue
			}
			s.tokens = append(s.tokens, ev.Token)
			if len(s.tokens) == 2 {
				close(s.started)
			}
		}
	}()
	return s
}

func (s *stream) wait(t *testing.T) []int32 {
	t.Helper()
	<-s.done
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.tokens
}

const streamTokens = 40

func prompts() [][]int32 {
	ps := make([][]int32, 16)
	for i := range ps {
		ps[i] = []int32{1, int32(30 + 7*i), int32(200 + 3*i)} // BOS and two tokens of stories260K's vocabulary
	}
	return ps
}

func request(p []int32) runtime.Request {
	return runtime.Request{PromptTokens: p, MaxTokens: streamTokens, IgnoreEOS: true, Sampling: greedy}
}

// solo runs each prompt alone through submit.
func solo(t *testing.T, submit func(runtime.Request) (<-chan runtime.Event, error)) [][]int32 {
	t.Helper()
	var out [][]int32
	for _, p := range prompts() {
		out = append(out, startStream(t, func() (<-chan runtime.Event, error) { return submit(request(p)) }).wait(t))
	}
	return out
}

// Replacing an adapter's files while 16 streams run on it: the running
// streams finish exactly as they would have on the old version, the 16
// started after the reload get the new weights, base streams in the same
// batches are untouched, nothing is dropped; then the adapter is removed
// and unloaded once idle.
func TestHotReloadUnder16Streams(t *testing.T) {
	// Base references from a model that never had adapters.
	plain := loadStories(t)
	pe := runtime.NewEngine(plain, runtime.EngineOptions{MaxRunning: 1})
	baseRef := solo(t, func(r runtime.Request) (<-chan runtime.Event, error) { return pe.Submit(context.Background(), r) })
	pe.Close(context.Background())

	root := t.TempDir()
	dir := filepath.Join(root, "pirate")
	base := plain.Model.Config
	v1 := randomAdapter(base, 8, 16, 11, 0.3, nil)
	v2 := randomAdapter(base, 4, 8, 12, 0.3, []string{"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"})
	saveAdapter(t, dir, v1)
	tp := newTestPool(t, root, 2, 8)
	obs := &pauser{}
	e := runtime.NewEngine(tp.model, runtime.EngineOptions{MaxRunning: 64, Observer: obs})
	defer e.Close(context.Background())
	defer obs.resume() // before Close, should the test fail while the scheduler is held
	gen := &Generator{Engine: e, Pool: tp.Pool, Name: "pirate"}
	ctx := context.Background()
	viaAdapter := func(r runtime.Request) (<-chan runtime.Event, error) { return gen.Submit(ctx, r) }
	viaBase := func(r runtime.Request) (<-chan runtime.Event, error) { return e.Submit(ctx, r) }

	v1Ref := solo(t, viaAdapter)
	for i := range v1Ref {
		if slices.Equal(v1Ref[i], baseRef[i]) {
			t.Fatalf("prompt %d: the adapter does not change the output: the test would prove nothing", i)
		}
	}

	// 16 streams on v1, 4 on the base, submitted while the scheduler is held
	// so they start together; held again a few steps later, all generating.
	obs.pause()
	var old, bases []*stream
	for _, p := range prompts() {
		old = append(old, startStream(t, func() (<-chan runtime.Event, error) { return viaAdapter(request(p)) }))
	}
	for _, p := range prompts()[:4] {
		bases = append(bases, startStream(t, func() (<-chan runtime.Event, error) { return viaBase(request(p)) }))
	}
	obs.pauseAfter(inFlightSteps)
	obs.held()
	for _, s := range append(slices.Clone(old), bases...) {
		<-s.started
	}
	oldVersion := tp.status(t, "pirate").Version
	saveAdapter(t, dir, v2)
	eventually(t, "the watcher to publish the new version", func() bool { return tp.status(t, "pirate").Version != oldVersion })

	var fresh []*stream
	for _, p := range prompts() {
		fresh = append(fresh, startStream(t, func() (<-chan runtime.Event, error) { return viaAdapter(request(p)) }))
	}
	in := tp.status(t, "pirate")
	if in.Refs != 32 || in.Status != StatusLoaded {
		t.Fatalf("mid-reload status %+v: want 32 leases (16 old, 16 new)", in)
	}
	for i, s := range old {
		select {
		case <-s.done:
			t.Fatalf("old stream %d already finished before the reload: the test would prove nothing", i)
		default:
		}
	}
	obs.resume()

	for i, s := range old {
		if got := s.wait(t); !slices.Equal(got, v1Ref[i]) {
			t.Errorf("stream %d started before the reload: %v, want its v1 output %v", i, got, v1Ref[i])
		}
	}
	for i, s := range bases {
		if got := s.wait(t); !slices.Equal(got, baseRef[i]) {
			t.Errorf("base stream %d changed by the adapters in its batch: %v, want %v", i, got, baseRef[i])
		}
	}
	newOut := make([][]int32, len(fresh))
	for i, s := range fresh {
		newOut[i] = s.wait(t)
	}
	v2Ref := solo(t, viaAdapter)
	for i := range fresh {
		if !slices.Equal(newOut[i], v2Ref[i]) {
			t.Errorf("stream %d started after the reload: %v, want its solo v2 output %v", i, newOut[i], v2Ref[i])
		}
		if slices.Equal(v2Ref[i], v1Ref[i]) {
			t.Errorf("prompt %d: v1 and v2 give the same output: the test would prove nothing", i)
		}
	}
	eventually(t, "the old version to leave its slot", func() bool { return testutil.ToFloat64(tp.metrics.loaded) == 1 })
	if n := testutil.ToFloat64(tp.metrics.requests.WithLabelValues("pirate")); n != 64 {
		t.Errorf("requests counted for pirate: %v, want 64", n)
	}
	if n := testutil.ToFloat64(tp.metrics.genTokens.WithLabelValues("pirate")); n != 64*streamTokens {
		t.Errorf("tokens counted for pirate: %v, want %d", n, 64*streamTokens)
	}

	// Removed: unknown to new requests, unloaded once idle.
	obs.pause()
	held := startStream(t, func() (<-chan runtime.Event, error) { return viaAdapter(request(prompts()[0])) })
	obs.pauseAfter(inFlightSteps)
	obs.held()
	<-held.started
	removeAll(t, dir)
	eventually(t, "removal", func() bool { return !tp.Registry().Has("pirate") })
	if _, err := gen.Submit(ctx, request(prompts()[0])); !errors.Is(err, ErrNotFound) {
		t.Fatalf("request for a removed adapter: %v", err)
	}
	if testutil.ToFloat64(tp.metrics.loaded) != 1 {
		t.Fatal("the removed adapter left its slot while a stream held it")
	}
	obs.resume()
	if got := held.wait(t); !slices.Equal(got, v2Ref[0]) {
		t.Errorf("stream on the removed adapter: %v, want %v", got, v2Ref[0])
	}
	eventually(t, "unload once idle", func() bool { return testutil.ToFloat64(tp.metrics.loaded) == 0 })
}

func removeAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}
