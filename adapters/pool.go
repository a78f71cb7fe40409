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

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// busyError is ErrBusy. It also matches engine.ErrOverloaded, so a server
// answers a full pool as it answers a full engine queue (try again later).
type busyError struct{ msg string }

func (e *busyError) Error() string        { return e.msg }
func (e *busyError) Is(target error) bool { return target == engine.ErrOverloaded }

var (
	// ErrBusy: every slot stayed held by running requests until the
	// deadline.
	ErrBusy error = &busyError{"all LoRA adapter slots are held by running requests; try again later"}
	// errSettling: the adapter's files are being rewritten (also busy).
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
	ls      *llama.LoRASlots
	base    *llama.Config
	reg     *Registry
	maxWait time.Duration
	metrics *Metrics
	log     *slog.Logger

	mu      sync.Mutex
	slots   []slot
	loads   map[string]*load     // by loadKey(name, version)
	copies  map[string]*hostCopy // host copies in use, by loadKey
	waiting map[string]int       // adapter -> requests waiting for it to become resident
	changed chan struct{}        // closed (and replaced) when a slot is released or freed
	clock   uint64               // LRU clock
}

// slot is one resident adapter version.
type slot struct {
	name, version string // "" = free
	ready         bool   // written; false while being installed
	stale         bool   // the registry moved on: no new leases, freed when refs reaches 0
	refs          int
	lastUsed      uint64
	copy          *hostCopy // the weights installed, kept while resident
}

// load is an adapter version being read; others asking for it wait on
// done, then find its copy (or err).
type load struct {
	done chan struct{}
	err  error
}

func loadKey(name, version string) string { return name + "\x00" + version }

// SlotBytes is the memory one LoRA slot of rank maxRank takes on model: A
// and B of every projection, in the backend's storage (bfloat16 on the CPU).
func SlotBytes(model *llama.Model, maxRank int) int64 {
	var n int64
	per := int64(kernels.LoRABytesPerValue(model.Backend))
	for i := range model.Weights.Layers {
		for _, l := range model.Weights.Layers[i].Projections() {
			n += int64(maxRank) * int64(l.In+l.Out) * per
		}
	}
	return n
}

// NewPool enables LoRA on model with slots slots of rank up to maxRank
// (fewer if memoryBudgetBytes > 0 cannot hold them all) and serves the
// adapters of reg from them. Call it before serving: it allocates the slots.
func NewPool(model *llama.Model, slots, maxRank int, memoryBudgetBytes int64, reg *Registry, opts PoolOptions) (*Pool, error) {
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
		slots: make([]slot, slots), loads: map[string]*load{}, copies: map[string]*hostCopy{}, waiting: map[string]int{}, changed: make(chan struct{})}
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

// Claim is a request's hold on one version of an adapter: resolved, read
// and validated when the request arrives, but given a slot only when the
// engine admits the request (engine.AdapterClaim), so that queued requests
// hold no slot. The engine gives the slot back when the request ends or is
// preempted.
type Claim struct {
	p             *Pool
	name, version string
	copy          *hostCopy
	slot          int // the slot held, -1 while none
	last          int // the slot last held, -1 if none yet
	released      bool
}

// hostCopy is an adapter version's weights in host memory, shared by the
// claims on it and by the slot it is installed in.
type hostCopy struct {
	key  string // loadKey(name, version), its place in Pool.copies
	ad   *peft.Adapter
	refs int // claims and slots using it
}

var _ engine.AdapterClaim = (*Claim)(nil)

func (c *Claim) Name() string { return c.name }

// Version is the registry version (Info.Version) the claim holds: the
// version that serves the request, also after Release.
func (c *Claim) Version() string { return c.version }

// Slot is the slot held, or last held (after Drop or Release); -1 if none
// yet.
func (c *Claim) Slot() int32 {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return int32(c.last)
}

// Acquire holds a slot with the claimed version, installing it into a free
// slot or the least recently used idle one if it is not resident; it never
// waits: ok is false while every slot is held by running requests of other
// adapters (the request stays queued).
func (c *Claim) Acquire() (int32, bool, error) {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.released {
		return -1, false, errors.New("adapter claim used after Release")
	}
	if c.slot >= 0 {
		return int32(c.slot), true, nil
	}
	if i := p.findVersion(c.name, c.version); i >= 0 {
		p.hold(i)
		c.slot, c.last = i, i
		p.unwait(c.name)
		return int32(i), true, nil
	}
	i := p.pick()
	if i < 0 {
		return -1, false, nil
	}
	start := time.Now()
	s := &p.slots[i]
	if s.name != "" {
		p.metrics.evicted()
		p.log.Info("adapter evicted", "adapter", s.name, "slot", i, "for", c.name)
	}
	p.dropCopy(s.copy)
	*s = slot{}
	if err := install(p.ls, i, c.copy.ad); err != nil {
		p.broadcast()
		p.log.Warn("adapter refused", "adapter", c.name, "err", logDetail(err))
		return -1, false, &RefusedError{Name: c.name, Err: err}
	}
	c.copy.refs++
	*s = slot{name: c.name, version: c.version, ready: true, copy: c.copy}
	if cur, ok := p.reg.lookup(c.name); !ok || cur.version != c.version {
		s.stale = true // changed or removed while queued: this request still gets what it asked for
	}
	p.hold(i)
	c.slot, c.last = i, i
	p.unwait(c.name)
	p.metrics.loadDone(time.Since(start), false)
	p.log.Info("adapter loaded", "adapter", c.name, "version", c.version, "slot", i, "rank", c.copy.ad.MaxRank(),
		"modules", len(c.copy.ad.Modules), "seconds", time.Since(start).Seconds())
	return int32(i), true, nil
}

// Drop gives the slot back and keeps the claim (a preempted request, which
// acquires again when it resumes).
func (c *Claim) Drop() {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.released || c.slot < 0 {
		return
	}
	p.release(c.slot)
	c.slot = -1
	p.waiting[c.name]++
	p.publish()
}

// Release gives up the slot and the claim (the request ended).
func (c *Claim) Release() {
	p := c.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.released {
		return
	}
	c.released = true
	if c.slot >= 0 {
		p.release(c.slot)
		c.slot = -1
	} else {
		p.unwait(c.name)
	}
	p.dropCopy(c.copy)
}

// Claim resolves adapter name to its current version and reads it (or
// shares the copy resident or being read) for a request that will acquire
// a slot later. Errors: ErrNotFound for an unknown name, *RefusedError for
// an adapter that cannot be served, errSettling (busy) when its files stay
// in flux until ctx ends, or ctx's error.
func (p *Pool) Claim(ctx context.Context, name string) (*Claim, error) {
	for {
		e, ok := p.reg.lookup(name)
		if !ok {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		if e.err != nil {
			return nil, &RefusedError{Name: name, Err: e.err}
		}
		changed := p.reg.Changed()
		hc, err := p.copyOf(ctx, e)
		if errors.Is(err, errSettling) {
			// The files changed after the registry last saw them settle: wait
			// for the watcher to publish the new version.
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return nil, err
			}
		}
		if err != nil {
			return nil, err
		}
		p.mu.Lock()
		p.waiting[name]++
		p.publish()
		p.mu.Unlock()
		return &Claim{p: p, name: name, version: e.version, copy: hc, slot: -1, last: -1}, nil
	}
}

// copyOf returns a held reference on the host copy of e's version: the one
// a slot or claim already has, or one read now (once, however many ask).
func (p *Pool) copyOf(ctx context.Context, e entry) (*hostCopy, error) {
	key := loadKey(e.name, e.version)
	for {
		p.mu.Lock()
		if hc := p.copies[key]; hc != nil {
			hc.refs++
			p.mu.Unlock()
			return hc, nil
		}
		if e.gone != nil {
			// Served from its slot while resident, but not on disk to read again.
			p.mu.Unlock()
			return nil, &RefusedError{Name: e.name, Err: e.gone}
		}
		if l := p.loads[key]; l != nil {
			p.mu.Unlock()
			select {
			case <-l.done:
				if l.err != nil {
					return nil, l.err
				}
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		l := &load{done: make(chan struct{})}
		p.loads[key] = l
		p.mu.Unlock()

		ad, err := p.read(e)
		if err != nil && !errors.Is(err, errSettling) {
			p.metrics.loadDone(0, true)
			p.log.Warn("adapter refused", "adapter", e.name, "path", e.path, "err", logDetail(err))
			p.reg.setError(e.name, e.version, err)
			err = &RefusedError{Name: e.name, Err: err}
		}
		p.mu.Lock()
		delete(p.loads, key)
		l.err = err
		if err == nil {
			p.copies[key] = &hostCopy{key: key, ad: ad}
		}
		close(l.done)
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// dropCopy releases a reference on a host copy, forgetting it at zero.
func (p *Pool) dropCopy(hc *hostCopy) {
	if hc == nil {
		return
	}
	if hc.refs--; hc.refs == 0 && p.copies[hc.key] == hc {
		delete(p.copies, hc.key)
	}
}

// Acquire claims adapter name and waits for a slot, until ctx's deadline
// (or the pool's MaxWait), then returns ErrBusy: for callers outside an
// engine (tools, tests). Errors as Claim's, ErrBusy, or ctx's error.
func (p *Pool) Acquire(ctx context.Context, name string) (*Claim, error) {
	deadline := time.Now().Add(p.maxWait)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := p.Claim(ctx, name)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = ErrBusy
		}
		return nil, err
	}
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		_, ok, err := c.Acquire()
		if err != nil {
			c.Release()
			return nil, err
		}
		if ok {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			c.Release()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, ErrBusy
			}
			return nil, ctx.Err()
		}
	}
}

// read loads and validates e's files, and makes sure they are the version
// the registry holds (not a copy in progress). The files are checked to
// lie inside the adapters directory, as the registry first found them,
// every time: the directory may have been replaced by a symlink since.
func (p *Pool) read(e entry) (*peft.Adapter, error) {
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
	if err := Validate(ad, p.base); err != nil {
		return nil, err
	}
	if err := checkRank(ad, p.ls.MaxRank); err != nil {
		return nil, err
	}
	return ad, nil
}

// findVersion returns the ready slot of (name, version), or -1: a stale
// one too (its version was replaced while the request was queued: the
// request gets the version it was admitted with).
func (p *Pool) findVersion(name, version string) int {
	if i := p.find(name, version); i >= 0 {
		return i
	}
	for i := range p.slots {
		s := &p.slots[i]
		if s.ready && s.name == name && s.version == version {
			return i
		}
	}
	return -1
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

// release drops a reference on slot i (p.mu held).
func (p *Pool) release(i int) {
	s := &p.slots[i]
	s.refs--
	p.clock++
	s.lastUsed = p.clock
	if s.refs == 0 && s.stale {
		p.log.Info("adapter unloaded", "adapter", s.name, "version", s.version, "slot", i)
		p.dropCopy(s.copy)
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
			p.dropCopy(s.copy)
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
