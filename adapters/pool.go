package adapters

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/parrot-llm/parrot/runtime"
)

// busyError is ErrBusy. It also matches runtime.ErrOverloaded, so a server
// that maps that to 429 with Retry-After does the same for a full pool.
type busyError struct{ msg string }

func (e *busyError) Error() string        { return e.msg }
func (e *busyError) Is(target error) bool { return target == runtime.ErrOverloaded }

var (
	// ErrBusy: every slot stayed held by running requests until the
	// deadline (429 with Retry-After).
	ErrBusy error = &busyError{"all LoRA adapter slots are held by running requests; try again later"}
	// errSettling: the adapter's files are being rewritten (also a 429).
	errSettling error = &busyError{"the adapter's files are being updated; try again shortly"}
)

// PoolOptions tune a Pool; the zero value is usable.
type PoolOptions struct {
	// MaxWait bounds how long Acquire waits for a slot when its context has
	// no deadline (default 30s).
	MaxWait time.Duration
	Metrics *Metrics     // nil: none
	Logger  *slog.Logger // nil: none
}

// Pool keeps adapters resident in the model's LoRA slots. An adapter is read
// on first use into a free slot, or into the least recently used idle one;
// a slot held by a request (refcount > 0) is never rewritten. When the
// registry moves an adapter to a new version (or removes it), requests
// holding the old version keep it, new ones get the new version in another
// slot, and the old slot is freed once idle.
type Pool struct {
	ls      *runtime.LoRASlots
	base    *runtime.Config
	reg     *Registry
	maxWait time.Duration
	metrics *Metrics
	log     *slog.Logger

	mu      sync.Mutex
	slots   []slot
	loads   map[string]*load // by loadKey(name, version)
	waiting map[string]int   // adapter -> requests waiting for it to become resident
	changed chan struct{}    // closed (and replaced) when a slot is released or freed
	clock   uint64           // LRU clock
}

// slot is one resident adapter version.
type slot struct {
	name, version string // "" = free
	ready         bool   // written; false while being installed
	stale         bool   // the registry moved on: no new leases, freed when refs reaches 0
	refs          int
	lastUsed      uint64
}

// load is an adapter version being read; others asking for it wait on done.
type load struct{ done chan struct{} }

func loadKey(name, version string) string { return name + "\x00" + version }

// SlotBytes is the memory one LoRA slot of rank maxRank takes on model: A
// and B of every projection, float32.
func SlotBytes(model *runtime.Model, maxRank int) int64 {
	var n int64
	for i := range model.Weights.Layers {
		for _, l := range model.Weights.Layers[i].Projections() {
			n += int64(maxRank) * int64(l.In+l.Out) * 4
		}
	}
	return n
}

// NewPool enables LoRA on model with slots slots of rank up to maxRank
// (fewer if memoryBudgetBytes > 0 cannot hold them all) and serves the
// adapters of reg from them. Call it before serving: it allocates the slots.
func NewPool(model *runtime.Model, slots, maxRank int, memoryBudgetBytes int64, reg *Registry, opts PoolOptions) (*Pool, error) {
	if reg == nil {
		return nil, errors.New("adapter pool: nil registry")
	}
	if slots <= 0 || maxRank <= 0 {
		return nil, fmt.Errorf("adapter pool: slots (%d) and max rank (%d) must be positive", slots, maxRank)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if memoryBudgetBytes > 0 {
		per := SlotBytes(model, maxRank)
		fit := memoryBudgetBytes / per
		if fit == 0 {
			return nil, fmt.Errorf("adapter pool: a LoRA memory budget of %d bytes cannot hold one slot of rank %d (%d bytes)", memoryBudgetBytes, maxRank, per)
		}
		if fit < int64(slots) {
			log.Warn("LoRA memory budget limits the adapter slots", "asked", slots, "slots", fit, "slot_bytes", per)
			slots = int(fit)
		}
	}
	ls, err := model.EnableLoRA(slots, maxRank)
	if err != nil {
		return nil, fmt.Errorf("adapter pool: %w", err)
	}
	p := &Pool{ls: ls, base: model.Config, reg: reg, maxWait: opts.MaxWait, metrics: opts.Metrics, log: log,
		slots: make([]slot, slots), loads: map[string]*load{}, waiting: map[string]int{}, changed: make(chan struct{})}
	if p.maxWait <= 0 {
		p.maxWait = 30 * time.Second
	}
	reg.onChange(p.retire)
	p.mu.Lock()
	p.publish()
	p.mu.Unlock()
	return p, nil
}

// Slots is the number of adapter slots; MaxRank their rank.
func (p *Pool) Slots() int   { return len(p.slots) }
func (p *Pool) MaxRank() int { return p.ls.MaxRank }

// Registry is the registry the pool serves.
func (p *Pool) Registry() *Registry { return p.reg }

// lease is a request's hold on a resident slot.
type lease struct {
	p       *Pool
	slot    int
	version string // the registry version of the adapter in the slot
	once    sync.Once
}

func (l *lease) Slot() int32 { return int32(l.slot) }
func (l *lease) Release()    { l.once.Do(func() { l.p.release(l.slot) }) }

// Version is the registry version (Info.Version) of the adapter the lease
// holds: the version that served the request. Kept in the lease, it stays
// right after Release, when the slot may be given to another adapter.
func (l *lease) Version() string { return l.version }

// Acquire returns a lease on the current version of adapter name, loading it
// if it is not resident. It waits while every slot is held, until ctx's
// deadline (or the pool's MaxWait), then returns ErrBusy. Errors:
// ErrNotFound for an unknown name, *RefusedError for an adapter that cannot
// be served, ErrBusy, or ctx's error when it is cancelled.
func (p *Pool) Acquire(ctx context.Context, name string) (runtime.AdapterLease, error) {
	deadline := time.Now().Add(p.maxWait)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	// wait blocks on ch; it returns ErrBusy past the deadline.
	wait := func(ch <-chan struct{}, busy error) error {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return busy
			}
			return ctx.Err()
		case <-timer.C:
			return busy
		}
	}
	for {
		e, ok := p.reg.lookup(name)
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		if e.err != nil {
			return nil, &RefusedError{Name: name, Err: e.err}
		}
		p.mu.Lock()
		if i := p.find(name, e.version); i >= 0 {
			p.hold(i)
			p.mu.Unlock()
			return &lease{p: p, slot: i, version: e.version}, nil
		}
		if e.gone != nil {
			// Served from its slot while resident, but not on disk to load again.
			p.mu.Unlock()
			return nil, &RefusedError{Name: name, Err: e.gone}
		}
		key := loadKey(name, e.version)
		if l := p.loads[key]; l != nil {
			// Someone is loading this version: wait for them, then look again.
			p.waiting[name]++
			p.publish()
			p.mu.Unlock()
			err := wait(l.done, ErrBusy)
			p.mu.Lock()
			p.unwait(name)
			p.mu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		l := &load{done: make(chan struct{})}
		p.loads[key] = l
		p.mu.Unlock()

		changed := p.reg.Changed()
		ls, err := p.loadVersion(e, l, key, wait)
		if errors.Is(err, errSettling) {
			// The files changed after the registry last saw them settle: wait
			// for the watcher to publish the new version.
			if err := wait(changed, errSettling); err != nil {
				return nil, err
			}
			continue
		}
		return ls, err
	}
}

// loadVersion reads e, waits for a slot, installs it there and returns a
// lease on it. l is finished (and removed) whatever happens.
func (p *Pool) loadVersion(e entry, l *load, key string, wait func(<-chan struct{}, error) error) (runtime.AdapterLease, error) {
	finish := func() {
		delete(p.loads, key)
		close(l.done)
	}
	start := time.Now()
	ad, err := p.read(e)
	if err != nil {
		if !errors.Is(err, errSettling) {
			// Recorded before the waiters wake, so they see the refusal.
			p.metrics.loadDone(0, true)
			p.log.Warn("adapter refused", "adapter", e.name, "path", e.path, "err", logDetail(err))
			p.reg.setError(e.name, e.version, err)
			err = &RefusedError{Name: e.name, Err: err}
		}
		p.mu.Lock()
		finish()
		p.mu.Unlock()
		return nil, err
	}

	p.mu.Lock()
	p.waiting[e.name]++
	p.publish()
	i := p.pick()
	for i < 0 {
		ch := p.changed
		p.mu.Unlock()
		err := wait(ch, ErrBusy)
		p.mu.Lock()
		if err != nil {
			p.unwait(e.name)
			finish()
			p.mu.Unlock()
			return nil, err
		}
		i = p.pick()
	}
	p.unwait(e.name)
	s := &p.slots[i]
	if s.name != "" {
		p.metrics.evicted()
		p.log.Info("adapter evicted", "adapter", s.name, "slot", i, "for", e.name)
	}
	// Reserved for us (refs 1) while we write it, so no one else takes it.
	*s = slot{name: e.name, version: e.version, refs: 1}
	p.mu.Unlock()

	err = ad.install(p.ls, i)

	p.mu.Lock()
	defer p.mu.Unlock()
	finish()
	if err != nil {
		*s = slot{}
		p.broadcast()
		p.log.Warn("adapter refused", "adapter", e.name, "path", e.path, "err", logDetail(err))
		return nil, &RefusedError{Name: e.name, Err: err}
	}
	s.ready = true
	p.clock++
	s.lastUsed = p.clock
	if cur, ok := p.reg.lookup(e.name); !ok || cur.version != e.version {
		s.stale = true // changed or removed while we loaded: this request still gets what it asked for
	}
	p.metrics.loadDone(time.Since(start), false)
	p.log.Info("adapter loaded", "adapter", e.name, "version", e.version, "slot", i, "rank", ad.MaxRank(),
		"modules", len(ad.Modules), "seconds", time.Since(start).Seconds())
	p.publish()
	return &lease{p: p, slot: i, version: e.version}, nil
}

// read loads and validates e's files, and makes sure they are the version
// the registry holds (not a copy in progress). The files are checked to
// lie inside the adapters directory, as the registry first found them,
// every time: the directory may have been replaced by a symlink since.
func (p *Pool) read(e entry) (*Adapter, error) {
	before, err := p.reg.inspect(e)
	switch {
	case errors.Is(err, errUnsafe):
		return nil, err
	case err != nil || before.version != e.version:
		return nil, errSettling // changed or gone: the watcher will publish what is there
	case before.problem != nil:
		return nil, before.problem
	}
	ad, loadErr := loadDir(before.dir)
	after, err := p.reg.inspect(e)
	switch {
	case errors.Is(err, errUnsafe):
		return nil, err
	case err != nil || after.version != before.version || after.dir != before.dir:
		return nil, errSettling // rewritten while read: what failed, if anything, is not this version
	case loadErr != nil:
		return nil, loadErr
	}
	if err := ad.Validate(p.base); err != nil {
		return nil, err
	}
	if err := ad.CheckRank(p.ls.MaxRank); err != nil {
		return nil, err
	}
	return ad, nil
}

// find returns the ready, current slot of (name, version), or -1.
func (p *Pool) find(name, version string) int {
	for i := range p.slots {
		s := &p.slots[i]
		if s.ready && !s.stale && s.name == name && s.version == version {
			return i
		}
	}
	return -1
}

// hold takes a reference on slot i.
func (p *Pool) hold(i int) {
	p.slots[i].refs++
	p.clock++
	p.slots[i].lastUsed = p.clock
	if p.slots[i].refs == 1 {
		p.publish()
	}
}

// pick returns a free slot, else the least recently used idle one, else -1.
func (p *Pool) pick() int {
	best := -1
	for i := range p.slots {
		s := &p.slots[i]
		if s.name == "" {
			return i
		}
		if s.refs == 0 && s.ready && (best < 0 || s.lastUsed < p.slots[best].lastUsed) {
			best = i
		}
	}
	return best
}

func (p *Pool) release(i int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.slots[i]
	s.refs--
	p.clock++
	s.lastUsed = p.clock
	if s.refs == 0 && s.stale {
		p.log.Info("adapter unloaded", "adapter", s.name, "version", s.version, "slot", i)
		*s = slot{}
	}
	p.broadcast()
	p.publish()
}

// retire marks the slots of name that the registry no longer serves as
// stale, freeing the idle ones. It is the registry's change listener.
func (p *Pool) retire(name string) {
	cur, ok := p.reg.lookup(name)
	p.mu.Lock()
	defer p.mu.Unlock()
	freed := false
	for i := range p.slots {
		s := &p.slots[i]
		if s.name != name || (ok && s.version == cur.version && cur.err == nil) {
			continue
		}
		s.stale = true
		if s.refs == 0 && s.ready {
			p.log.Info("adapter unloaded", "adapter", s.name, "version", s.version, "slot", i)
			*s = slot{}
			freed = true
		}
	}
	if freed {
		p.broadcast()
		p.publish()
	}
}

func (p *Pool) unwait(name string) {
	if p.waiting[name]--; p.waiting[name] <= 0 {
		delete(p.waiting, name)
	}
	p.publish()
}

// broadcast wakes every request waiting for a slot.
func (p *Pool) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// publish updates the gauges from the slots (p.mu held).
func (p *Pool) publish() {
	if p.metrics == nil {
		return
	}
	loaded := 0
	var running, waiting []string
	for _, s := range p.slots {
		if s.ready {
			loaded++
		}
		if s.refs > 0 && !slices.Contains(running, s.name) {
			running = append(running, s.name)
		}
	}
	for n := range p.waiting {
		waiting = append(waiting, n)
	}
	slices.Sort(running)
	slices.Sort(waiting)
	p.metrics.loadedAdapters(loaded)
	p.metrics.requestsInfo(len(p.slots), running, waiting)
}

// Adapters describes every registered adapter with its residency, sorted
// by name.
func (p *Pool) Adapters() []Info {
	infos := p.reg.List()
	p.mu.Lock()
	defer p.mu.Unlock()
	for k := range infos {
		in := &infos[k]
		for i, s := range p.slots {
			if s.name != in.Name {
				continue
			}
			in.Refs += s.refs
			if s.version == in.Version && !s.stale && in.Status != StatusError {
				in.Slot = i
				in.Status = StatusLoaded
				if !s.ready {
					in.Status = StatusLoading
				}
			}
		}
		if in.Status == StatusAvailable && p.loads[loadKey(in.Name, in.Version)] != nil {
			in.Status = StatusLoading
		}
	}
	return infos
}
