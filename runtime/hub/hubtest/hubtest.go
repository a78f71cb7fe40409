// Package hubtest is a fake Hugging Face Hub for tests: an httptest server
// speaking the download protocol of huggingface_hub (file_download.py,
// hf_api.py: revision listing, HEAD metadata, relative and CDN redirects,
// Range requests, gated repos, error codes), a second server standing for the
// CDN, a request log, and injectable faults (cut connections, corrupted
// bodies, ignored Range, network down).
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultToken is the token that opens gated repositories unless Server.Token is changed.
const DefaultToken = "hf_hubtest_token"

// File is one file of a fake repository.
type File struct {
	Name string // path in the repository, "/"-separated
	Data []byte
	// LFS files are announced with X-Linked-Etag (sha256) and X-Linked-Size
	// and redirected to the CDN server with an absolute URL; other files have
	// a git blob sha1 ETag and are served by the Hub after a relative redirect.
	LFS bool
}

// Repo is a fake repository with one branch.
type Repo struct {
	ID     string // "org/name"
	Type   string // "model" (default), "dataset" or "space"
	Branch string // default "main"
	Commit string // 40-hex; default derived from the type, id and branch
	Gated  bool   // file requests need "authorization: Bearer <Server.Token>"
	Files  []File
}

// Fault changes how the next Times content GETs of one file are served.
type Fault struct {
	Repo, File  string
	Times       int   // how many GETs it applies to (default 1)
	CutAfter    int64 // send this many body bytes, then drop the connection (0: off)
	Corrupt     bool  // flip one byte of the body
	IgnoreRange bool  // answer 200 with the whole file even when a Range is sent
}

// Request is one request as the fake saw it.
type Request struct {
	Server string // "hub" or "cdn"
	Method string
	Path   string // escaped path
	Range  string // Range header
	Auth   string // Authorization header
	Status int
	Bytes  int64 // body bytes written
}

// Stats sums the request log.
type Stats struct {
	Heads       int   // HEAD requests to the Hub
	APIGets     int   // revision listings
	FileGets    int   // content GETs (Hub or CDN)
	BytesServed int64 // content bytes written by those GETs
	AuthLeaks   int   // CDN requests that carried an Authorization header
}

// Server is the fake Hub. Endpoint is its URL (for Client.Endpoint / HF_ENDPOINT).
type Server struct {
	Endpoint string
	Token    string // accepted token for gated repos (DefaultToken)
	Hub, CDN *httptest.Server

	inflight sync.WaitGroup // handlers running
	mu       sync.Mutex
	repos    map[string]*Repo // by type + "/" + id
	faults   []Fault
	log      []Request
	down     bool
}

// NewServer starts the Hub and CDN servers serving repos; they are closed at
// the end of the test.
func NewServer(t testing.TB, repos ...Repo) *Server {
	t.Helper()
	s := &Server{Token: DefaultToken, repos: map[string]*Repo{}}
	for _, r := range repos {
		s.AddRepo(r)
	}
	s.Hub = httptest.NewServer(s.handler("hub", s.serveHub))
	s.CDN = httptest.NewServer(s.handler("cdn", s.serveCDN))
	s.Endpoint = s.Hub.URL
	t.Cleanup(func() {
		s.Hub.Close()
		s.CDN.Close()
	})
	return s
}

// AddRepo adds or replaces a repository (a new Commit simulates a push).
func (s *Server) AddRepo(r Repo) {
	if r.Type == "" {
		r.Type = "model"
	}
	if r.Branch == "" {
		r.Branch = "main"
	}
	if r.Commit == "" {
		h := sha1.Sum([]byte(r.Type + "/" + r.ID + "@" + r.Branch))
		r.Commit = hex.EncodeToString(h[:])
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[r.Type+"/"+r.ID] = &r
}

// Commit returns the commit hash of a model repository (or "type/id" for others).
func (s *Server) Commit(repoID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.lookup(repoID); r != nil {
		return r.Commit
	}
	return ""
}

func (s *Server) lookup(key string) *Repo {
	if r, ok := s.repos[key]; ok {
		return r
	}
	return s.repos["model/"+key]
}

// AddFault arms a fault for the next content GETs of a file.
func (s *Server) AddFault(f Fault) {
	if f.Times == 0 {
		f.Times = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// SetDown makes every request fail at the connection level (no response).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// Requests returns a copy of the request log, once the handlers still
// running have returned (a client may read a whole body before its handler
// has recorded it), or after a second if one is stuck.
func (s *Server) Requests() []Request {
	settled := make(chan struct{})
	go func() { s.inflight.Wait(); close(settled) }()
	select {
	case <-settled:
	case <-time.After(time.Second):
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.log...)
}

// ResetLog forgets the requests seen so far.
func (s *Server) ResetLog() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// Stats sums the request log.
func (s *Server) Stats() Stats {
	var st Stats
	for _, r := range s.Requests() {
		switch {
		case r.Server == "cdn" && r.Auth != "":
			st.AuthLeaks++
		case r.Server == "hub" && r.Method == http.MethodHead:
			st.Heads++
		case r.Server == "hub" && strings.HasPrefix(r.Path, "/api/") && strings.Contains(r.Path, "/revision/"):
			st.APIGets++
		}
		if r.Method == http.MethodGet && (r.Server == "cdn" || strings.Contains(r.Path, "/resolve")) {
			st.FileGets++
			st.BytesServed += r.Bytes
		}
	}
	return st
}

// Etag is the etag the fake announces for f: sha256 for LFS files, the git
// blob sha1 otherwise.
func Etag(f File) string {
	if f.LFS {
		return SHA256(f.Data)
	}
	return GitBlobSHA1(f.Data)
}

// SHA256 is the hex sha256 of data.
func SHA256(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// GitBlobSHA1 is git's object id for a blob: sha1("blob <len>\x00" + data).
func GitBlobSHA1(data []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(data))
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// recorder captures the status and body size while keeping Flush and Hijack.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

func (w *recorder) Flush() { w.ResponseWriter.(http.Flusher).Flush() }

// dropConnection closes the TCP connection without a (further) response.
func dropConnection(w http.ResponseWriter) {
	if rec, ok := w.(*recorder); ok {
		w = rec.ResponseWriter
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
		conn.Close()
	}
}

func (s *Server) handler(name string, serve func(http.ResponseWriter, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.inflight.Add(1)
		defer s.inflight.Done()
		rec := &recorder{ResponseWriter: w}
		// Log on arrival, so the log is in request order even when a
		// client retries before the previous handler has returned.
		s.mu.Lock()
		down := s.down
		i := len(s.log)
		s.log = append(s.log, Request{
			Server: name, Method: r.Method, Path: r.URL.EscapedPath(),
			Range: r.Header.Get("Range"), Auth: r.Header.Get("Authorization"),
		})
		s.mu.Unlock()
		if down {
			dropConnection(rec)
		} else {
			serve(rec, r)
		}
		s.mu.Lock()
		if i < len(s.log) { // ResetLog may have run meanwhile
			s.log[i].Status, s.log[i].Bytes = rec.status, rec.n
		}
		s.mu.Unlock()
	})
}

func hubError(w http.ResponseWriter, status int, code, commit string) {
	w.Header().Set("X-Error-Code", code)
	if commit != "" {
		w.Header().Set("X-Repo-Commit", commit)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":%q}`, code)
}

// serveHub routes:
//
//	GET  /api/{models|datasets|spaces}/{repo}/revision/{rev}
//	HEAD|GET /[datasets/|spaces/]{repo}/resolve/{rev}/{file}
//	HEAD|GET /api/resolve-cache/{type}s/{repo}/{commit}/{file}
func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	switch {
	case strings.HasPrefix(p, "/api/resolve-cache/"):
		s.serveResolveCache(w, r, strings.TrimPrefix(p, "/api/resolve-cache/"))
	case strings.HasPrefix(p, "/api/") && strings.Contains(p, "/revision/"):
		s.serveRevision(w, r, strings.TrimPrefix(p, "/api/"))
	case strings.Contains(p, "/resolve/"):
		s.serveResolve(w, r, p)
	default:
		http.NotFound(w, r)
	}
}

// repoAccess finds a repository and checks the token of gated ones; it writes
// the error response and returns nil when the request cannot go on.
func (s *Server) repoAccess(w http.ResponseWriter, r *http.Request, typ, id string) *Repo {
	s.mu.Lock()
	repo := s.repos[typ+"/"+id]
	token := s.Token
	s.mu.Unlock()
	if repo == nil {
		hubError(w, http.StatusNotFound, "RepoNotFound", "")
		return nil
	}
	if repo.Gated {
		switch auth := r.Header.Get("Authorization"); auth {
		case "Bearer " + token:
		case "":
			hubError(w, http.StatusUnauthorized, "GatedRepo", "")
			return nil
		default:
			hubError(w, http.StatusForbidden, "GatedRepo", "")
			return nil
		}
	}
	return repo
}

func (s *Server) serveRevision(w http.ResponseWriter, r *http.Request, p string) {
	kind, rest, _ := strings.Cut(p, "/")
	id, rev, _ := strings.Cut(rest, "/revision/")
	rev, err := url.PathUnescape(rev)
	if err != nil || r.Method != http.MethodGet {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	repo := s.repos[strings.TrimSuffix(kind, "s")+"/"+id]
	s.mu.Unlock()
	if repo == nil {
		hubError(w, http.StatusNotFound, "RepoNotFound", "")
		return
	}
	if rev != repo.Branch && rev != repo.Commit {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "")
		return
	}
	type sibling struct {
		RFilename string `json:"rfilename"`
	}
	out := struct {
		ID       string    `json:"id"`
		Sha      string    `json:"sha"`
		Gated    bool      `json:"gated"`
		Siblings []sibling `json:"siblings"`
	}{ID: repo.ID, Sha: repo.Commit, Gated: repo.Gated}
	for _, f := range repo.Files {
		out.Siblings = append(out.Siblings, sibling{f.Name})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (s *Server) serveResolve(w http.ResponseWriter, r *http.Request, p string) {
	typ, p := "model", strings.TrimPrefix(p, "/")
	for _, t := range []string{"dataset", "space"} {
		if rest, ok := strings.CutPrefix(p, t+"s/"); ok {
			typ, p = t, rest
		}
	}
	id, rest, _ := strings.Cut(p, "/resolve/")
	rawRev, rawFile, _ := strings.Cut(rest, "/")
	rev, err1 := url.PathUnescape(rawRev)
	name, err2 := url.PathUnescape(rawFile)
	if err1 != nil || err2 != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	repo := s.repoAccess(w, r, typ, id)
	if repo == nil {
		return
	}
	if rev != repo.Branch && rev != repo.Commit {
		hubError(w, http.StatusNotFound, "RevisionNotFound", "")
		return
	}
	f := findFile(repo, name)
	if f == nil {
		hubError(w, http.StatusNotFound, "EntryNotFound", repo.Commit)
		return
	}
	w.Header().Set("X-Repo-Commit", repo.Commit)
	if f.LFS {
		// The Hub answers LFS files with the pointer file's git etag plus
		// X-Linked-* headers for the real content, and an absolute CDN URL.
		pointer := fmt.Sprintf("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n", SHA256(f.Data), len(f.Data))
		w.Header().Set("ETag", `"`+GitBlobSHA1([]byte(pointer))+`"`)
		w.Header().Set("X-Linked-Etag", `"`+SHA256(f.Data)+`"`)
		w.Header().Set("X-Linked-Size", strconv.Itoa(len(f.Data)))
		w.Header().Set("Location", s.CDN.URL+"/lfs/"+SHA256(f.Data)+"?sig=fake")
		w.WriteHeader(http.StatusFound)
		return
	}
	// Regular files: a relative redirect to the commit-pinned cache route.
	w.Header().Set("Location", "/api/resolve-cache/"+typ+"s/"+repo.ID+"/"+repo.Commit+"/"+rawFile)
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func (s *Server) serveResolveCache(w http.ResponseWriter, r *http.Request, p string) {
	kind, rest, _ := strings.Cut(p, "/")
	parts := strings.SplitN(rest, "/", 4) // org, name, commit, file
	if len(parts) != 4 {
		http.NotFound(w, r)
		return
	}
	name, err := url.PathUnescape(parts[3])
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	repo := s.repoAccess(w, r, strings.TrimSuffix(kind, "s"), parts[0]+"/"+parts[1])
	if repo == nil {
		return
	}
	f := findFile(repo, name)
	if f == nil || parts[2] != repo.Commit {
		hubError(w, http.StatusNotFound, "EntryNotFound", repo.Commit)
		return
	}
	w.Header().Set("X-Repo-Commit", repo.Commit)
	w.Header().Set("ETag", `"`+GitBlobSHA1(f.Data)+`"`)
	s.serveContent(w, r, repo.ID, f)
}

func (s *Server) serveCDN(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "" {
		http.Error(w, "the CDN must not receive the Hub token", http.StatusBadRequest)
		return
	}
	sum, ok := strings.CutPrefix(r.URL.Path, "/lfs/")
	if !ok || r.URL.Query().Get("sig") == "" {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	var repoID string
	var file *File
	for _, repo := range s.repos {
		for i := range repo.Files {
			if f := &repo.Files[i]; f.LFS && SHA256(f.Data) == sum {
				repoID, file = repo.ID, f
			}
		}
	}
	s.mu.Unlock()
	if file == nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("ETag", `"`+sum+`"`)
	s.serveContent(w, r, repoID, file)
}

func findFile(repo *Repo, name string) *File {
	for i := range repo.Files {
		if repo.Files[i].Name == name {
			return &repo.Files[i]
		}
	}
	return nil
}

// takeFault consumes one use of the fault armed for repoID/file, if any.
func (s *Server) takeFault(repoID, file string) Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.faults {
		if f := &s.faults[i]; f.Repo == repoID && f.File == file && f.Times > 0 {
			f.Times--
			return *f
		}
	}
	return Fault{}
}

// serveContent answers HEAD and GET for a file's bytes, with "bytes=N-"
// ranges and the armed faults.
func (s *Server) serveContent(w http.ResponseWriter, r *http.Request, repoID string, f *File) {
	var fault Fault
	if r.Method == http.MethodGet {
		fault = s.takeFault(repoID, f.Name)
	}
	size := int64(len(f.Data))
	status, start := http.StatusOK, int64(0)
	if rng := r.Header.Get("Range"); rng != "" && !fault.IgnoreRange {
		v, ok := strings.CutPrefix(rng, "bytes=")
		v, ok2 := strings.CutSuffix(v, "-")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || !ok2 || err != nil || n < 0 {
			http.Error(w, "hubtest: only Range bytes=N- is supported", http.StatusBadRequest)
			return
		}
		if n >= size {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		status, start = http.StatusPartialContent, n
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, size-1, size))
	}
	body := f.Data[start:]
	if fault.Corrupt && len(body) > 0 {
		body = append([]byte(nil), body...)
		body[len(body)/2] ^= 0x55
	}
	w.Header().Set("Accept-Ranges", "bytes")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if fault.CutAfter > 0 && fault.CutAfter < int64(len(body)) {
		w.Write(body[:fault.CutAfter])
		dropConnection(w)
		return
	}
	w.Write(body)
}
