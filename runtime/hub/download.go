package hub

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxStalls is how many times in a row a download may fail without receiving
// a byte before it gives up (huggingface_hub: 5). Any progress resets it.
const maxStalls = 5

// progressStep is how many bytes pass between two progress events.
const progressStep = 1 << 20

// Download returns the local path of one file of a repository revision, in
// snapshots/<commit>/, downloading it unless it is cached. revision may be a
// branch, a tag or a commit hash ("" means "main").
func (c *Client) Download(ctx context.Context, repoType RepoType, repoID, revision, filename string) (string, error) {
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
	if !isSafeRelPath(filename) {
		return "", fmt.Errorf("hub: invalid file name %q", filename)
	}
	rc, err := c.repoCache(t, repoID)
	if err != nil {
		return "", err
	}
	return c.download(ctx, t, repoID, rc, revision, filename)
}

func describe(t RepoType, repoID, revision, filename string) string {
	s := fmt.Sprintf("%s %s@%s", t, repoID, revision)
	if filename != "" {
		s += " file " + filename
	}
	return s
}

// download follows huggingface_hub's _hf_hub_download_to_cache_dir.
func (c *Client) download(ctx context.Context, t RepoType, repoID string, rc repoCache, revision, filename string) (string, error) {
	what := describe(t, repoID, revision, filename)
	// A file pinned by commit that is already cached needs no network.
	if IsCommitHash(revision) {
		if p, ok := rc.cachedFile(revision, filename); ok {
			return p, nil
		}
	}
	if c.Offline {
		return c.fromCache(rc, revision, filename, what, errOffline)
	}

	meta, err := c.fileMetadata(ctx, t, repoID, c.resolveURL(t, repoID, revision, filename))
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("hub: %s: %w", what, ctx.Err())
		}
		var se *statusError
		if errors.As(err, &se) && se.final() {
			if se.code == "EntryNotFound" && isSafeName(se.commit) {
				rc.markNoExist(se.commit, filename)
				rc.writeRef(revision, se.commit) // best effort, as huggingface_hub
			}
			return "", fmt.Errorf("hub: %s: %w", what, err)
		}
		return c.fromCache(rc, revision, filename, what, err)
	}

	if err := rc.writeRef(revision, meta.commit); err != nil {
		return "", err
	}
	pointer := rc.pointer(meta.commit, filename)
	if _, err := os.Stat(pointer); err == nil {
		return pointer, nil
	}
	if err := os.MkdirAll(filepath.Join(rc.root, "blobs"), 0o777); err != nil {
		return "", fmt.Errorf("hub: creating cache folder: %w", err)
	}
	unlock, err := lockFile(ctx, rc.lockFile(meta.etag))
	if err != nil {
		return "", err
	}
	defer unlock()
	blob := rc.blob(meta.etag)
	if _, err := os.Stat(blob); err != nil { // not fetched by another process meanwhile
		if err := c.fetchBlob(ctx, rc, meta, filename); err != nil {
			return "", fmt.Errorf("hub: %s: %w", what, err)
		}
	}
	if err := linkBlob(blob, pointer); err != nil {
		return "", err
	}
	return pointer, nil
}

// fromCache answers from refs/ and snapshots/ when the Hub cannot be asked
// (offline, network down, server error, access denied), and otherwise
// reports why the file is unavailable.
func (c *Client) fromCache(rc repoCache, revision, filename, what string, cause error) (string, error) {
	if p, ok := rc.cachedFile(revision, filename); ok {
		return p, nil
	}
	if rc.cachedNoExist(revision, filename) {
		return "", fmt.Errorf("hub: %s: %w (recorded in the cache's .no_exist)", what, ErrNotFound)
	}
	return "", notCachedErr(c, what, cause)
}

func notCachedErr(c *Client, what string, cause error) error {
	var se *statusError
	switch {
	case errors.Is(cause, errOffline):
		return fmt.Errorf("hub: %s: %w: offline mode is on (HF_HUB_OFFLINE) and it is not in %s", what, ErrNotCached, c.CacheDir)
	case errors.As(cause, &se) && se.kind != nil:
		return fmt.Errorf("hub: %s: %w", what, cause)
	}
	return fmt.Errorf("hub: %s: %w: cannot reach the Hub at %s: %w", what, ErrNotCached, c.endpoint(), cause)
}

// fetchBlob downloads meta into blobs/<etag>.incomplete (resuming what is
// there), verifies it and renames it to blobs/<etag>. The caller holds the lock.
func (c *Client) fetchBlob(ctx context.Context, rc repoCache, meta fileMeta, filename string) error {
	tmp := rc.incomplete(meta.etag)
	for attempt := 0; ; attempt++ {
		resumed, err := c.fetchTo(ctx, tmp, meta, filename)
		if errors.Is(err, ErrIntegrity) {
			os.Remove(tmp)
		}
		if err != nil {
			return err
		}
		err = verifyFile(tmp, meta.etag, meta.size)
		if err == nil {
			break
		}
		os.Remove(tmp) // never resume from bytes that failed the check
		if resumed && attempt == 0 {
			continue // the kept prefix may be what was wrong: start over once
		}
		return err
	}
	if err := os.Rename(tmp, rc.blob(meta.etag)); err != nil {
		return fmt.Errorf("moving the download into the cache: %w", err)
	}
	return nil
}

// fetchTo appends to path until it holds meta.size bytes, resuming with
// Range requests after network failures. It reports whether it started from
// a partial file left by an earlier run.
func (c *Client) fetchTo(ctx context.Context, path string, meta fileMeta, filename string) (resumed bool, err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return false, fmt.Errorf("opening the download file: %w", err)
	}
	defer f.Close()
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return false, fmt.Errorf("opening the download file: %w", err)
	}
	if off > meta.size { // longer than the file: not a prefix of it
		if err := f.Truncate(0); err != nil {
			return false, fmt.Errorf("truncating the download file: %w", err)
		}
		off = 0
	}
	resumed = off > 0
	c.progress(filename, off, meta.size)

	stalls := 0
	for off < meta.size {
		var got int64
		off, got, err = c.getFrom(ctx, f, meta, off, filename)
		if err == nil {
			continue
		}
		var ne *netError
		if !errors.As(err, &ne) || ctx.Err() != nil {
			return resumed, err
		}
		if got > 0 {
			stalls = 0
			continue // retry at once from the new offset
		}
		if stalls++; stalls >= maxStalls {
			return resumed, fmt.Errorf("download interrupted after %d of %d bytes (run again to resume): %w", off, meta.size, err)
		}
		select {
		case <-ctx.Done():
			return resumed, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return resumed, nil
}

// getFrom sends one GET for the bytes from off on and writes them at off. It
// returns the new offset and how many bytes arrived; a server that ignores
// Range (200) restarts the file from 0.
func (c *Client) getFrom(ctx context.Context, f *os.File, meta fileMeta, off int64, filename string) (newOff, got int64, err error) {
	timeout := c.downloadTimeout()
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The stall timer cancels the request when no data comes for `timeout`;
	// it is re-armed before every read.
	stall := time.AfterFunc(timeout, cancel)
	defer stall.Stop()
	netErr := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case reqCtx.Err() != nil:
			return &netError{fmt.Errorf("no data received for %s", timeout)}
		}
		return &netError{err}
	}

	req, err := c.newRequest(reqCtx, http.MethodGet, meta.location, meta.auth)
	if err != nil {
		return off, 0, err
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := c.downloadClient().Do(req)
	if err != nil {
		return off, 0, netErr(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusPartialContent && off > 0:
		start, err := contentRangeStart(resp.Header.Get("Content-Range"))
		if err != nil || start != off {
			return off, 0, fmt.Errorf("the server answered range %d- with %q", off, resp.Header.Get("Content-Range"))
		}
	case resp.StatusCode == http.StatusOK:
		if off > 0 { // Range ignored: the body is the whole file
			if err := f.Truncate(0); err != nil {
				return off, 0, fmt.Errorf("truncating the download file: %w", err)
			}
			off = 0
			c.progress(filename, 0, meta.size)
		}
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		if err := f.Truncate(0); err != nil {
			return off, 0, fmt.Errorf("truncating the download file: %w", err)
		}
		return 0, 0, &netError{errors.New("range not satisfiable: restarting from 0")}
	default:
		return off, 0, c.statusErrDownload(resp)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, 0, fmt.Errorf("writing the download file: %w", err)
	}

	buf := make([]byte, 256<<10)
	reported := off
	for {
		stall.Reset(timeout)
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if off+int64(n) > meta.size {
				return off, got, fmt.Errorf("%w: the server sent more than the expected %d bytes", ErrIntegrity, meta.size)
			}
			if _, err := f.Write(buf[:n]); err != nil {
				return off, got, fmt.Errorf("writing the download file: %w", err)
			}
			off += int64(n)
			got += int64(n)
			if off-reported >= progressStep || off == meta.size {
				c.progress(filename, off, meta.size)
				reported = off
			}
		}
		switch {
		case rerr == io.EOF && off < meta.size:
			return off, got, &netError{fmt.Errorf("connection closed after %d of %d bytes", off, meta.size)}
		case rerr == io.EOF:
			return off, got, nil
		case rerr != nil:
			return off, got, netErr(rerr)
		}
	}
}

// statusErrDownload reports an HTTP error on a content GET, which may come
// from a CDN rather than the Hub.
func (c *Client) statusErrDownload(resp *http.Response) error {
	kind := error(nil)
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		kind = ErrAccessDenied
	case http.StatusNotFound:
		kind = ErrNotFound
	}
	return &statusError{status: resp.StatusCode, kind: kind, msg: "download failed: HTTP " + resp.Status}
}

// contentRangeStart parses the first byte position of "bytes START-END/TOTAL".
func contentRangeStart(h string) (int64, error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, fmt.Errorf("bad Content-Range %q", h)
	}
	return strconv.ParseInt(start, 10, 64)
}

// verifyFile checks the size, and the content against the etag when it is a
// hash: a 64-hex etag is the sha256 of an LFS file, a 40-hex one the git blob
// sha1 (sha1 of "blob <size>\x00" + content) of a regular file.
func verifyFile(path, etag string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("verifying the download: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("verifying the download: %w", err)
	}
	if st.Size() != size {
		return fmt.Errorf("%w: size %d, want %d", ErrIntegrity, st.Size(), size)
	}
	var h hash.Hash
	switch {
	case sha256Re.MatchString(etag):
		h = sha256.New()
	case commitRe.MatchString(etag):
		h = sha1.New()
		fmt.Fprintf(h, "blob %d\x00", size)
	default:
		return nil // not a content hash: the size is all there is to check
	}
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("verifying the download: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != etag {
		return fmt.Errorf("%w: content hash %s, want %s (the file was discarded; run again)", ErrIntegrity, got, etag)
	}
	return nil
}
