// Package hub downloads models and datasets from the Hugging Face Hub into
// the standard Hugging Face cache layout (huggingface_hub constants.py and
// file_download.py), so that files fetched by Python tools (huggingface_hub,
// transformers) are reused here and vice versa.
//
// Layout under the cache directory (HF_HUB_CACHE):
//
//	models--org--name/
//	  blobs/<etag>                   file content, named by the normalized etag
//	  blobs/<etag>.incomplete        partial download, resumed by either side
//	  snapshots/<commit>/<filename>  relative symlink -> ../../blobs/<etag>
//	  refs/<revision>                40-hex commit, no newline (branches and tags only)
//	  .no_exist/<commit>/<filename>  empty marker for files the Hub reported missing
//	.locks/models--org--name/<etag>.lock
package hub

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultEndpoint is the Hub used when HF_ENDPOINT is unset.
const DefaultEndpoint = "https://huggingface.co"

// DefaultRevision is the revision used when a reference names none.
const DefaultRevision = "main"

// Default timeouts, as huggingface_hub's HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT.
const (
	DefaultEtagTimeout     = 10 * time.Second
	DefaultDownloadTimeout = 10 * time.Second
)

// Errors callers can test with errors.Is. The returned errors wrap them with
// the repository, file and HTTP status.
var (
	// ErrNotFound: the Hub answered 404 for the repository, revision or file.
	ErrNotFound = errors.New("repository or file not found")
	// ErrAccessDenied: the Hub answered 401/403 (gated or private repository).
	ErrAccessDenied = errors.New("access denied (gated or private repo: set HF_TOKEN)")
	// ErrNotCached: offline (HF_HUB_OFFLINE or no network) and the file is not in the cache.
	ErrNotCached = errors.New("not in the local cache")
	// ErrIntegrity: a downloaded file has the wrong size or hash; it was discarded.
	ErrIntegrity = errors.New("downloaded file failed verification")
)

// RepoType is the kind of Hub repository.
type RepoType string

// Repository kinds. The empty RepoType means RepoModel.
const (
	RepoModel   RepoType = "model"
	RepoDataset RepoType = "dataset"
	RepoSpace   RepoType = "space"
)

// ProgressEvent reports the bytes of File on disk so far (Done) out of Total.
// A download emits one event when it starts (Done = bytes resumed), events as
// data arrives, and a last one with Done == Total.
type ProgressEvent struct {
	File        string
	Done, Total int64
}

// Client downloads from a Hub into a cache directory. The zero value is not
// usable; build one with NewFromEnv or fill Endpoint and CacheDir. A Client
// holds no mutable state and is safe for concurrent use.
type Client struct {
	Endpoint string       // e.g. https://huggingface.co, no trailing slash needed
	CacheDir string       // the hub cache (HF_HUB_CACHE), holding models--org--name/
	Token    string       // sent as "authorization: Bearer <token>" when non-empty
	Offline  bool         // no network at all: resolve through refs/ and snapshots/ only
	HTTP     *http.Client // nil: a client with no overall timeout (timeouts below apply)
	Progress func(ProgressEvent)

	// EtagTimeout bounds each metadata request (HEAD, revision listing);
	// DownloadTimeout is the longest wait for data while downloading. Zero
	// means the defaults (10 s each).
	EtagTimeout     time.Duration
	DownloadTimeout time.Duration
}

// NewFromEnv builds a Client from the environment variables huggingface_hub
// reads: HF_ENDPOINT; HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE, HF_HOME,
// XDG_CACHE_HOME; HF_TOKEN, HUGGING_FACE_HUB_TOKEN, HF_TOKEN_PATH;
// HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE; HF_HUB_ETAG_TIMEOUT,
// HF_HUB_DOWNLOAD_TIMEOUT.
func NewFromEnv() (*Client, error) {
	return newFromLookup(os.LookupEnv)
}

// newFromLookup is NewFromEnv with the environment injected (for tests).
func newFromLookup(lookup func(string) (string, bool)) (*Client, error) {
	get := func(k string) string { v, _ := lookup(k); return v }

	home, err := hfHome(get)
	if err != nil {
		return nil, err
	}
	cache := get("HF_HUB_CACHE")
	if cache == "" {
		cache = get("HUGGINGFACE_HUB_CACHE")
	}
	if cache == "" {
		cache = filepath.Join(home, "hub")
	}
	if cache, err = expandHome(cache); err != nil {
		return nil, err
	}

	endpoint := strings.TrimRight(get("HF_ENDPOINT"), "/")
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}

	token, err := tokenFromEnv(get, home)
	if err != nil {
		return nil, err
	}

	c := &Client{
		Endpoint: endpoint,
		CacheDir: cache,
		Token:    token,
		Offline:  isTrue(get("HF_HUB_OFFLINE")) || isTrue(get("TRANSFORMERS_OFFLINE")),
	}
	if c.EtagTimeout, err = secondsEnv(get, "HF_HUB_ETAG_TIMEOUT"); err != nil {
		return nil, err
	}
	if c.DownloadTimeout, err = secondsEnv(get, "HF_HUB_DOWNLOAD_TIMEOUT"); err != nil {
		return nil, err
	}
	return c, nil
}

// hfHome is $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface.
func hfHome(get func(string) string) (string, error) {
	if h := get("HF_HOME"); h != "" {
		return expandHome(h)
	}
	if x := get("XDG_CACHE_HOME"); x != "" {
		return expandHome(filepath.Join(x, "huggingface"))
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("hub: cannot locate the Hugging Face cache: set HF_HOME or HF_HUB_CACHE (%w)", err)
	}
	return filepath.Join(home, ".cache", "huggingface"), nil
}

// expandHome expands a leading "~" as Python's os.path.expanduser does.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("hub: cannot expand %q: %w", p, err)
	}
	return filepath.Join(home, p[1:]), nil
}

// tokenFromEnv follows huggingface_hub's order: HF_TOKEN, HUGGING_FACE_HUB_TOKEN,
// then the token file ($HF_TOKEN_PATH, default $HF_HOME/token). Whitespace is
// trimmed and an empty value counts as unset.
func tokenFromEnv(get func(string) string, home string) (string, error) {
	for _, k := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if t := strings.TrimSpace(get(k)); t != "" {
			return t, nil
		}
	}
	p := get("HF_TOKEN_PATH")
	if p == "" {
		p = filepath.Join(home, "token")
	}
	p, err := expandHome(p)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("hub: reading token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// isTrue is huggingface_hub's _is_true: 1/ON/YES/TRUE, case-insensitive.
func isTrue(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// secondsEnv reads a timeout in seconds; unset means 0 (the default).
func secondsEnv(get func(string) string, key string) (time.Duration, error) {
	v := strings.TrimSpace(get(key))
	if v == "" {
		return 0, nil
	}
	s, err := strconv.ParseFloat(v, 64)
	if err != nil || s <= 0 {
		return 0, fmt.Errorf("hub: %s=%q: want a positive number of seconds", key, v)
	}
	return time.Duration(s * float64(time.Second)), nil
}

// Repo ids as huggingface_hub validates them: an optional namespace and a name
// of word characters, '-' and '.', each starting and ending with a word
// character, the name at most 96 characters.
var repoIDRe = regexp.MustCompile(`^([A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?/)?[A-Za-z0-9_]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?$`)

// ValidateRepoID reports whether id is a valid Hub repository id ("name" or "org/name").
func ValidateRepoID(id string) error {
	switch {
	case id == "":
		return errors.New("hub: empty repository id")
	case strings.Count(id, "/") > 1:
		return fmt.Errorf("hub: invalid repository id %q: want \"org/name\"", id)
	case !repoIDRe.MatchString(id):
		return fmt.Errorf("hub: invalid repository id %q: use letters, digits, '-', '_' and '.', not starting or ending with '-' or '.', name at most 96 characters", id)
	case strings.Contains(id, "--") || strings.Contains(id, ".."):
		return fmt.Errorf("hub: invalid repository id %q: '--' and '..' are not allowed", id)
	case strings.HasSuffix(id, ".git"):
		return fmt.Errorf("hub: invalid repository id %q: must not end with .git", id)
	}
	return nil
}

// validateRevision rejects revisions that cannot be stored as refs/<revision>.
// Branch names may contain '/' (e.g. "refs/pr/1").
func validateRevision(rev string) error {
	if rev == "" {
		return errors.New("hub: empty revision")
	}
	if !isSafeRelPath(rev) {
		return fmt.Errorf("hub: invalid revision %q", rev)
	}
	return nil
}

// ParseRepoRef splits "org/name@revision" into the repository id and the
// revision ("main" when absent) and validates both.
func ParseRepoRef(ref string) (repoID, revision string, err error) {
	repoID, revision = ref, DefaultRevision
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		repoID, revision = ref[:i], ref[i+1:]
		if revision == "" {
			return "", "", fmt.Errorf("hub: %q: empty revision after '@'", ref)
		}
	}
	if err := ValidateRepoID(repoID); err != nil {
		return "", "", err
	}
	if err := validateRevision(revision); err != nil {
		return "", "", err
	}
	return repoID, revision, nil
}

// LooksLikeRepoID reports whether s reads as a Hub reference "org/name" (with
// an optional "@revision") and is not an existing local path.
func LooksLikeRepoID(s string) bool {
	if s == "" {
		return false
	}
	if _, err := os.Stat(s); err == nil {
		return false
	}
	id, _, err := ParseRepoRef(s)
	return err == nil && strings.Count(id, "/") == 1
}

// isSafeRelPath reports whether p is a clean, relative, slash-separated path
// that stays below its root (no "..", no empty or "." components).
func isSafeRelPath(p string) bool {
	if p == "" || strings.ContainsAny(p, "\\\x00") || path.IsAbs(p) || path.Clean(p) != p {
		return false
	}
	return p != "." && p != ".." && !strings.HasPrefix(p, "../")
}

// isSafeName reports whether s can be used as one file name component (etags, commits).
func isSafeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

var (
	commitRe = regexp.MustCompile(`^[0-9a-f]{40}$`)
	sha256Re = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// IsCommitHash reports whether rev is a full 40-hex commit hash.
func IsCommitHash(rev string) bool { return commitRe.MatchString(rev) }

// repoFolderName is huggingface_hub's repo_folder_name: "models--org--name".
func repoFolderName(t RepoType, repoID string) string {
	return string(t) + "s--" + strings.ReplaceAll(repoID, "/", "--")
}

// normRepoType maps "" to RepoModel and rejects unknown kinds.
func normRepoType(t RepoType) (RepoType, error) {
	switch t {
	case "":
		return RepoModel, nil
	case RepoModel, RepoDataset, RepoSpace:
		return t, nil
	}
	return "", fmt.Errorf("hub: unknown repository type %q (want model, dataset or space)", t)
}

func (c *Client) endpoint() string {
	if c.Endpoint == "" {
		return DefaultEndpoint
	}
	return strings.TrimRight(c.Endpoint, "/")
}

func (c *Client) etagTimeout() time.Duration {
	if c.EtagTimeout > 0 {
		return c.EtagTimeout
	}
	return DefaultEtagTimeout
}

func (c *Client) downloadTimeout() time.Duration {
	if c.DownloadTimeout > 0 {
		return c.DownloadTimeout
	}
	return DefaultDownloadTimeout
}

func (c *Client) progress(file string, done, total int64) {
	if c.Progress != nil {
		c.Progress(ProgressEvent{File: file, Done: done, Total: total})
	}
}
