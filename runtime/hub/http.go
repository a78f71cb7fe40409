package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const userAgent = "parrot-hub/1 (huggingface_hub-compatible cache)"

// statusError is a non-success answer from the Hub. It wraps ErrNotFound or
// ErrAccessDenied where the status means that.
type statusError struct {
	status int
	code   string // X-Error-Code: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo
	commit string // X-Repo-Commit, sent with 404s for missing files
	kind   error
	msg    string
}

func (e *statusError) Error() string { return e.msg }
func (e *statusError) Unwrap() error { return e.kind }

// final reports whether the error is an answer about the repository content
// (missing revision or file) rather than access or availability; like
// huggingface_hub, only those are not answered from the cache instead.
func (e *statusError) final() bool {
	return e.code == "RevisionNotFound" || e.code == "EntryNotFound"
}

// netError is a failure to talk to the Hub (connection, timeout, cut body):
// a download retries it, metadata requests fall back to the cache.
type netError struct{ err error }

func (e *netError) Error() string { return e.err.Error() }
func (e *netError) Unwrap() error { return e.err }

// errOffline is the cause recorded when Client.Offline forbids requests.
var errOffline = errors.New("offline mode is on (HF_HUB_OFFLINE)")

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{}
}

// metaClient does not follow redirects: HEAD follows relative ones itself and
// stops at absolute ones (the CDN), whose Location is the download URL.
func (c *Client) metaClient() *http.Client {
	hc := *c.httpClient()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &hc
}

// downloadClient follows redirects but drops the authorization header on any
// hop to another host, comparing host:port as huggingface_hub does (Go's own
// rule ignores the port).
func (c *Client) downloadClient() *http.Client {
	hc := *c.httpClient()
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if req.URL.Host != via[0].URL.Host {
			req.Header.Del("Authorization")
		}
		return nil
	}
	return &hc
}

func (c *Client) newRequest(ctx context.Context, method, rawURL string, auth bool) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("hub: bad URL %q: %w", rawURL, err)
	}
	req.Header.Set("User-Agent", userAgent)
	// Sizes and hashes are of the raw bytes: no transparent compression.
	req.Header.Set("Accept-Encoding", "identity")
	if auth && c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	return req, nil
}

// quote is Python's urllib.parse.quote: every byte but letters, digits, "_.-~"
// and those in safe is percent-encoded.
func quote(s, safe string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if 'a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' ||
			strings.IndexByte("_.-~", ch) >= 0 || strings.IndexByte(safe, ch) >= 0 {
			b.WriteByte(ch)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", ch)
	}
	return b.String()
}

func urlPrefix(t RepoType) string {
	switch t {
	case RepoDataset:
		return "datasets/"
	case RepoSpace:
		return "spaces/"
	}
	return ""
}

// resolveURL is hf_hub_url: {endpoint}/{prefix}{repo}/resolve/{rev}/{filename},
// the revision quoted with no safe characters ("/" -> %2F), the filename keeping "/".
func (c *Client) resolveURL(t RepoType, repoID, revision, filename string) string {
	return c.endpoint() + "/" + urlPrefix(t) + repoID + "/resolve/" + quote(revision, "") + "/" + quote(filename, "/")
}

func (c *Client) repoPageURL(t RepoType, repoID string) string {
	return c.endpoint() + "/" + urlPrefix(t) + repoID
}

// statusErr turns a non-success response into a statusError with a message
// that tells the user what to do.
func (c *Client) statusErr(resp *http.Response, t RepoType, repoID string) error {
	e := &statusError{
		status: resp.StatusCode,
		code:   resp.Header.Get("X-Error-Code"),
		commit: resp.Header.Get("X-Repo-Commit"),
	}
	page := c.repoPageURL(t, repoID)
	switch {
	case e.status == http.StatusUnauthorized || e.status == http.StatusForbidden:
		e.kind = ErrAccessDenied
		switch {
		case e.code == "GatedRepo" && c.Token == "":
			e.msg = fmt.Sprintf("gated repo: accept its conditions at %s, then set HF_TOKEN to a token of that account (HTTP %d)", page, e.status)
		case e.code == "GatedRepo":
			e.msg = fmt.Sprintf("gated repo: the token in use has no access; accept the conditions at %s with its account (HTTP %d)", page, e.status)
		case c.Token == "":
			e.msg = fmt.Sprintf("repository not found, or gated or private repo: set HF_TOKEN to a token with access (HTTP %d)", e.status)
		default:
			e.msg = fmt.Sprintf("repository not found, or the token in use has no access to this gated or private repo (HTTP %d)", e.status)
		}
	case e.status == http.StatusNotFound:
		e.kind = ErrNotFound
		switch e.code {
		case "RevisionNotFound":
			e.msg = "revision not found (HTTP 404)"
		case "EntryNotFound":
			e.msg = "file not found in the repository (HTTP 404)"
		default:
			e.msg = fmt.Sprintf("repository or file not found: check the name at %s (HTTP 404)", page)
		}
	default:
		e.msg = "HTTP " + resp.Status
		if m := resp.Header.Get("X-Error-Message"); m != "" {
			e.msg += ": " + m
		}
	}
	return e
}

// fileMeta is what a HEAD on a resolve URL tells about one file.
type fileMeta struct {
	commit   string // X-Repo-Commit
	etag     string // normalized X-Linked-Etag or ETag: sha256 (LFS) or git blob sha1
	size     int64  // X-Linked-Size or Content-Length
	location string // where to GET the content (the CDN for LFS files)
	auth     bool   // whether the GET may carry the token (same host as the resolve URL)
}

// normalizeEtag strips a weak-validator "W/" prefix and the quotes.
func normalizeEtag(s string) string {
	s = strings.TrimPrefix(s, "W/")
	return strings.Trim(s, `"`)
}

// fileMetadata sends HEAD to the resolve URL, following only relative
// redirects (repository renames), and reads the commit, etag, size and
// download location from the headers.
func (c *Client) fileMetadata(ctx context.Context, t RepoType, repoID, resolve string) (fileMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, c.etagTimeout())
	defer cancel()
	hc := c.metaClient()
	cur, err := url.Parse(resolve)
	if err != nil {
		return fileMeta{}, fmt.Errorf("hub: bad URL %q: %w", resolve, err)
	}
	var resp *http.Response
	for hops := 0; ; hops++ {
		req, err := c.newRequest(ctx, http.MethodHead, cur.String(), true)
		if err != nil {
			return fileMeta{}, err
		}
		resp, err = hc.Do(req)
		if err != nil {
			return fileMeta{}, &netError{err}
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			break
		}
		target, err := url.Parse(loc)
		if err != nil {
			return fileMeta{}, fmt.Errorf("hub: bad redirect %q: %w", loc, err)
		}
		if target.Host != "" || target.Scheme != "" {
			break // absolute: the download location, not followed here
		}
		if hops == 10 {
			return fileMeta{}, errors.New("hub: too many redirects")
		}
		cur = cur.ResolveReference(target)
	}
	if resp.StatusCode >= 400 {
		return fileMeta{}, c.statusErr(resp, t, repoID)
	}

	redirect := resp.StatusCode >= 300
	m := fileMeta{
		commit:   resp.Header.Get("X-Repo-Commit"),
		etag:     normalizeEtag(resp.Header.Get("X-Linked-Etag")),
		location: cur.String(),
	}
	if m.etag == "" {
		m.etag = normalizeEtag(resp.Header.Get("ETag"))
	}
	sizeHdr := resp.Header.Get("X-Linked-Size")
	if sizeHdr == "" && !redirect {
		sizeHdr = resp.Header.Get("Content-Length")
	}
	if redirect {
		loc, err := cur.Parse(resp.Header.Get("Location"))
		if err != nil {
			return fileMeta{}, fmt.Errorf("hub: bad redirect: %w", err)
		}
		m.location = loc.String()
	}
	orig, _ := url.Parse(resolve)
	dl, _ := url.Parse(m.location)
	m.auth = orig.Host == dl.Host

	switch {
	case !isSafeName(m.commit):
		return fileMeta{}, &netError{fmt.Errorf("the server sent no usable X-Repo-Commit header (%q): is %s a Hugging Face Hub? check proxies and HF_ENDPOINT", m.commit, c.endpoint())}
	case !isSafeName(m.etag):
		return fileMeta{}, &netError{fmt.Errorf("the server sent no usable ETag (%q)", m.etag)}
	}
	if m.size, err = strconv.ParseInt(sizeHdr, 10, 64); err != nil || m.size < 0 {
		return fileMeta{}, &netError{fmt.Errorf("the server sent no usable file size (%q)", sizeHdr)}
	}
	return m, nil
}

// revisionInfo is the part of GET /api/{type}s/{repo}/revision/{rev} used here.
type revisionInfo struct {
	Sha      string `json:"sha"`
	Siblings []struct {
		RFilename string `json:"rfilename"`
	} `json:"siblings"`
}

// listRevision asks the Hub for the commit of revision and its files.
func (c *Client) listRevision(ctx context.Context, t RepoType, repoID, revision string) (revisionInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, c.etagTimeout())
	defer cancel()
	u := c.endpoint() + "/api/" + string(t) + "s/" + repoID + "/revision/" + quote(revision, "")
	req, err := c.newRequest(ctx, http.MethodGet, u, true)
	if err != nil {
		return revisionInfo{}, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return revisionInfo{}, &netError{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return revisionInfo{}, c.statusErr(resp, t, repoID)
	}
	var info revisionInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&info); err != nil {
		return revisionInfo{}, &netError{fmt.Errorf("reading the file list from %s: %w", u, err)}
	}
	if !isSafeName(info.Sha) {
		return revisionInfo{}, fmt.Errorf("hub: the file list from %s has no usable commit sha (%q)", u, info.Sha)
	}
	return info, nil
}
