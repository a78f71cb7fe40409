package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parrot-llm/parrot/config"
	"github.com/parrot-llm/parrot/runtime/hub"
)

// modelDir returns the local directory of cfg.Model: the directory itself,
// or the Hub snapshot, downloaded (or found) in the Hugging Face cache.
func modelDir(ctx context.Context, cfg config.Serve, log *slog.Logger) (string, error) {
	client, err := hub.NewFromEnv()
	if err != nil {
		return "", err
	}
	if cfg.DownloadDir != "" {
		client.CacheDir = cfg.DownloadDir
	}
	p := &progressLog{log: log, every: 5 * time.Second, files: map[string]*fileProgress{}}
	client.Progress = p.event
	dir, err := client.ResolveModel(ctx, cfg.Model, cfg.Revision, func(repoID, revision string) {
		log.Info("fetching model from the Hub", "repo", repoID, "revision", revision, "cache", client.CacheDir, "offline", client.Offline)
	})
	if err != nil {
		return "", err
	}
	if dir != cfg.Model {
		log.Info("model snapshot ready", "dir", dir)
	}
	return dir, nil
}

// progressLog logs download progress: when a file starts, at each further
// 10% or every `every`, and when it is complete.
type progressLog struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	files map[string]*fileProgress
}

type fileProgress struct {
	decile int // last logged tenth
	at     time.Time
}

func (p *progressLog) event(ev hub.ProgressEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	decile := 10
	if ev.Total > 0 {
		decile = int(ev.Done * 10 / ev.Total)
	}
	f, seen := p.files[ev.File]
	switch {
	case !seen:
		f = &fileProgress{decile: decile, at: now}
		p.files[ev.File] = f
		if ev.Done == ev.Total {
			f.decile = 11
			p.log.Info("downloaded", "file", ev.File, "bytes", ev.Total)
			return
		}
		p.log.Info("downloading", "file", ev.File, "bytes", ev.Total, "resumed_at", ev.Done)
		return
	case ev.Done == ev.Total:
		if f.decile < 11 {
			f.decile = 11 // logged as complete
			p.log.Info("downloaded", "file", ev.File, "bytes", ev.Total)
		}
		return
	case decile > f.decile || now.Sub(f.at) >= p.every:
		f.decile, f.at = decile, now
		p.log.Info("downloading", "file", ev.File, "done", ev.Done, "bytes", ev.Total,
			"percent", fmt.Sprintf("%.1f", 100*float64(ev.Done)/float64(max(ev.Total, 1))))
	}
}
