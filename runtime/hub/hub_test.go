package hub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parrot-llm/parrot/runtime/hub"
	"github.com/parrot-llm/parrot/runtime/hub/hubtest"
)

const repoID = "acme/tiny-llama"

// payload is deterministic pseudo-random bytes (an LCG), so no two offsets look alike.
func payload(n int, seed uint32) []byte {
	b := make([]byte, n)
	for i := range b {
		seed = seed*1664525 + 1013904223
		b[i] = byte(seed >> 24)
	}
	return b
}

var (
	weights   = hubtest.File{Name: "model.safetensors", Data: payload(200_000, 1), LFS: true}
	config    = hubtest.File{Name: "config.json", Data: []byte(`{"hidden_size": 64}` + "\n")}
	tokenizer = hubtest.File{Name: "tokenizer_config.json", Data: []byte(`{"bos_token": "<s>"}`)}
	nested    = hubtest.File{Name: "extra/deep/notes.json", Data: []byte(`{"note": 1}`)}
	readme    = hubtest.File{Name: "README.md", Data: []byte("# tiny\n")}
)

func tinyRepo() hubtest.Repo {
	return hubtest.Repo{ID: repoID, Files: []hubtest.File{weights, config, tokenizer, nested, readme}}
}

func newClient(s *hubtest.Server, cache string) *hub.Client {
	return &hub.Client{Endpoint: s.Endpoint, CacheDir: cache, Token: "hf_user_token"}
}

func repoDir(cache string) string { return filepath.Join(cache, "models--acme--tiny-llama") }

func TestSnapshotCacheLayout(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	c := newClient(s, cache)
	commit := s.Commit(repoID)

	dir, err := c.Snapshot(context.Background(), hub.RepoModel, repoID, "main", []string{"*.json", "*.safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	root := repoDir(cache)
	if want := filepath.Join(root, "snapshots", commit); dir != want {
		t.Fatalf("snapshot dir %s, want %s", dir, want)
	}

	// refs/main holds exactly the 40-hex commit.
	ref, err := os.ReadFile(filepath.Join(root, "refs", "main"))
	if err != nil || string(ref) != commit {
		t.Fatalf("refs/main = %q (%v), want %q", ref, err, commit)
	}

	for _, f := range []hubtest.File{weights, config, tokenizer, nested} {
		p := filepath.Join(dir, filepath.FromSlash(f.Name))
		link, err := os.Readlink(p)
		if err != nil {
			t.Fatalf("%s: not a symlink: %v", f.Name, err)
		}
		up := strings.Repeat("../", 2+strings.Count(f.Name, "/"))
		if want := up + "blobs/" + hubtest.Etag(f); link != want {
			t.Errorf("%s -> %s, want %s", f.Name, link, want)
		}
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("%s: content differs (%v)", f.Name, err)
		}
		if _, err := os.Stat(filepath.Join(cache, ".locks", "models--acme--tiny-llama", hubtest.Etag(f)+".lock")); err != nil {
			t.Errorf("%s: lock file: %v", f.Name, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "README.md")); !os.IsNotExist(err) {
		t.Error("README.md does not match the patterns but was downloaded")
	}
	blobs, _ := os.ReadDir(filepath.Join(root, "blobs"))
	if len(blobs) != 4 {
		t.Errorf("%d blobs, want 4", len(blobs))
	}
	for _, b := range blobs {
		if strings.HasSuffix(b.Name(), ".incomplete") {
			t.Errorf("left over %s", b.Name())
		}
	}

	st := s.Stats()
	if st.AuthLeaks != 0 {
		t.Errorf("the token was sent to the CDN %d times", st.AuthLeaks)
	}
	if st.BytesServed != int64(len(weights.Data)+len(config.Data)+len(tokenizer.Data)+len(nested.Data)) {
		t.Errorf("served %d bytes: some file was fetched twice or not at all", st.BytesServed)
	}
	for _, r := range s.Requests() {
		if r.Server == "cdn" && r.Method == "HEAD" {
			t.Error("HEAD followed the absolute redirect to the CDN")
		}
		if r.Server == "hub" && r.Auth != "Bearer hf_user_token" {
			t.Errorf("%s %s without the token", r.Method, r.Path)
		}
	}

	// Reuse: everything is pinned by commit, so only the listing is asked.
	s.ResetLog()
	dir2, err := c.Snapshot(context.Background(), hub.RepoModel, repoID, "main", []string{"*.json", "*.safetensors"})
	if err != nil || dir2 != dir {
		t.Fatalf("second snapshot: %s, %v", dir2, err)
	}
	if st := s.Stats(); st.FileGets != 0 || st.Heads != 0 || st.APIGets != 1 {
		t.Errorf("second snapshot: %+v, want only the listing", st)
	}
}

func TestDownloadBranchChecksOnceThenReuses(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	c := newClient(s, t.TempDir())
	ctx := context.Background()
	p1, err := c.Download(ctx, hub.RepoModel, repoID, "main", "config.json")
	if err != nil {
		t.Fatal(err)
	}
	s.ResetLog()
	p2, err := c.Download(ctx, hub.RepoModel, repoID, "main", "config.json")
	if err != nil || p2 != p1 {
		t.Fatalf("%s, %v", p2, err)
	}
	// A branch may move: HEAD learns its commit (2 requests: the resolve URL
	// and its relative redirect), no content is fetched.
	if st := s.Stats(); st.Heads != 2 || st.FileGets != 0 {
		t.Errorf("second download: %+v, want 2 HEADs and no GET", st)
	}
	// Pinned by commit and cached: no request at all.
	s.ResetLog()
	if _, err := c.Download(ctx, hub.RepoModel, repoID, s.Commit(repoID), "config.json"); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("%d requests for a cached commit-pinned file", n)
	}
}

func TestNotFound(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	c := newClient(s, cache)
	ctx := context.Background()

	_, err := c.Download(ctx, hub.RepoModel, repoID, "main", "missing.bin")
	if !errors.Is(err, hub.ErrNotFound) {
		t.Fatalf("missing file: %v, want ErrNotFound", err)
	}
	marker := filepath.Join(repoDir(cache), ".no_exist", s.Commit(repoID), "missing.bin")
	if st, err := os.Stat(marker); err != nil || st.Size() != 0 {
		t.Errorf(".no_exist marker: %v", err)
	}
	// Offline, the marker answers "not found" rather than "not cached".
	off := &hub.Client{CacheDir: cache, Offline: true}
	if _, err := off.Download(ctx, hub.RepoModel, repoID, "main", "missing.bin"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("offline, marked missing: %v", err)
	}

	if _, err := c.Download(ctx, hub.RepoModel, "acme/nothing", "main", "config.json"); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing repo: %v", err)
	}
	if _, err := c.Snapshot(ctx, hub.RepoModel, "acme/nothing", "main", nil); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing repo snapshot: %v", err)
	}
	if _, err := c.Snapshot(ctx, hub.RepoModel, repoID, "no-such-branch", nil); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("missing revision: %v", err)
	}
	if _, err := c.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"*.gguf"}); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("no matching file: %v", err)
	}
	if _, err := c.Download(ctx, hub.RepoModel, repoID, "main", "../escape"); err == nil {
		t.Error("a file name leaving the snapshot must be rejected")
	}
}

func TestGatedRepo(t *testing.T) {
	gated := tinyRepo()
	gated.ID, gated.Gated = "acme/gated", true
	s := hubtest.NewServer(t, gated)
	ctx := context.Background()

	anon := &hub.Client{Endpoint: s.Endpoint, CacheDir: t.TempDir()}
	_, err := anon.Download(ctx, hub.RepoModel, gated.ID, "main", "config.json")
	if !errors.Is(err, hub.ErrAccessDenied) || !strings.Contains(err.Error(), "HF_TOKEN") || !strings.Contains(err.Error(), "401") {
		t.Errorf("no token: %v", err)
	}
	wrong := &hub.Client{Endpoint: s.Endpoint, CacheDir: t.TempDir(), Token: "hf_wrong"}
	if _, err := wrong.Snapshot(ctx, hub.RepoModel, gated.ID, "main", nil); !errors.Is(err, hub.ErrAccessDenied) || !strings.Contains(err.Error(), "403") {
		t.Errorf("wrong token: %v", err)
	}
	ok := &hub.Client{Endpoint: s.Endpoint, CacheDir: t.TempDir(), Token: hubtest.DefaultToken}
	p, err := ok.Download(ctx, hub.RepoModel, gated.ID, "main", "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, weights.Data) {
		t.Error("content differs")
	}
	if s.Stats().AuthLeaks != 0 {
		t.Error("the token reached the CDN")
	}
}

func cdnRanges(s *hubtest.Server) []string {
	var r []string
	for _, q := range s.Requests() {
		if q.Server == "cdn" && q.Method == "GET" {
			r = append(r, q.Range)
		}
	}
	return r
}

func checkFile(t *testing.T, p string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s: content differs (%d bytes, %v)", p, len(got), err)
	}
}

func TestResumeAfterCutConnection(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	c := newClient(s, t.TempDir())
	var events []hub.ProgressEvent
	c.Progress = func(e hub.ProgressEvent) { events = append(events, e) }
	s.AddFault(hubtest.Fault{Repo: repoID, File: weights.Name, CutAfter: 70_000, Times: 2})

	p, err := c.Download(context.Background(), hub.RepoModel, repoID, "main", weights.Name)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, weights.Data)
	if got, want := strings.Join(cdnRanges(s), ","), ",bytes=70000-,bytes=140000-"; got != want {
		t.Errorf("CDN ranges %q, want %q", got, want)
	}
	if st := s.Stats(); st.BytesServed != int64(len(weights.Data)) {
		t.Errorf("served %d bytes for a %d-byte file", st.BytesServed, len(weights.Data))
	}
	last := events[len(events)-1]
	if last.File != weights.Name || last.Done != last.Total || last.Total != int64(len(weights.Data)) {
		t.Errorf("last progress event %+v", last)
	}
	for i := 1; i < len(events); i++ {
		if events[i].Done < events[i-1].Done {
			t.Errorf("progress went back: %+v then %+v", events[i-1], events[i])
		}
	}
}

// A partial file left by huggingface_hub (blobs/<etag>.incomplete) is resumed.
func TestResumePartialFromEarlierRun(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	blobs := filepath.Join(repoDir(cache), "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		t.Fatal(err)
	}
	const have = 123_457
	partial := filepath.Join(blobs, hubtest.Etag(weights)+".incomplete")
	if err := os.WriteFile(partial, weights.Data[:have], 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := newClient(s, cache).Download(context.Background(), hub.RepoModel, repoID, "main", weights.Name)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, weights.Data)
	if got := strings.Join(cdnRanges(s), ","); got != "bytes=123457-" {
		t.Errorf("CDN ranges %q", got)
	}
	if st := s.Stats(); st.BytesServed != int64(len(weights.Data)-have) {
		t.Errorf("served %d bytes, want %d", st.BytesServed, len(weights.Data)-have)
	}
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Error("the .incomplete file is still there")
	}
}

// A server that ignores Range (200) makes the download start over.
func TestRangeIgnoredRestarts(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	blobs := filepath.Join(repoDir(cache), "blobs")
	os.MkdirAll(blobs, 0o755)
	os.WriteFile(filepath.Join(blobs, hubtest.Etag(weights)+".incomplete"), weights.Data[:5000], 0o644)
	s.AddFault(hubtest.Fault{Repo: repoID, File: weights.Name, IgnoreRange: true})

	p, err := newClient(s, cache).Download(context.Background(), hub.RepoModel, repoID, "main", weights.Name)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, weights.Data)
	if got := strings.Join(cdnRanges(s), ","); got != "bytes=5000-" {
		t.Errorf("CDN ranges %q", got)
	}
}

// A kept prefix that is wrong fails the hash check; the download starts over once.
func TestBadPartialStartsOver(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	blobs := filepath.Join(repoDir(cache), "blobs")
	os.MkdirAll(blobs, 0o755)
	os.WriteFile(filepath.Join(blobs, hubtest.Etag(weights)+".incomplete"), make([]byte, 1000), 0o644)

	p, err := newClient(s, cache).Download(context.Background(), hub.RepoModel, repoID, "main", weights.Name)
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, weights.Data)
	if got := strings.Join(cdnRanges(s), ","); got != "bytes=1000-," {
		t.Errorf("CDN ranges %q, want a resume then a full download", got)
	}
}

func TestCorruptBodyRejected(t *testing.T) {
	for _, f := range []hubtest.File{weights, config} { // sha256 and git-sha1 etags
		t.Run(f.Name, func(t *testing.T) {
			s := hubtest.NewServer(t, tinyRepo())
			cache := t.TempDir()
			c := newClient(s, cache)
			s.AddFault(hubtest.Fault{Repo: repoID, File: f.Name, Corrupt: true})
			_, err := c.Download(context.Background(), hub.RepoModel, repoID, "main", f.Name)
			if !errors.Is(err, hub.ErrIntegrity) {
				t.Fatalf("got %v, want ErrIntegrity", err)
			}
			blob := filepath.Join(repoDir(cache), "blobs", hubtest.Etag(f))
			for _, p := range []string{blob, blob + ".incomplete", filepath.Join(repoDir(cache), "snapshots", s.Commit(repoID), f.Name)} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s exists after a failed check", p)
				}
			}
			// The next run downloads it cleanly.
			p, err := c.Download(context.Background(), hub.RepoModel, repoID, "main", f.Name)
			if err != nil {
				t.Fatal(err)
			}
			checkFile(t, p, f.Data)
		})
	}
}

func TestOfflineUsesCacheOnly(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	ctx := context.Background()
	online := newClient(s, cache)
	dir, err := online.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"*.json"})
	if err != nil {
		t.Fatal(err)
	}

	s.ResetLog()
	off := &hub.Client{Endpoint: s.Endpoint, CacheDir: cache, Offline: true}
	got, err := off.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"config.json"})
	if err != nil || got != dir {
		t.Fatalf("offline snapshot: %s, %v", got, err)
	}
	p, err := off.Download(ctx, hub.RepoModel, repoID, "main", "config.json")
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, config.Data)

	_, err = off.Download(ctx, hub.RepoModel, repoID, "main", weights.Name)
	if !errors.Is(err, hub.ErrNotCached) || !strings.Contains(err.Error(), "HF_HUB_OFFLINE") {
		t.Errorf("uncached file offline: %v", err)
	}
	if _, err := off.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"*.safetensors"}); !errors.Is(err, hub.ErrNotCached) {
		t.Errorf("uncached pattern offline: %v", err)
	}
	if _, err := off.Snapshot(ctx, hub.RepoDataset, repoID, "main", nil); !errors.Is(err, hub.ErrNotCached) {
		t.Errorf("uncached repo offline: %v", err)
	}
	if n := len(s.Requests()); n != 0 {
		t.Errorf("offline mode sent %d requests", n)
	}
}

func TestNetworkDownFallsBackToCache(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	ctx := context.Background()
	c := newClient(s, cache)
	dir, err := c.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"*.json"})
	if err != nil {
		t.Fatal(err)
	}
	s.SetDown(true)
	if got, err := c.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"*.json"}); err != nil || got != dir {
		t.Errorf("snapshot with the Hub down: %s, %v", got, err)
	}
	p, err := c.Download(ctx, hub.RepoModel, repoID, "main", "config.json")
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, config.Data)
	_, err = c.Download(ctx, hub.RepoModel, repoID, "main", weights.Name)
	if !errors.Is(err, hub.ErrNotCached) || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("uncached file with the Hub down: %v", err)
	}
}

// Two downloads of one blob at once: the lock makes the second reuse the first's.
func TestConcurrentDownloadsFetchOnce(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	c := newClient(s, t.TempDir())
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Download(context.Background(), hub.RepoModel, repoID, "main", weights.Name)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := cdnRanges(s); len(got) != 1 {
		t.Errorf("%d CDN downloads, want 1", len(got))
	}
}

func TestDatasetRepo(t *testing.T) {
	ds := hubtest.Repo{ID: "acme/chats", Type: "dataset", Files: []hubtest.File{
		{Name: "data/train.jsonl", Data: []byte(`{"messages": []}` + "\n")},
	}}
	s := hubtest.NewServer(t, ds)
	cache := t.TempDir()
	c := newClient(s, cache)
	dir, err := c.Snapshot(context.Background(), hub.RepoDataset, ds.ID, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(cache, "datasets--acme--chats", "snapshots", s.Commit("dataset/acme/chats"))
	if dir != want {
		t.Fatalf("dir %s, want %s", dir, want)
	}
	checkFile(t, filepath.Join(dir, "data", "train.jsonl"), ds.Files[0].Data)
	if _, err := c.Snapshot(context.Background(), hub.RepoModel, ds.ID, "", nil); !errors.Is(err, hub.ErrNotFound) {
		t.Errorf("a dataset asked as a model: %v", err)
	}
}

// A body that stops flowing is abandoned after DownloadTimeout and resumed.
func TestStalledBodyResumes(t *testing.T) {
	data := payload(50_000, 7)
	const commit = "89abcdef0123456789abcdef0123456789abcdef"
	var mu sync.Mutex
	var ranges []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Repo-Commit", commit)
		w.Header().Set("ETag", `"`+hubtest.GitBlobSHA1(data)+`"`)
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			return
		}
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		mu.Unlock()
		if first { // send 20000 bytes, then nothing until the client gives up
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:20_000])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		if r.Header.Get("Range") != "bytes=20000-" {
			http.Error(w, "bad range", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 20000-%d/%d", len(data)-1, len(data)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[20_000:])
	}))
	t.Cleanup(srv.Close)

	c := &hub.Client{Endpoint: srv.URL, CacheDir: t.TempDir(), DownloadTimeout: 200 * time.Millisecond}
	p, err := c.Download(context.Background(), hub.RepoModel, repoID, "main", "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	checkFile(t, p, data)
	if got := strings.Join(ranges, ","); got != ",bytes=20000-" {
		t.Errorf("ranges %q", got)
	}
}

func TestCanceledContext(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := newClient(s, t.TempDir()).Download(ctx, hub.RepoModel, repoID, "main", weights.Name)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// After a push, refs/main moves to the new commit and unchanged files are
// linked from their existing blobs without being fetched again.
func TestNewCommitReusesBlobs(t *testing.T) {
	s := hubtest.NewServer(t, tinyRepo())
	cache := t.TempDir()
	c := newClient(s, cache)
	ctx := context.Background()
	old, err := c.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"*.safetensors", "config.json"})
	if err != nil {
		t.Fatal(err)
	}
	pushed := tinyRepo()
	pushed.Commit = "fedcba9876543210fedcba9876543210fedcba98"
	newConfig := hubtest.File{Name: "config.json", Data: []byte(`{"hidden_size": 128}`)}
	pushed.Files = []hubtest.File{weights, newConfig}
	s.AddRepo(pushed)
	s.ResetLog()

	dir, err := c.Snapshot(ctx, hub.RepoModel, repoID, "main", []string{"*.safetensors", "config.json"})
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir) != pushed.Commit {
		t.Fatalf("snapshot %s, want commit %s", dir, pushed.Commit)
	}
	if ref, _ := os.ReadFile(filepath.Join(repoDir(cache), "refs", "main")); string(ref) != pushed.Commit {
		t.Errorf("refs/main = %q", ref)
	}
	checkFile(t, filepath.Join(dir, "config.json"), newConfig.Data)
	checkFile(t, filepath.Join(dir, weights.Name), weights.Data)
	checkFile(t, filepath.Join(old, "config.json"), config.Data) // the old snapshot stays intact
	if st := s.Stats(); st.BytesServed != int64(len(newConfig.Data)) {
		t.Errorf("served %d bytes, want only the changed config (%d)", st.BytesServed, len(newConfig.Data))
	}
}
