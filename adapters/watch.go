package adapters

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOptions tune a Watcher; the zero value is usable.
type WatchOptions struct {
	// Debounce: a new or changed adapter is taken only once its two files
	// have not changed for this long (by their timestamps, or across the
	// watcher's own checks), so a directory being copied file by file is not
	// loaded half-written; a directory that appears complete, renamed into
	// place whole (as Save does), is taken at once (default 1s).
	Debounce time.Duration
	// PollInterval: the directory is rescanned this often whatever the file
	// notifications say (they can be missed, or unavailable) (default 2s).
	PollInterval time.Duration
	Logger       *slog.Logger
}

// Watcher keeps a registry in step with its adapters directory: every
// non-hidden sub-directory holding adapter_config.json and
// adapter_model.safetensors is an adapter named by the directory; a new one
// is registered, a changed one gets a new version, a removed one is
// unregistered (and unloaded once idle). Explicit (name=path) entries are
// followed for new versions too. A sub-directory (or admin-loaded entry)
// that resolves outside the adapters directory is registered as refused.
//
// A version is registered only when its two files belong together: the
// config's ranks and targets match the tensors of the weights, whose
// header fits the file. A config of one version beside the weights of
// another (a copy in progress) is incomplete: the registered version keeps
// serving, and only files that stay that way with nothing servable
// registered are refused.
type Watcher struct {
	reg     *Registry
	opts    WatchOptions
	log     *slog.Logger
	now     func() time.Time  // the clock (a test's fake)
	fsw     *fsnotify.Watcher // nil: polling only
	watched map[string]bool   // directories given to fsw
	tracked map[string]*tracked
	stop    chan struct{}
	done    chan struct{}
}

// tracked is the last state the watcher saw of one adapter's files (a
// sub-directory by name, an explicit entry by "\x00"+name).
type tracked struct {
	version string
	dirID   uint64
	since   time.Time // when the watcher first saw this version (its clock)
	changed time.Time // the files' newest change (the filesystem's clock)
	settled bool      // unchanged for the debounce, or complete at first sight
	warned  bool      // its problem was logged
}

// Watch scans reg's adapters directory once (taking what is there as it
// is: nothing is being copied while the server starts) and keeps following
// it until Close.
func Watch(reg *Registry, opts WatchOptions) *Watcher {
	w := newWatcher(reg, opts)
	if reg.root != "" {
		fsw, err := fsnotify.NewWatcher()
		if err == nil {
			err = fsw.Add(reg.root)
			if err != nil {
				fsw.Close()
			}
		}
		if err != nil {
			w.log.Warn("file notifications unavailable; polling the adapters directory", "dir", reg.root, "every", w.opts.PollInterval, "err", err)
		} else {
			w.fsw = fsw
			w.watched[reg.root] = true
		}
	}
	w.scan(true)
	go w.loop()
	return w
}

// newWatcher makes a watcher that does not run yet.
func newWatcher(reg *Registry, opts WatchOptions) *Watcher {
	if opts.Debounce <= 0 {
		opts.Debounce = time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 2 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Watcher{reg: reg, opts: opts, log: log, now: time.Now, watched: map[string]bool{}, tracked: map[string]*tracked{},
		stop: make(chan struct{}), done: make(chan struct{})}
}

// Close stops watching.
func (w *Watcher) Close() error {
	close(w.stop)
	<-w.done
	if w.fsw != nil {
		return w.fsw.Close()
	}
	return nil
}

// loop scans on every poll, shortly after file notifications (a burst of
// them gives one scan: the first starts a short timer that later ones do
// not push back, so a steady stream of writes cannot postpone scans), and
// when the earliest unsettled version is due.
func (w *Watcher) loop() {
	defer close(w.done)
	tick := time.NewTicker(w.opts.PollInterval)
	defer tick.Stop()
	burst := time.NewTimer(time.Hour)
	burst.Stop()
	bursting := false
	due := time.NewTimer(time.Hour)
	due.Stop()
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w.fsw != nil {
		events, errs = w.fsw.Events, w.fsw.Errors
	}
	for {
		select {
		case <-w.stop:
			return
		case _, ok := <-events:
			if !ok {
				events = nil
			} else if !bursting {
				burst.Reset(min(50*time.Millisecond, w.opts.Debounce))
				bursting = true
			}
			continue
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Warn("file notifications failed; polling goes on", "err", err)
			continue
		case <-tick.C:
		case <-burst.C:
			bursting = false
		case <-due.C:
		}
		w.scan(false)
		if d, ok := w.nextDue(); ok {
			due.Reset(max(d, 10*time.Millisecond))
		} else {
			due.Stop()
		}
	}
}

// nextDue is how long until the earliest unsettled version may settle.
func (w *Watcher) nextDue() (time.Duration, bool) {
	now := w.now()
	var next time.Duration
	found := false
	for _, t := range w.tracked {
		if t.settled {
			continue
		}
		at := t.since
		if !t.changed.IsZero() && t.changed.Before(at) {
			at = t.changed
		}
		if d := at.Add(w.opts.Debounce).Sub(now); !found || d < next {
			next, found = d, true
		}
	}
	return next, found
}

// settled records s as the state of key's files and returns what the
// watcher knows of it. It has settled once unchanged for the debounce, by
// the files' timestamps (a version complete before the watcher noticed it
// need not wait again) or by what the watcher saw (should the filesystem's
// clock be off); or at once if complete when first seen in a directory new
// to the watcher and not the one of the registered version (fresh): a
// directory renamed into place whole. immediate settles everything.
func (w *Watcher) settled(key string, s dirState, fresh bool, now time.Time, immediate bool) *tracked {
	t, ok := w.tracked[key]
	if !ok || t.version != s.version || t.dirID != s.dirID {
		fresh = fresh && (!ok || t.dirID != s.dirID)
		t = &tracked{version: s.version, dirID: s.dirID, since: now, changed: s.changed,
			settled: immediate || (fresh && s.problem == nil)}
		w.tracked[key] = t
	}
	if !t.settled && (now.Sub(t.since) >= w.opts.Debounce || !t.changed.IsZero() && now.Sub(t.changed) >= w.opts.Debounce) {
		t.settled = true
	}
	return t
}

// scan compares the directory (and the explicit entries' files) with the
// registry; immediate takes every complete adapter without debouncing.
func (w *Watcher) scan(immediate bool) {
	now := w.now()
	live := map[string]bool{} // tracked keys still there
	if root := w.reg.root; root != "" {
		ents, err := os.ReadDir(root)
		if err != nil {
			w.log.Error("cannot read the adapters directory", "dir", root, "err", err)
			return
		}
		seen := map[string]bool{}     // adapter names present
		seenDirs := map[string]bool{} // their resolved directories
		for _, ent := range ents {
			name := ent.Name()
			path := filepath.Join(root, name)
			if strings.HasPrefix(name, ".") || checkName(name) != nil {
				continue // hidden: e.g. a copy in progress to be renamed into place
			}
			if st, err := os.Stat(path); err != nil || !st.IsDir() {
				continue
			}
			seen[name], live[name] = true, true
			s, err := inspect(root, path)
			switch {
			case errors.Is(err, errUnsafe):
				delete(w.tracked, name)
				if w.reg.putDir(name, path, 0, refusedVersion(err), err) {
					w.log.Warn("adapter refused", "adapter", name, "path", path, "err", logDetail(err))
				}
				continue
			case err != nil:
				delete(w.tracked, name)
				continue // removed or unreadable since the listing: the next scan tells
			}
			seenDirs[s.dir] = true
			w.follow(s.dir)
			w.updateDir(name, s, now, immediate)
		}
		for _, e := range w.reg.entriesOf(true) {
			if !seen[e.name] {
				w.reg.removeDir(e.name)
				w.log.Info("adapter removed", "adapter", e.name)
			}
		}
		for dir := range w.watched {
			if dir != root && !seenDirs[dir] {
				if w.fsw != nil {
					w.fsw.Remove(dir) // usually gone already, with the directory
				}
				delete(w.watched, dir)
			}
		}
	}
	for _, e := range w.reg.entriesOf(false) {
		key := "\x00" + e.name // explicit entries may share a name with a (shadowed) directory
		live[key] = true
		w.updateExplicit(key, e, now, immediate)
	}
	for key := range w.tracked {
		if !live[key] {
			delete(w.tracked, key)
		}
	}
}

// updateDir brings the registry entry of sub-directory name to s, once
// settled.
func (w *Watcher) updateDir(name string, s dirState, now time.Time, immediate bool) {
	e, registered := w.reg.lookup(name)
	registered = registered && e.origin == OriginDir
	if registered && e.path == s.dir && e.version == s.version {
		w.tracked[name] = &tracked{version: s.version, dirID: s.dirID, settled: true}
		return
	}
	t := w.settled(name, s, !registered || e.dirID != s.dirID, now, immediate)
	switch {
	case !t.settled:
	case s.problem == nil:
		if w.reg.putDir(name, s.dir, s.dirID, s.version, nil) {
			w.log.Info("adapter registered", "adapter", name, "path", s.dir, "version", s.version)
		}
	case registered && e.err == nil:
		w.keepServing(t, e, s)
	case errors.Is(s.problem, fs.ErrNotExist):
		// Not (yet) an adapter directory: nothing to register.
	default:
		version := "incomplete-" + s.version
		if w.reg.putDir(name, s.dir, s.dirID, version, s.problem) {
			w.log.Warn("adapter refused", "adapter", name, "path", s.dir, "err", logDetail(s.problem))
		}
	}
}

// updateExplicit follows an explicit entry's files to a new settled
// version. An admin-loaded entry whose files now lead outside the adapters
// directory is refused; its resident versions are retired.
func (w *Watcher) updateExplicit(key string, e entry, now time.Time, immediate bool) {
	s, err := w.reg.inspect(e)
	switch {
	case errors.Is(err, errUnsafe):
		delete(w.tracked, key)
		if w.reg.refuse(e.name, err) {
			w.log.Warn("adapter refused", "adapter", e.name, "path", e.path, "err", logDetail(err))
		}
		return
	case err != nil:
		// Removed (for now, or for good): a state of its own.
		s = dirState{dir: e.path, version: "missing", problem: err}
	case s.version == e.version:
		w.tracked[key] = &tracked{version: s.version, dirID: s.dirID, settled: true}
		return
	}
	t := w.settled(key, s, e.dirID != s.dirID, now, immediate)
	switch {
	case !t.settled:
	case s.problem == nil:
		w.reg.setVersion(e.name, s.version, s.dirID)
		w.log.Info("adapter changed", "adapter", e.name, "path", s.dir, "version", s.version)
	case e.err == nil:
		w.keepServing(t, e, s)
	}
}

// keepServing handles files that settled into a state that cannot be
// served while a servable version e is registered: e stays, for requests
// to go on being served from its slot while resident, but is marked gone
// from disk so that no request waits to load it. Logged once per state.
func (w *Watcher) keepServing(t *tracked, e entry, s dirState) {
	w.reg.markGone(e.name, e.version, s.problem)
	if !t.warned {
		t.warned = true
		w.log.Warn("adapter files are incomplete or do not belong together; the registered version is served while resident",
			"adapter", e.name, "path", s.dir, "problem", logDetail(s.problem))
	}
}

// follow asks for notifications on an adapter's directory (file writes in
// it do not show up on the parent). It asks at every scan: a directory
// replaced under the same name (renamed into place, or removed and made
// anew) needs a new watch, and asking again for the same one is a no-op.
func (w *Watcher) follow(dir string) {
	if w.fsw == nil {
		return
	}
	if err := w.fsw.Add(dir); err != nil {
		w.log.Debug("cannot watch adapter directory; polling it", "dir", dir, "err", err)
		delete(w.watched, dir)
		return
	}
	w.watched[dir] = true
}
