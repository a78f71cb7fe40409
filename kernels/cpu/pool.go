package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// job is one parallel op: run processes items [lo, hi) on worker w
// (0 = the calling goroutine, 1.. = pool goroutines), so a job can index
// per-worker scratch space without locking.
type job interface {
	run(w, lo, hi int)
}

// pool is a fixed set of goroutines, started once, that help the calling
// goroutine run a job. Items are handed out in chunks of grain through an
// atomic counter, so a core that is busy with something else simply takes
// fewer chunks. Not safe for concurrent parallel calls: Backend serializes
// them.
//
// A decode step is a few hundred jobs of tens of microseconds each, so the
// hand-off itself must cost far less than that: a helper that parked on a
// channel wakes through the OS scheduler in tens of microseconds, by which
// time the caller has done most of the job alone. Helpers therefore spin
// on a job counter for spinTime after each job before they park, and the
// caller spins for the helpers to finish (llama.cpp's CPU thread pool
// polls the same way, ggml-cpu.c's ggml_graph_compute_thread).
type pool struct {
	helpers []*helper
	gen     atomic.Uint64 // bumped once per job, and by close
	pending atomic.Int64  // helpers still draining the current job
	closed  atomic.Bool

	// The current job; written before gen is bumped, read by helpers after.
	job   job
	n     int
	grain int
	next  atomic.Int64

	// The first panic of the current job, from any goroutine: parallel
	// re-raises it on the caller, so a kernel bug reaches the caller's
	// recover instead of killing the process from a helper goroutine.
	mu       sync.Mutex
	panicked any
}

// helper is one pool goroutine's parking state.
type helper struct {
	asleep atomic.Bool
	wake   chan struct{} // capacity 1: the token that ends a park
}

// spinTime is how long an idle helper polls for the next job before it
// parks: longer than the gaps between a forward pass's jobs and between
// decode steps, short enough that an idle server soon stops burning CPU.
const spinTime = 200 * time.Microsecond

func newPool(helpers int) *pool {
	p := &pool{helpers: make([]*helper, helpers)}
	for i := range p.helpers {
		h := &helper{wake: make(chan struct{}, 1)}
		p.helpers[i] = h
		go p.loop(i+1, h)
	}
	return p
}

func (p *pool) loop(w int, h *helper) {
	var seen uint64
	for {
		seen = p.await(h, seen)
		if p.closed.Load() {
			return
		}
		p.safeDrain(w)
		p.pending.Add(-1)
	}
}

// await returns the job counter once it has moved past seen: polling for
// spinTime, then parked until parallel (or close) sends a token. The
// dispatcher bumps gen before it swaps asleep, and a helper sets asleep
// before it reads gen again, so either the helper sees the new job or the
// dispatcher sees it asleep; when both happen, the helper takes the token.
func (p *pool) await(h *helper, seen uint64) uint64 {
	start := time.Now()
	for i := 1; ; i++ {
		if g := p.gen.Load(); g != seen {
			return g
		}
		if i%1024 == 0 {
			if time.Since(start) > spinTime {
				break
			}
			runtime.Gosched() // let anything else that is runnable run
		}
	}
	h.asleep.Store(true)
	if g := p.gen.Load(); g != seen && h.asleep.CompareAndSwap(true, false) {
		return g
	}
	<-h.wake
	return p.gen.Load()
}

// safeDrain drains, recording a panic instead of letting it unwind.
func (p *pool) safeDrain(w int) {
	defer func() {
		if r := recover(); r != nil {
			p.mu.Lock()
			if p.panicked == nil {
				p.panicked = r
			}
			p.mu.Unlock()
			p.next.Store(int64(p.n)) // the others stop taking items
		}
	}()
	p.drain(w)
}

// workers is the number of goroutines that may run a job's items at once.
func (p *pool) workers() int { return len(p.helpers) + 1 }

// parallel runs j over items [0, n) in chunks of at most grain items, and
// returns when all are done. A job with a single chunk runs on the caller
// alone.
func (p *pool) parallel(j job, n, grain int) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	if len(p.helpers) == 0 || n <= grain {
		for lo := 0; lo < n; lo += grain {
			j.run(0, lo, min(lo+grain, n))
		}
		return
	}
	p.job, p.n, p.grain = j, n, grain
	p.next.Store(0)
	p.pending.Store(int64(len(p.helpers)))
	p.gen.Add(1)
	p.wakeAll()
	p.safeDrain(0)
	for i := 1; p.pending.Load() > 0; i++ {
		if i%1024 == 0 {
			runtime.Gosched()
		}
	}
	p.job = nil
	if r := p.panicked; r != nil {
		p.panicked = nil
		panic(r)
	}
}

// wakeAll sends a token to each parked helper.
func (p *pool) wakeAll() {
	for _, h := range p.helpers {
		if h.asleep.Swap(false) {
			h.wake <- struct{}{}
		}
	}
}

func (p *pool) drain(w int) {
	for {
		lo := int(p.next.Add(int64(p.grain))) - p.grain
		if lo >= p.n {
			return
		}
		p.job.run(w, lo, min(lo+p.grain, p.n))
	}
}

// close stops the helper goroutines; later jobs run on the caller alone.
func (p *pool) close() {
	if p.closed.Swap(true) {
		return
	}
	p.gen.Add(1)
	p.wakeAll()
	p.helpers = nil
}
