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

	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

var greedy = sampler.Params{Temperature: 0, TopP: 1}

// streamTokens is the length of every stream: more than a stream whose
// reader stops reading can generate (the engine's event queue and the
// Generator's relay hold 64 events each; past that the engine does not step
// it). A held stream therefore cannot finish, whatever the machine's load,
// until the test lets its reader go on.
const streamTokens = 160

// stream collects one request's tokens. Its reader takes the first two
// (started is closed then) and no more until hold is closed.
type stream struct {
	tokens  []int32
	err     error
	started chan struct{}
	done    chan struct{}
}

// holdReaders returns a gate for the readers of startStream, and the
// function that opens it (once).
func holdReaders() (<-chan struct{}, func()) {
	c := make(chan struct{})
	return c, sync.OnceFunc(func() { close(c) })
}

func startStream(t *testing.T, hold <-chan struct{}, submit func() (<-chan engine.Event, error)) *stream {
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
				if ev.Err != nil || ev.FinishReason != engine.FinishLength {
					s.err = fmt.Errorf("stream ended with %q, %v", ev.FinishReason, ev.Err)
				}
				continue
			}
			s.tokens = append(s.tokens, ev.Token)
			if len(s.tokens) == 2 {
				close(s.started)
				<-hold
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

func prompts() [][]int32 {
	ps := make([][]int32, 16)
	for i := range ps {
		ps[i] = []int32{1, int32(30 + 7*i), int32(200 + 3*i)} // BOS and two tokens of stories260K's vocabulary
	}
	return ps
}

func request(p []int32) engine.Request {
	return engine.Request{PromptTokens: p, MaxTokens: streamTokens, IgnoreEOS: true, Sampling: greedy}
}

// solo runs each prompt alone through submit.
func solo(t *testing.T, submit func(engine.Request) (<-chan engine.Event, error)) [][]int32 {
	t.Helper()
	var out [][]int32
	free, release := holdReaders()
	release()
	for _, p := range prompts() {
		out = append(out, startStream(t, free, func() (<-chan engine.Event, error) { return submit(request(p)) }).wait(t))
	}
	return out
}

// until waits for cond, looking again each time changed's channel is
// closed (it is read before cond, so no change is missed).
func until(t *testing.T, what string, changed func() <-chan struct{}, cond func() bool) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		ch := changed()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// slotsChanged is closed when a slot of p is released or freed.
func (p *Pool) slotsChanged() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

// Replacing an adapter's files while 16 streams run on it: the running
// streams finish exactly as they would have on the old version, the 16
// started after the reload get the new weights, base streams in the same
// batches are untouched, nothing is dropped; then the adapter is removed
// and unloaded once idle. The streams in flight are held by their readers,
// not by timing.
func TestHotReloadUnder16Streams(t *testing.T) {
	// Base references from a model that never had adapters.
	plain := loadStories(t)
	pe, err := engine.NewEngine(plain, engine.Options{MaxRunning: 1})
	if err != nil {
		t.Fatal(err)
	}
	baseRef := solo(t, func(r engine.Request) (<-chan engine.Event, error) { return pe.Submit(context.Background(), r) })
	pe.Close(context.Background())

	root := t.TempDir()
	dir := filepath.Join(root, "pirate")
	base := plain.Model.Config
	v1 := randomAdapter(base, 8, 16, 11, 0.3, nil)
	v2 := randomAdapter(base, 4, 8, 12, 0.3, []string{"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"})
	saveAdapter(t, dir, v1)
	tp := newTestPool(t, root, 2, 8)
	e, err := engine.NewEngine(tp.model, engine.Options{MaxRunning: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	gen := &Generator{Engine: e, Pool: tp.Pool, Name: "pirate"}
	ctx := context.Background()
	viaAdapter := func(r engine.Request) (<-chan engine.Event, error) { return gen.Submit(ctx, r) }
	viaBase := func(r engine.Request) (<-chan engine.Event, error) { return e.Submit(ctx, r) }
	reg := tp.Registry()

	v1Ref := solo(t, viaAdapter)
	for i := range v1Ref {
		if slices.Equal(v1Ref[i], baseRef[i]) {
			t.Fatalf("prompt %d: the adapter does not change the output: the test would prove nothing", i)
		}
	}

	// 16 streams on v1 and 4 on the base, all generating, none able to
	// finish before release.
	hold, release := holdReaders()
	defer release() // before Close, should the test fail while the readers are held
	var old, bases []*stream
	for _, p := range prompts() {
		old = append(old, startStream(t, hold, func() (<-chan engine.Event, error) { return viaAdapter(request(p)) }))
	}
	for _, p := range prompts()[:4] {
		bases = append(bases, startStream(t, hold, func() (<-chan engine.Event, error) { return viaBase(request(p)) }))
	}
	for _, s := range append(slices.Clone(old), bases...) {
		<-s.started
	}
	oldVersion := tp.status(t, "pirate").Version
	saveAdapter(t, dir, v2)
	until(t, "the watcher to publish the new version", reg.Changed, func() bool { return tp.status(t, "pirate").Version != oldVersion })

	var fresh []*stream
	for _, p := range prompts() {
		fresh = append(fresh, startStream(t, hold, func() (<-chan engine.Event, error) { return viaAdapter(request(p)) }))
	}
	for _, s := range fresh { // admitted: the scheduler gave them v2's slot
		<-s.started
	}
	if in := tp.status(t, "pirate"); in.Refs != 32 || in.Status != StatusLoaded {
		t.Fatalf("mid-reload status %+v: want 32 leases (16 old, 16 new; fewer if a held stream could finish: see streamTokens)", in)
	}
	release()

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
	until(t, "the old version to leave its slot", tp.slotsChanged, func() bool { return testutil.ToFloat64(tp.metrics.loaded) == 1 })
	if n := testutil.ToFloat64(tp.metrics.requests.WithLabelValues("pirate")); n != 64 {
		t.Errorf("requests counted for pirate: %v, want 64", n)
	}
	if n := testutil.ToFloat64(tp.metrics.genTokens.WithLabelValues("pirate")); n != 64*streamTokens {
		t.Errorf("tokens counted for pirate: %v, want %d", n, 64*streamTokens)
	}

	// Removed: unknown to new requests, unloaded once idle.
	hold, release = holdReaders()
	defer release()
	held := startStream(t, hold, func() (<-chan engine.Event, error) { return viaAdapter(request(prompts()[0])) })
	<-held.started
	removeAll(t, dir)
	until(t, "removal", reg.Changed, func() bool { return !reg.Has("pirate") })
	if _, err := gen.Submit(ctx, request(prompts()[0])); !errors.Is(err, ErrNotFound) {
		t.Fatalf("request for a removed adapter: %v", err)
	}
	if testutil.ToFloat64(tp.metrics.loaded) != 1 {
		t.Fatal("the removed adapter left its slot while a stream held it")
	}
	release()
	if got := held.wait(t); !slices.Equal(got, v2Ref[0]) {
		t.Errorf("stream on the removed adapter: %v, want %v", got, v2Ref[0])
	}
	until(t, "unload once idle", tp.slotsChanged, func() bool { return testutil.ToFloat64(tp.metrics.loaded) == 0 })
}

func removeAll(t *testing.T, dir string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}
