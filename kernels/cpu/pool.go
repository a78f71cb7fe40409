package cpu

import (
	"sync"
	"sync/atomic"
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
type pool struct {
	wake []chan struct{} // one per helper goroutine
	done sync.WaitGroup

	// The current job; written before the wake-up sends, read by helpers.
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

func newPool(helpers int) *pool {
	p := &pool{wake: make([]chan struct{}, helpers)}
	for i := range p.wake {
		p.wake[i] = make(chan struct{})
		go p.loop(i+1, p.wake[i])
	}
	return p
}

func (p *pool) loop(w int, wake <-chan struct{}) {
	for range wake {
		p.safeDrain(w)
		p.done.Done()
	}
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
func (p *pool) workers() int { return len(p.wake) + 1 }

// parallel runs j over items [0, n) in chunks of at most grain items, and
// returns when all are done. A job with a single chunk runs on the caller
// alone.
func (p *pool) parallel(j job, n, grain int) {
	if n <= 0 {
		return
	}
	grain = max(grain, 1)
	helpers := min(len(p.wake), (n+grain-1)/grain-1)
	if helpers <= 0 {
		for lo := 0; lo < n; lo += grain {
			j.run(0, lo, min(lo+grain, n))
		}
		return
	}
	p.job, p.n, p.grain = j, n, grain
	p.next.Store(0)
	p.done.Add(helpers)
	for i := 0; i < helpers; i++ {
		p.wake[i] <- struct{}{}
	}
	p.safeDrain(0)
	p.done.Wait()
	p.job = nil
	if r := p.panicked; r != nil {
		p.panicked = nil
		panic(r)
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
	for _, c := range p.wake {
		close(c)
	}
	p.wake = nil
}
