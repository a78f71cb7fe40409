package adapters

import (
	"io"
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
	// have kept the same sizes and mtimes across two checks this far apart,
	// so a directory being copied is not loaded half-written (default 1s).
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
// followed for new versions too. A sub-directory that resolves outside the
// adapters directory is registered as refused.
type Watcher struct {
	reg     *Registry
	opts    WatchOptions
	log     *slog.Logger
	now     func() time.Time  // the clock (a test's fake)
	fsw     *fsnotify.Watcher // nil: polling only
	watched map[string]bool   // directories given to fsw
	pending map[string]pending
	stop    chan struct{}
	done    chan struct{}
}

// pending is a fingerprint seen but not yet settled.
type pending struct {
	version string
	since   time.Time
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
	return &Watcher{reg: reg, opts: opts, log: log, now: time.Now, watched: map[string]bool{}, pending: map[string]pending{},
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

func (w *Watcher) loop() {
	defer close(w.done)
	tick := time.NewTicker(w.opts.PollInterval)
	defer tick.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
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
				continue
			}
			soon.Reset(min(50*time.Millisecond, w.opts.Debounce)) // coalesce a burst of events
			continue
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Warn("file notifications failed; polling goes on", "err", err)
			continue
		case <-tick.C:
		case <-soon.C:
		}
		w.scan(false)
		// Come back when the earliest pending version may have settled.
		var next time.Duration = -1
		for _, p := range w.pending {
			d := p.since.Add(w.opts.Debounce).Sub(w.now())
			if next < 0 || d < next {
				next = d
			}
		}
		if next >= 0 {
			soon.Reset(max(next, 10*time.Millisecond))
		}
	}
}

// scan compares the directory (and the explicit entries' files) with the
// registry; immediate takes every complete adapter without debouncing.
func (w *Watcher) scan(immediate bool) {
	now := w.now()
	settle := func(key, version string, apply func()) {
		p, ok := w.pending[key]
		switch {
		case immediate:
		case !ok || p.version != version:
			w.pending[key] = pending{version: version, since: now}
			return
		case now.Sub(p.since) < w.opts.Debounce:
			return
		}
		delete(w.pending, key)
		apply()
	}
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
			seen[name] = true
			real, refused := resolveInside(root, path)
			var version string
			if refused != nil {
				real, version = path, "refused: "+refused.Error()
			} else {
				seenDirs[real] = true
				w.follow(real)
				var err error
				if version, err = fingerprint(real); err != nil {
					delete(w.pending, name) // incomplete; a registered version keeps serving
					continue
				}
			}
			if e, ok := w.reg.lookup(name); ok && e.origin == OriginDir && e.path == real && e.version == version {
				delete(w.pending, name)
				continue
			}
			settle(name, version, func() {
				if !w.reg.putDir(name, real, version, refused) {
					return
				}
				if refused != nil {
					w.log.Warn("adapter refused", "adapter", name, "err", refused)
				} else {
					w.log.Info("adapter registered", "adapter", name, "path", real, "version", version)
				}
			})
		}
		for _, e := range w.reg.entriesOf(true) {
			if !seen[e.name] {
				w.reg.removeDir(e.name)
				delete(w.pending, e.name)
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
		version, err := fingerprint(e.path)
		if err != nil || version == e.version {
			delete(w.pending, key)
			continue
		}
		settle(key, version, func() {
			w.reg.setVersion(e.name, version)
			w.log.Info("adapter changed", "adapter", e.name, "path", e.path, "version", version)
		})
	}
}

// follow asks for notifications on an adapter's directory (file writes in
// it do not show up on the parent).
func (w *Watcher) follow(dir string) {
	if w.fsw == nil || w.watched[dir] {
		return
	}
	if err := w.fsw.Add(dir); err != nil {
		w.log.Debug("cannot watch adapter directory; polling it", "dir", dir, "err", err)
		return
	}
	w.watched[dir] = true
}
