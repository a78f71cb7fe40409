package hub

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The references are Python's own outputs (testdata/pyref.py).
func TestQuoteAndFnmatchMatchPython(t *testing.T) {
	b, err := os.ReadFile("testdata/pyref.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Quote []struct {
			S, Safe, Want string
		}
		Fnmatch []struct {
			Pattern, Name string
			Want          bool
		}
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Quote) == 0 || len(ref.Fnmatch) == 0 {
		t.Fatal("empty reference file")
	}
	for _, c := range ref.Quote {
		if got := quote(c.S, c.Safe); got != c.Want {
			t.Errorf("quote(%q, safe=%q) = %q, Python %q", c.S, c.Safe, got, c.Want)
		}
	}
	for _, c := range ref.Fnmatch {
		re, err := compilePatterns([]string{c.Pattern})
		if err != nil {
			t.Errorf("pattern %q: %v", c.Pattern, err)
			continue
		}
		if got := re(c.Name); got != c.Want {
			t.Errorf("fnmatch(%q, %q) = %v, Python %v", c.Name, c.Pattern, got, c.Want)
		}
	}
}

func TestPatternDirectorySuffix(t *testing.T) {
	m, err := compilePatterns([]string{"onnx/"})
	if err != nil {
		t.Fatal(err)
	}
	if !m("onnx/model.onnx") || m("model.onnx") {
		t.Error(`"onnx/" should match exactly the files below onnx/`)
	}
}

// Golden hashes from `git hash-object` and `sha256sum`.
func TestVerifyFileAgainstGitAndSha256(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello := write("hello", "hello\n")
	empty := write("empty", "")
	cases := []struct {
		path, etag string
		size       int64
		ok         bool
	}{
		{hello, "ce013625030ba8dba906f756967f9e9ca394464a", 6, true},                         // git hash-object
		{hello, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", 6, true}, // sha256sum
		{empty, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", 0, true},                         // git hash-object of ""
		{hello, "ce013625030ba8dba906f756967f9e9ca394464b", 6, false},
		{hello, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be04", 6, false},
		{hello, "ce013625030ba8dba906f756967f9e9ca394464a", 7, false}, // size mismatch
		{hello, "not-a-hash", 6, true},                                // size only
		{hello, "not-a-hash", 5, false},
	}
	for _, c := range cases {
		err := verifyFile(c.path, c.etag, c.size)
		if c.ok && err != nil {
			t.Errorf("verify(%s, %d): %v", c.etag, c.size, err)
		}
		if !c.ok && !errors.Is(err, ErrIntegrity) {
			t.Errorf("verify(%s, %d) = %v, want ErrIntegrity", c.etag, c.size, err)
		}
	}
}

func TestNormalizeEtag(t *testing.T) {
	for in, want := range map[string]string{`"abc"`: "abc", `W/"abc"`: "abc", "abc": "abc", "": ""} {
		if got := normalizeEtag(in); got != want {
			t.Errorf("normalizeEtag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestContentRangeStart(t *testing.T) {
	if n, err := contentRangeStart("bytes 100-199/200"); err != nil || n != 100 {
		t.Errorf("got %d, %v", n, err)
	}
	for _, bad := range []string{"", "bytes */200", "items 1-2/3"} {
		if _, err := contentRangeStart(bad); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestNewFromEnv(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "token"), []byte("  hf_from_file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "tok")
	if err := os.WriteFile(other, []byte("hf_from_path"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name                   string
		env                    map[string]string
		cache, endpoint, token string
		offline                bool
	}{
		{"HF_HOME", map[string]string{"HF_HOME": home}, filepath.Join(home, "hub"), DefaultEndpoint, "hf_from_file", false},
		{"XDG", map[string]string{"XDG_CACHE_HOME": "/x"}, "/x/huggingface/hub", DefaultEndpoint, "", false},
		{"HF_HUB_CACHE wins", map[string]string{"HF_HOME": home, "HF_HUB_CACHE": "/a", "HUGGINGFACE_HUB_CACHE": "/b"}, "/a", DefaultEndpoint, "hf_from_file", false},
		{"legacy cache", map[string]string{"HF_HOME": home, "HUGGINGFACE_HUB_CACHE": "/b"}, "/b", DefaultEndpoint, "hf_from_file", false},
		{"endpoint", map[string]string{"HF_HOME": home, "HF_ENDPOINT": "https://mirror.example/"}, filepath.Join(home, "hub"), "https://mirror.example", "hf_from_file", false},
		{"HF_TOKEN first", map[string]string{"HF_HOME": home, "HF_TOKEN": "hf_a", "HUGGING_FACE_HUB_TOKEN": "hf_b"}, filepath.Join(home, "hub"), DefaultEndpoint, "hf_a", false},
		{"legacy token", map[string]string{"HF_HOME": home, "HUGGING_FACE_HUB_TOKEN": "hf_b"}, filepath.Join(home, "hub"), DefaultEndpoint, "hf_b", false},
		{"HF_TOKEN_PATH", map[string]string{"HF_HOME": home, "HF_TOKEN_PATH": other}, filepath.Join(home, "hub"), DefaultEndpoint, "hf_from_path", false},
		{"offline", map[string]string{"HF_HOME": home, "HF_HUB_OFFLINE": "yes"}, filepath.Join(home, "hub"), DefaultEndpoint, "hf_from_file", true},
		{"transformers offline", map[string]string{"HF_HOME": home, "TRANSFORMERS_OFFLINE": "1"}, filepath.Join(home, "hub"), DefaultEndpoint, "hf_from_file", true},
		{"offline off", map[string]string{"HF_HOME": home, "HF_HUB_OFFLINE": "0"}, filepath.Join(home, "hub"), DefaultEndpoint, "hf_from_file", false},
	}
	for _, c := range cases {
		got, err := newFromLookup(env(c.env))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if got.CacheDir != c.cache || got.Endpoint != c.endpoint || got.Token != c.token || got.Offline != c.offline {
			t.Errorf("%s: got cache=%q endpoint=%q token=%q offline=%v, want %q %q %q %v",
				c.name, got.CacheDir, got.Endpoint, got.Token, got.Offline, c.cache, c.endpoint, c.token, c.offline)
		}
	}

	c, err := newFromLookup(env(map[string]string{"HF_HOME": home, "HF_HUB_ETAG_TIMEOUT": "2.5", "HF_HUB_DOWNLOAD_TIMEOUT": "30"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.EtagTimeout != 2500*time.Millisecond || c.DownloadTimeout != 30*time.Second {
		t.Errorf("timeouts %v %v", c.EtagTimeout, c.DownloadTimeout)
	}
	if _, err := newFromLookup(env(map[string]string{"HF_HOME": home, "HF_HUB_ETAG_TIMEOUT": "soon"})); err == nil {
		t.Error("a bad timeout should be an error")
	}
}

func TestParseRepoRef(t *testing.T) {
	good := map[string][2]string{
		"org/name":      {"org/name", "main"},
		"org/name@v1.0": {"org/name", "v1.0"},
		"gpt2":          {"gpt2", "main"},
		"unsloth/Llama-3.2-1B-Instruct-bnb-4bit@refs/pr/1": {"unsloth/Llama-3.2-1B-Instruct-bnb-4bit", "refs/pr/1"},
		"a_b/c.d@0123456789abcdef0123456789abcdef01234567": {"a_b/c.d", "0123456789abcdef0123456789abcdef01234567"},
	}
	for ref, want := range good {
		id, rev, err := ParseRepoRef(ref)
		if err != nil || id != want[0] || rev != want[1] {
			t.Errorf("ParseRepoRef(%q) = %q, %q, %v; want %q, %q", ref, id, rev, err, want[0], want[1])
		}
	}
	for _, bad := range []string{
		"", "a/b/c", "org/name@", "org//name", "/abs/path", "./local", "org/-name", "org/name-",
		"org/na--me", "org/na..me", "org/name.git", "org/na me", "org/" + strings.Repeat("x", 97),
		"org/name@../x", "org/name@/x", "org/name@a//b",
	} {
		if _, _, err := ParseRepoRef(bad); err == nil {
			t.Errorf("ParseRepoRef(%q): want an error", bad)
		}
	}
	if _, _, err := ParseRepoRef("org/" + strings.Repeat("x", 96)); err != nil {
		t.Errorf("96-character name: %v", err)
	}
}

func TestLooksLikeRepoID(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "org", "name")
	if err := os.MkdirAll(local, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	cases := map[string]bool{
		"meta-llama/Llama-3.2-1B":      true,
		"meta-llama/Llama-3.2-1B@main": true,
		"org/name":                     false, // an existing local folder
		"gpt2":                         false, // no namespace: read as a local path
		"./x/y":                        false,
		"/abs/path":                    false,
		"":                             false,
	}
	for s, want := range cases {
		if got := LooksLikeRepoID(s); got != want {
			t.Errorf("LooksLikeRepoID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestWriteRefExactAndIdempotent(t *testing.T) {
	rc := repoCache{root: t.TempDir()}
	commit := "0123456789abcdef0123456789abcdef01234567"
	if err := rc.writeRef("refs/pr/3", commit); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(rc.root, "refs", "refs", "pr", "3"))
	if err != nil || string(b) != commit {
		t.Fatalf("ref = %q, %v", b, err)
	}
	if err := rc.writeRef(commit, commit); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(rc.root, "refs", commit)); !os.IsNotExist(err) {
		t.Error("a commit revision must not get a ref file")
	}
	if got, ok := rc.resolveCommit("refs/pr/3"); !ok || got != commit {
		t.Errorf("resolveCommit = %q %v", got, ok)
	}
}
