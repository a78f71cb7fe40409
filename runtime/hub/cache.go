package hub

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// repoCache is one repository's folder in the hub cache and its lock folder.
type repoCache struct {
	root  string // <cache>/models--org--name
	locks string // <cache>/.locks/models--org--name
}

func (c *Client) repoCache(t RepoType, repoID string) (repoCache, error) {
	if c.CacheDir == "" {
		return repoCache{}, errors.New("hub: Client.CacheDir is empty (set HF_HUB_CACHE or HF_HOME)")
	}
	name := repoFolderName(t, repoID)
	return repoCache{
		root:  filepath.Join(c.CacheDir, name),
		locks: filepath.Join(c.CacheDir, ".locks", name),
	}, nil
}

func (r repoCache) snapshotDir(commit string) string {
	return filepath.Join(r.root, "snapshots", commit)
}

// pointer is snapshots/<commit>/<filename>, the path handed to callers.
func (r repoCache) pointer(commit, filename string) string {
	return filepath.Join(r.snapshotDir(commit), filepath.FromSlash(filename))
}

func (r repoCache) blob(etag string) string {
	return filepath.Join(r.root, "blobs", etag)
}

// incomplete is where a blob is downloaded before its rename. The name is
// huggingface_hub's (blob path + ".incomplete"), so either side resumes the
// other's partial download.
func (r repoCache) incomplete(etag string) string {
	return r.blob(etag) + ".incomplete"
}

func (r repoCache) lockFile(etag string) string {
	return filepath.Join(r.locks, etag+".lock")
}

func (r repoCache) noExistFile(commit, filename string) string {
	return filepath.Join(r.root, ".no_exist", commit, filepath.FromSlash(filename))
}

// resolveCommit maps a revision to a commit without network: a commit hash is
// itself, a branch or tag is read from refs/<revision>.
func (r repoCache) resolveCommit(revision string) (string, bool) {
	if IsCommitHash(revision) {
		return revision, true
	}
	b, err := os.ReadFile(filepath.Join(r.root, "refs", filepath.FromSlash(revision)))
	if err != nil {
		return "", false
	}
	commit := strings.TrimSpace(string(b))
	return commit, isSafeName(commit)
}

// cachedFile returns snapshots/<commit>/<filename> for the cached revision
// when it exists and its blob is present.
func (r repoCache) cachedFile(revision, filename string) (string, bool) {
	commit, ok := r.resolveCommit(revision)
	if !ok {
		return "", false
	}
	p := r.pointer(commit, filename)
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() { // Stat follows the symlink
		return p, true
	}
	return "", false
}

// cachedNoExist reports whether a .no_exist marker records filename as missing at revision.
func (r repoCache) cachedNoExist(revision, filename string) bool {
	commit, ok := r.resolveCommit(revision)
	if !ok {
		return false
	}
	_, err := os.Stat(r.noExistFile(commit, filename))
	return err == nil
}

// writeRef records refs/<revision> = commit (40-hex, no newline) when the
// revision is a branch or tag, rewriting it only when it changed.
func (r repoCache) writeRef(revision, commit string) error {
	if revision == commit {
		return nil
	}
	p := filepath.Join(r.root, "refs", filepath.FromSlash(revision))
	if b, err := os.ReadFile(p); err == nil && string(b) == commit {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		return fmt.Errorf("hub: writing ref: %w", err)
	}
	// Write then rename, so a concurrent reader never sees a partial hash.
	tmp, err := os.CreateTemp(filepath.Dir(p), ".ref-*")
	if err != nil {
		return fmt.Errorf("hub: writing ref: %w", err)
	}
	_, werr := tmp.WriteString(commit)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hub: writing ref: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("hub: writing ref: %w", err)
	}
	return nil
}

// markNoExist creates the empty .no_exist/<commit>/<filename> marker. Like
// huggingface_hub, a failure here is not an error worth reporting.
func (r repoCache) markNoExist(commit, filename string) {
	p := r.noExistFile(commit, filename)
	if os.MkdirAll(filepath.Dir(p), 0o777) != nil {
		return
	}
	if f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666); err == nil {
		f.Close()
	}
}

// linkBlob makes pointer a relative symlink to blob (../../blobs/<etag>, one
// more ../ per directory level of the filename). Where symlinks are not
// supported the blob is copied instead, as huggingface_hub does.
func linkBlob(blob, pointer string) error {
	dir := filepath.Dir(pointer)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return fmt.Errorf("hub: creating snapshot folder: %w", err)
	}
	rel, err := filepath.Rel(dir, blob)
	if err != nil {
		return fmt.Errorf("hub: linking %s: %w", pointer, err)
	}
	if cur, err := os.Readlink(pointer); err == nil && cur == rel {
		return nil
	}
	os.Remove(pointer)
	if err := os.Symlink(rel, pointer); err == nil || errors.Is(err, os.ErrExist) {
		return nil
	}
	return copyFile(blob, pointer)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("hub: copying blob: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o666)
	if err != nil {
		return fmt.Errorf("hub: copying blob: %w", err)
	}
	_, cerr := io.Copy(out, in)
	if err := errors.Join(cerr, out.Close()); err != nil {
		return fmt.Errorf("hub: copying blob: %w", err)
	}
	return nil
}
