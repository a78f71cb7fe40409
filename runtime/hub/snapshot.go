package hub

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Snapshot downloads (or reuses) the files of a repository revision whose
// names match patterns (fnmatch-style as huggingface_hub's allow_patterns,
// e.g. "*.json", "*.safetensors", "tokenizer*"; "*" also matches "/"; nil or
// empty means every file) and returns the snapshot folder snapshots/<commit>.
// Files are fetched one after the other; Progress reports each.
func (c *Client) Snapshot(ctx context.Context, repoType RepoType, repoID, revision string, patterns []string) (string, error) {
	t, err := normRepoType(repoType)
	if err != nil {
		return "", err
	}
	if revision == "" {
		revision = DefaultRevision
	}
	if err := ValidateRepoID(repoID); err != nil {
		return "", err
	}
	if err := validateRevision(revision); err != nil {
		return "", err
	}
	match, err := compilePatterns(patterns)
	if err != nil {
		return "", err
	}
	rc, err := c.repoCache(t, repoID)
	if err != nil {
		return "", err
	}
	what := describe(t, repoID, revision, "")
	if c.Offline {
		return c.snapshotFromCache(rc, revision, match, patterns, what, errOffline)
	}

	info, err := c.listRevision(ctx, t, repoID, revision)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("hub: %s: %w", what, ctx.Err())
		}
		var se *statusError
		if errors.As(err, &se) && se.final() {
			return "", fmt.Errorf("hub: %s: %w", what, err)
		}
		return c.snapshotFromCache(rc, revision, match, patterns, what, err)
	}

	var files []string
	for _, s := range info.Siblings {
		if match(s.RFilename) {
			if !isSafeRelPath(s.RFilename) {
				return "", fmt.Errorf("hub: %s: the repository lists an unsafe file name %q", what, s.RFilename)
			}
			files = append(files, s.RFilename)
		}
	}
	if len(files) == 0 {
		return "", fmt.Errorf("hub: %s: %w: no file matches %q", what, ErrNotFound, patterns)
	}
	if err := rc.writeRef(revision, info.Sha); err != nil {
		return "", err
	}
	// Each file is fetched by commit, so a file already in this snapshot
	// costs no request at all.
	for _, f := range files {
		if _, err := c.download(ctx, t, repoID, rc, info.Sha, f); err != nil {
			return "", err
		}
	}
	return rc.snapshotDir(info.Sha), nil
}

// snapshotFromCache returns the cached snapshot of revision when it holds at
// least one file matching the patterns. Without the Hub there is no file list
// to check it against: like huggingface_hub, a partial snapshot is returned
// as is.
func (c *Client) snapshotFromCache(rc repoCache, revision string, match func(string) bool, patterns []string, what string, cause error) (string, error) {
	commit, ok := rc.resolveCommit(revision)
	if ok {
		dir := rc.snapshotDir(commit)
		found := false
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			rel, rerr := filepath.Rel(dir, p)
			if rerr != nil || !match(filepath.ToSlash(rel)) {
				return nil
			}
			if st, serr := os.Stat(p); serr == nil && st.Mode().IsRegular() {
				found = true
				return fs.SkipAll
			}
			return nil
		})
		if found {
			return dir, nil
		}
	}
	if len(patterns) > 0 {
		what += fmt.Sprintf(" (files %q)", patterns)
	}
	return "", notCachedErr(c, what, cause)
}

// compilePatterns builds a matcher for fnmatch patterns. As in
// huggingface_hub, a pattern ending in "/" matches everything below it.
func compilePatterns(patterns []string) (func(string) bool, error) {
	if len(patterns) == 0 {
		return func(string) bool { return true }, nil
	}
	res := make([]*regexp.Regexp, len(patterns))
	for i, p := range patterns {
		if strings.HasSuffix(p, "/") {
			p += "*"
		}
		re, err := regexp.Compile(fnmatchRegexp(p))
		if err != nil {
			return nil, fmt.Errorf("hub: bad file pattern %q: %w", patterns[i], err)
		}
		res[i] = re
	}
	return func(name string) bool {
		for _, re := range res {
			if re.MatchString(name) {
				return true
			}
		}
		return false
	}, nil
}

// fnmatchRegexp translates a Python fnmatch pattern: "*" is any run of
// characters (including "/"), "?" one character, "[...]" a set ("[!...]"
// negated); an unclosed "[" is literal.
func fnmatchRegexp(pat string) string {
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for i := 0; i < len(pat); i++ {
		switch ch := pat[i]; ch {
		case '*':
			b.WriteString(`.*`)
		case '?':
			b.WriteString(`.`)
		case '[':
			j := i + 1
			if j < len(pat) && pat[j] == '!' {
				j++
			}
			if j < len(pat) && pat[j] == ']' {
				j++
			}
			for j < len(pat) && pat[j] != ']' {
				j++
			}
			if j >= len(pat) {
				b.WriteString(`\[`)
				continue
			}
			set := pat[i+1 : j]
			i = j
			b.WriteByte('[')
			if strings.HasPrefix(set, "!") {
				b.WriteByte('^')
				set = set[1:]
			}
			for k := 0; k < len(set); k++ {
				if c := set[k]; c == '\\' || c == '[' || c == ']' || (c == '^' && k == 0) {
					b.WriteByte('\\')
				}
				b.WriteByte(set[k])
			}
			b.WriteByte(']')
		default:
			b.WriteString(regexp.QuoteMeta(pat[i : i+1]))
		}
	}
	b.WriteString(`)$`)
	return b.String()
}

// ModelFiles are the files of a model repository that loading a checkpoint
// needs (configs, tokenizer, chat templates, weights).
var ModelFiles = []string{"*.json", "*.safetensors", "*.jinja"}

// ResolveModel returns the local directory of a --model argument: an
// existing directory as it is, else the Hub id "org/name[@revision]"
// (revision, if not empty, overrides the one in ref), fetched into the cache
// or found there. fetching, if not nil, is told before a Hub lookup.
func (c *Client) ResolveModel(ctx context.Context, ref, revision string, fetching func(repoID, revision string)) (string, error) {
	if st, err := os.Stat(ref); err == nil {
		if !st.IsDir() {
			return "", fmt.Errorf("--model %s: not a directory", ref)
		}
		return ref, nil
	}
	if !LooksLikeRepoID(ref) {
		return "", fmt.Errorf("--model %s: no such directory, and not a Hub id such as org/name", ref)
	}
	repoID, rev, err := ParseRepoRef(ref)
	if err != nil {
		return "", err
	}
	if revision != "" {
		rev = revision
	}
	if fetching != nil {
		fetching(repoID, rev)
	}
	return c.Snapshot(ctx, RepoModel, repoID, rev, ModelFiles)
}
