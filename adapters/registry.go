package adapters

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Errors of the registry, the pool and the admin calls.
var (
	// ErrNotFound: no adapter of that name is registered (or, to an admin
	// load, none is at the path given).
	ErrNotFound = errors.New("adapter not found")
	// ErrExists: an adapter or model of that name is already served.
	ErrExists = errors.New("adapter name already in use")
	// ErrInvalidInput: an admin request lacks a field or names an adapter
	// already served.
	ErrInvalidInput = errors.New("invalid adapter request")
	// ErrRefused: the adapter's files cannot be served (a *RefusedError, or
	// an admin load refused).
	ErrRefused = errors.New("adapter refused")
)

// RefusedError is an adapter that is registered but cannot be served: its
// files are invalid, or lie outside the adapters directory. Serving of
// everything else goes on. Its text, for API clients, names the adapter
// and the reason but no server path; logged with slog, it has the paths.
type RefusedError struct {
	Name string
	Err  error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("adapter %q cannot be served: %v", e.Name, e.Err)
}
func (e *RefusedError) Unwrap() error        { return e.Err }
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// LogValue is the text with the server paths, for the log (slog.LogValuer).
func (e *RefusedError) LogValue() slog.Value {
	return slog.StringValue(fmt.Sprintf("adapter %q cannot be served: %s", e.Name, logDetail(e.Err)))
}

// Origin says where a registry entry came from.
type Origin string

const (
	OriginDir    Origin = "dir"    // a sub-directory of the adapters directory (watched)
	OriginStatic Origin = "static" // an explicit name=path (flags or config)
	OriginAdmin  Origin = "admin"  // POST /v1/load_lora_adapter
)

// Status of an adapter, as Pool.Adapters reports it.
type Status string

const (
	StatusAvailable Status = "available" // registered, not resident
	StatusLoading   Status = "loading"   // being read into a slot
	StatusLoaded    Status = "loaded"    // resident in a slot
	StatusError     Status = "error"     // refused; Info.Error says why
)

// Info describes one registered adapter.
type Info struct {
	Name    string
	Path    string // its directory (symlinks resolved); for the operator, not for API clients
	Origin  Origin
	Version string // fingerprint of the files (sizes, mtimes, identity, config and header hashes)
	Status  Status
	Error   string // why it is refused (StatusError); names no server path
	Slot    int    // resident slot of the current version, -1 if none
	Refs    int    // leases held on any of its versions
}

// Registry maps adapter names to their directories and versions. It is
// safe for concurrent use.
type Registry struct {
	root     string          // the adapters directory, absolute with symlinks resolved ("" = none)
	reserved map[string]bool // names of the base model

	mu         sync.Mutex
	entries    map[string]*entry
	suppressed map[string]string // dir adapters unloaded by the admin API: name -> version at unload
	changed    chan struct{}     // closed (and replaced) at every change
	listeners  []func(name string)
}

type entry struct {
	name, path string
	dirID      uint64 // identity of the directory the version was found in
	origin     Origin
	version    string
	err        error // refused (at this version)
	// gone: the files on disk settled into something that is not this
	// version and cannot be served (why). A resident copy goes on serving;
	// it is not read again.
	gone error
}

// NewRegistry makes a registry for the adapters directory root ("" = none:
// only explicit entries). reserved are names that cannot be adapters (the
// base model's served names).
func NewRegistry(root string, reserved ...string) (*Registry, error) {
	r := &Registry{reserved: map[string]bool{}, entries: map[string]*entry{}, suppressed: map[string]string{},
		changed: make(chan struct{})}
	for _, n := range reserved {
		r.reserved[n] = true
	}
	if root != "" {
		abs, err := filepath.Abs(root)
		if err != nil {
			return nil, err
		}
		real, err := filepath.EvalSymlinks(abs)
		if err != nil {
			return nil, fmt.Errorf("adapters directory: %w", err)
		}
		if st, err := os.Stat(real); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("adapters directory %s is not a directory", root)
		}
		r.root = real
	}
	return r, nil
}

// Root is the adapters directory (resolved), "" if none.
func (r *Registry) Root() string { return r.root }

// Add registers an explicit name=path adapter (--lora name=path). The
// operator chose the path, so it may lie anywhere; its errors name it.
func (r *Registry) Add(name, path string) error {
	if err := r.addExplicit(name, path, OriginStatic); err != nil {
		return &fileError{msg: fmt.Sprintf("adapter %q at %s: %s", name, path, logDetail(err)), err: err}
	}
	return nil
}

// AddAdmin registers an adapter on an API caller's request: a relative path
// is taken inside the adapters directory, and a path that resolves outside
// it (or any path, without an adapters directory) is refused, now and at
// every later read of its files. Errors name no server path.
func (r *Registry) AddAdmin(name, path string) error {
	if r.root == "" {
		return errors.New("loading adapters through the API needs an adapters directory (--adapters-dir); paths are confined to it")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(r.root, path)
	}
	if err := r.addExplicit(name, path, OriginAdmin); err != nil {
		return fmt.Errorf("adapter %q: %w", name, err)
	}
	return nil
}

// rootOf is the directory an entry's files must stay in: the adapters
// directory, but for the operator's own --lora paths ("": anywhere).
func (r *Registry) rootOf(origin Origin) string {
	if origin == OriginStatic {
		return ""
	}
	return r.root
}

// inspect checks and fingerprints e's files as they are now.
func (r *Registry) inspect(e entry) (dirState, error) {
	return inspect(r.rootOf(e.origin), e.path)
}

func (r *Registry) addExplicit(name, path string, origin Origin) error {
	if err := checkName(name); err != nil {
		return err
	}
	if r.reserved[name] {
		return fmt.Errorf("%w: %q is the base model's name", ErrExists, name)
	}
	s, err := inspect(r.rootOf(origin), path)
	if err == nil {
		err = s.problem
	}
	if err != nil {
		return err
	}
	r.mu.Lock()
	if _, ok := r.entries[name]; ok {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrExists, name)
	}
	r.entries[name] = &entry{name: name, path: s.dir, dirID: s.dirID, origin: origin, version: s.version}
	delete(r.suppressed, name)
	r.mu.Unlock()
	r.notify(name)
	return nil
}

// Remove unregisters name. Requests holding it finish on it; its slot is
// freed once idle. A watched directory stays unloaded until its files change.
func (r *Registry) Remove(name string) error {
	r.mu.Lock()
	e, ok := r.entries[name]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	delete(r.entries, name)
	if e.origin == OriginDir {
		r.suppressed[name] = e.version
	}
	r.mu.Unlock()
	r.notify(name)
	return nil
}

// Has reports whether name is registered (servable or refused).
func (r *Registry) Has(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.entries[name]
	return ok
}

// Get describes one entry (Status is StatusError or StatusAvailable: the
// pool knows about residency).
func (r *Registry) Get(name string) (Info, bool) {
	e, ok := r.lookup(name)
	if !ok {
		return Info{}, false
	}
	return e.info(), true
}

// List describes every entry, sorted by name.
func (r *Registry) List() []Info {
	r.mu.Lock()
	out := make([]Info, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e.info())
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b Info) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

func (e *entry) info() Info {
	in := Info{Name: e.name, Path: e.path, Origin: e.origin, Version: e.version, Status: StatusAvailable, Slot: -1}
	if e.err != nil {
		in.Status, in.Error = StatusError, e.err.Error()
	}
	return in
}

// lookup returns a copy of name's entry.
func (r *Registry) lookup(name string) (entry, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[name]
	if !ok {
		return entry{}, false
	}
	return *e, true
}

// Changed returns a channel closed at the next change of the registry.
func (r *Registry) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// onChange registers f to be called (outside the registry's lock) with the
// name of every entry added, changed or removed.
func (r *Registry) onChange(f func(name string)) {
	r.mu.Lock()
	r.listeners = append(r.listeners, f)
	r.mu.Unlock()
}

func (r *Registry) notify(name string) {
	r.mu.Lock()
	close(r.changed)
	r.changed = make(chan struct{})
	ls := slices.Clone(r.listeners)
	r.mu.Unlock()
	for _, f := range ls {
		f(name)
	}
}

// setError records that name cannot be served at version (a failed load);
// a new version clears it.
func (r *Registry) setError(name, version string, err error) {
	r.mu.Lock()
	e, ok := r.entries[name]
	if !ok || e.version != version {
		r.mu.Unlock()
		return
	}
	e.err = err
	r.mu.Unlock()
	r.notify(name)
}

// putDir registers or updates the watched sub-directory name (path
// resolved, dirID its identity, version its settled fingerprint; err if it
// is refused, with a version naming the refusal). It reports whether
// anything changed.
func (r *Registry) putDir(name, path string, dirID uint64, version string, err error) bool {
	r.mu.Lock()
	if r.reserved[name] {
		r.mu.Unlock()
		return false
	}
	if v, ok := r.suppressed[name]; ok {
		if v == version {
			r.mu.Unlock()
			return false
		}
		delete(r.suppressed, name) // changed since it was unloaded: serve it again
	}
	e, ok := r.entries[name]
	switch {
	case ok && e.origin != OriginDir:
		r.mu.Unlock()
		return false // an explicit entry of the same name wins
	case ok && e.path == path && e.version == version:
		r.mu.Unlock()
		return false // unchanged (a load error recorded for this version stays)
	}
	r.entries[name] = &entry{name: name, path: path, dirID: dirID, origin: OriginDir, version: version, err: err}
	r.mu.Unlock()
	r.notify(name)
	return true
}

// removeDir unregisters a watched sub-directory that is gone.
func (r *Registry) removeDir(name string) {
	r.mu.Lock()
	delete(r.suppressed, name)
	e, ok := r.entries[name]
	if !ok || e.origin != OriginDir {
		r.mu.Unlock()
		return
	}
	delete(r.entries, name)
	r.mu.Unlock()
	r.notify(name)
}

// setVersion moves an explicit entry to a new settled version, found in
// the directory of identity dirID.
func (r *Registry) setVersion(name, version string, dirID uint64) {
	r.mu.Lock()
	e, ok := r.entries[name]
	if !ok || e.origin == OriginDir || e.version == version {
		r.mu.Unlock()
		return
	}
	e.version, e.dirID, e.err, e.gone = version, dirID, nil, nil
	r.mu.Unlock()
	r.notify(name)
}

// markGone records that the files of name's registered version are gone
// for good (err says what is there instead), if version is still the
// registered one.
func (r *Registry) markGone(name, version string, err error) {
	r.mu.Lock()
	e, ok := r.entries[name]
	if !ok || e.version != version || e.gone != nil {
		r.mu.Unlock()
		return
	}
	e.gone = err
	r.mu.Unlock()
	r.notify(name) // requests waiting for the files to settle give up
}

// refuse marks an explicit entry as refused for err, whatever its version:
// its files can no longer be read safely. It reports whether that changed
// anything.
func (r *Registry) refuse(name string, err error) bool {
	version := refusedVersion(err)
	r.mu.Lock()
	e, ok := r.entries[name]
	if !ok || e.origin == OriginDir || e.version == version {
		r.mu.Unlock()
		return false
	}
	e.version, e.err, e.gone = version, err, nil
	r.mu.Unlock()
	r.notify(name)
	return true
}

// entriesOf returns copies of the entries of one origin class: watched
// directories (dir true) or explicit ones.
func (r *Registry) entriesOf(dir bool) []entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []entry
	for _, e := range r.entries {
		if (e.origin == OriginDir) == dir {
			out = append(out, *e)
		}
	}
	return out
}
