package adapters

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// fileError is a problem with an adapter's files. Its text is for API
// clients: it names files relative to the adapter directory and never a
// server path; detail, for the log, is the same with the paths.
type fileError struct {
	msg    string
	detail string // "" = msg
	err    error  // the cause, for errors.Is (fs.ErrNotExist, errUnsafe, errIncomplete)
}

func (e *fileError) Error() string { return e.msg }
func (e *fileError) Unwrap() error { return e.err }

var (
	// errUnsafe: a path the server must not read, then or later: it leads
	// outside the adapters directory, or is not a directory of regular files.
	errUnsafe = errors.New("unsafe adapter path")
	// errIncomplete: the two files are not (yet) one loadable adapter: one
	// is missing, truncated, or from another version (a copy in progress).
	errIncomplete = errors.New("incomplete adapter")
)

// logDetail is err's text with the server paths its Error leaves out.
func logDetail(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	var fe *fileError
	if errors.As(err, &fe) && fe.detail != "" {
		return strings.Replace(msg, fe.msg, fe.detail, 1)
	}
	return msg
}

// unsafePath refuses what (e.g. "its directory", "adapter_config.json")
// at path, which resolves to real, outside root.
func unsafePath(what, path, real, root string) error {
	return &fileError{msg: what + " is outside the adapters directory",
		detail: fmt.Sprintf("%s %s resolves to %s, outside the adapters directory %s", what, path, real, root), err: errUnsafe}
}

// osError describes an error of the os package on the file name of an
// adapter directory without the path it carries.
func osError(name string, err error) error {
	reason := "cannot be read" // errors other than a PathError may carry any path
	var pe *fs.PathError
	if errors.As(err, &pe) {
		reason = pe.Err.Error()
	}
	return &fileError{msg: name + ": " + reason, detail: name + ": " + err.Error(), err: err}
}

// incomplete is an errIncomplete with a path-free reason.
func incomplete(format string, args ...any) error {
	return &fileError{msg: fmt.Sprintf(format, args...), err: errIncomplete}
}

// missing is the errIncomplete of a file that is not there (also an
// fs.ErrNotExist).
func missing(name string) error {
	return &fileError{msg: "no " + name, err: fmt.Errorf("%w: %w", errIncomplete, fs.ErrNotExist)}
}

// loadDir reads the adapter in dir as peft.Load does, with errors that
// name no server path (the pool shows them to API clients); their log
// detail has the paths. The config must be a regular file (a FIFO put in
// its place does not block the read) of bounded size.
func loadDir(dir string) (*peft.Adapter, error) {
	data, err := readConfig(filepath.Join(dir, peft.ConfigName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fileError{msg: "no " + peft.ConfigName + " (not a PEFT adapter directory)", detail: logDetail(err), err: err}
	}
	if err != nil {
		return nil, err
	}
	cfg, err := peft.ParseConfig(data)
	if err != nil {
		return nil, err
	}
	wpath := filepath.Join(dir, peft.WeightsName)
	if _, err := os.Stat(wpath); errors.Is(err, fs.ErrNotExist) {
		if _, perr := os.Stat(filepath.Join(dir, peft.PickleName)); perr == nil {
			return nil, peft.ErrPickled
		}
		return nil, missing(peft.WeightsName)
	}
	f, err := safetensors.Open(wpath)
	if err != nil {
		return nil, &fileError{msg: "corrupt or unreadable weights: " + safetensorsReason(err), detail: err.Error(), err: err}
	}
	defer f.Close()
	return peft.Decode(cfg, f)
}

// safetensorsReason is an error of safetensors.Open without the file's
// path: the os error's reason, or what the parser found wrong (Open wraps
// it as "safetensors: <path>: <reason>").
func safetensorsReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return peft.WeightsName + ": " + pe.Err.Error()
	}
	if inner := errors.Unwrap(err); inner != nil {
		return inner.Error()
	}
	return err.Error()
}

// dirState is what the watcher and the pool see of an adapter directory
// without reading its weights.
type dirState struct {
	dir     string    // the directory, symlinks resolved
	dirID   uint64    // its identity (inode): a directory renamed into place is a new one
	version string    // fingerprint of the two files (see inspect)
	changed time.Time // the newest modification or status change of the two files
	// problem is why the files are not one loadable adapter (an
	// errIncomplete), nil if they look like one.
	problem error
}

// maxConfigBytes bounds what is read of an adapter_config.json (PEFT's are
// about 1 KB).
const maxConfigBytes = 1 << 20

// inspect resolves the adapter directory path and fingerprints it. With a
// root, the directory and both files must resolve inside it; they must be
// a directory and regular files, wherever they are. That is checked each
// time, since a directory checked once can be replaced by a symlink later.
//
// The version covers the size, modification time and identity (inode) of
// both files, the config's content and the weights' safetensors header,
// which names every tensor's shape: a file rewritten in place or replaced
// by rename gives a new one. The error is an errUnsafe refusal, or the
// directory cannot be read (fs.ErrNotExist once removed). Files missing,
// truncated or disagreeing with each other are the state's problem.
func inspect(root, path string) (dirState, error) {
	var s dirState
	if root != "" {
		if abs, err := filepath.Abs(path); err != nil || !within(root, abs) {
			return s, unsafePath("its directory", path, abs, root)
		}
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return s, osError("its directory", err)
	}
	if root != "" && !within(root, real) {
		return s, unsafePath("its directory", path, real, root)
	}
	st, err := os.Stat(real)
	switch {
	case err != nil:
		return s, osError("its directory", err)
	case !st.IsDir():
		return s, &fileError{msg: "its path is not a directory", detail: real + " is not a directory", err: errUnsafe}
	}
	s.dir, s.dirID = real, fileID(st)

	// The first problem found is the state's; the fingerprint covers what is there.
	problem := func(err error) {
		if s.problem == nil {
			s.problem = err
		}
	}
	h := sha256.New()
	present := map[string]bool{}
	for _, name := range []string{peft.ConfigName, peft.WeightsName} {
		p := filepath.Join(real, name)
		f, err := filepath.EvalSymlinks(p)
		var fi os.FileInfo
		if err == nil {
			if root != "" && !within(root, f) {
				return s, unsafePath(name, p, f, root)
			}
			fi, err = os.Stat(f)
		}
		if err != nil {
			fmt.Fprintf(h, "%s missing\n", name)
			if !errors.Is(err, fs.ErrNotExist) {
				problem(osError(name, err))
			}
			continue
		}
		if !fi.Mode().IsRegular() {
			return s, &fileError{msg: name + " is not a regular file", detail: f + " is not a regular file", err: errUnsafe}
		}
		present[name] = true
		fmt.Fprintf(h, "%s %d %d %d\n", name, fi.Size(), fi.ModTime().UnixNano(), fileID(fi))
		if c := changeTime(fi); c.After(s.changed) {
			s.changed = c
		}
	}
	var cfg []byte
	var shapes map[string][]int
	if !present[peft.ConfigName] {
		problem(missing(peft.ConfigName))
	} else if cfg, err = readConfig(filepath.Join(real, peft.ConfigName)); errors.Is(err, errUnsafe) {
		return s, err
	} else if err != nil {
		problem(err)
	}
	h.Write(cfg)
	if !present[peft.WeightsName] {
		if _, err := os.Stat(filepath.Join(real, peft.PickleName)); err == nil {
			problem(incomplete("%v", peft.ErrPickled))
		}
		problem(missing(peft.WeightsName))
	} else {
		header, sh, err := peekWeights(filepath.Join(real, peft.WeightsName))
		if errors.Is(err, errUnsafe) {
			return s, err
		}
		if err != nil {
			problem(err)
		}
		h.Write(header)
		shapes = sh
	}
	if s.problem == nil {
		s.problem = mismatch(cfg, shapes)
	}
	s.version = hex.EncodeToString(h.Sum(nil)[:12])
	return s, nil
}

// readConfig reads an adapter_config.json, refusing anything but a regular
// file. The open does not block, should a FIFO have been put in its place.
func readConfig(path string) ([]byte, error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, osError(peft.ConfigName, err)
	}
	if len(data) > maxConfigBytes {
		return nil, &fileError{msg: fmt.Sprintf("%s is larger than %d bytes", peft.ConfigName, maxConfigBytes)}
	}
	return data, nil
}

// openRegular opens a file of an adapter directory for reading; it must
// be a regular file.
func openRegular(path string) (*os.File, error) {
	name := filepath.Base(path)
	f, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, osError(name, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = &fileError{msg: name + " is not a regular file", detail: path + " is not a regular file", err: errUnsafe}
	}
	if err != nil {
		f.Close()
		if _, ok := err.(*fileError); !ok {
			err = osError(name, err)
		}
		return nil, err
	}
	return f, nil
}

// peekWeights reads the safetensors header of a weights file (not its
// data): the raw header and every tensor's shape. A header that is cut
// short, or names data past the end of the file, is errIncomplete: the
// file is still being written (or is corrupt).
func peekWeights(path string) (header []byte, shapes map[string][]int, err error) {
	f, err := openRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, osError(peft.WeightsName, err)
	}
	truncated := func(format string, args ...any) ([]byte, map[string][]int, error) {
		return nil, nil, incomplete(peft.WeightsName+" is truncated or corrupt: "+format, args...)
	}
	var n [8]byte
	if _, err := io.ReadFull(f, n[:]); err != nil {
		return truncated("%d bytes", fi.Size())
	}
	size := binary.LittleEndian.Uint64(n[:])
	if size > safetensors.MaxHeaderSize || size > uint64(fi.Size()-8) {
		return truncated("a %d-byte header in a %d-byte file", size, fi.Size())
	}
	header = make([]byte, size)
	if _, err := io.ReadFull(f, header); err != nil {
		return nil, nil, osError(peft.WeightsName, err)
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(header, &entries); err != nil {
		return truncated("the header is not a JSON object")
	}
	dataLen := fi.Size() - 8 - int64(size)
	shapes = map[string][]int{}
	for name, raw := range entries {
		if name == "__metadata__" {
			continue
		}
		var t struct {
			Shape       []int   `json:"shape"`
			DataOffsets []int64 `json:"data_offsets"`
		}
		if err := json.Unmarshal(raw, &t); err != nil || len(t.DataOffsets) != 2 {
			return truncated("tensor %q has no shape and data offsets", name)
		}
		if t.DataOffsets[1] > dataLen {
			return truncated("tensor %q ends at byte %d of %d", name, t.DataOffsets[1], dataLen)
		}
		shapes[name] = t.Shape
	}
	return header, shapes, nil
}

// mismatch reports (as errIncomplete) a config and weights that cannot be
// one adapter: the config is cut short, or gives a module another rank
// than its tensors have, or does not target a module the tensors adapt.
// Anything else wrong is left to loadDir, which refuses it with the reason.
func mismatch(config []byte, shapes map[string][]int) error {
	if !json.Valid(config) {
		return incomplete("%s is not valid JSON", peft.ConfigName)
	}
	cfg, err := peft.ParseConfig(config)
	if err != nil {
		return nil // complete, but refused when loaded
	}
	names := make([]string, 0, len(shapes))
	for name := range shapes {
		names = append(names, name)
	}
	slices.Sort(names)
	checked := map[string]bool{}
	for _, name := range names {
		module, isA, err := peft.SplitTensorName(name)
		shape := shapes[name]
		if err != nil || len(shape) != 2 {
			continue
		}
		rank := shape[0]
		if !isA {
			rank = shape[1]
		}
		if want := cfg.Rank(module); rank != want {
			return incomplete("%s has rank %d tensors for %s, but %s gives it r=%d", peft.WeightsName, rank, module, peft.ConfigName, want)
		}
		if !checked[module] && !cfg.Targets(module) {
			return incomplete("%s adapts %s, which %s does not target", peft.WeightsName, module, peft.ConfigName)
		}
		checked[module] = true
	}
	return nil
}

// within reports whether path is root or below it (both cleaned, absolute).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// refusedVersion is the registry version of a refusal: it changes with
// the reason, so a new reason is logged.
func refusedVersion(err error) string {
	sum := sha256.Sum256([]byte(logDetail(err)))
	return "refused-" + hex.EncodeToString(sum[:6])
}

// checkName refuses names a client could not use as a model name.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty adapter name")
	case strings.ContainsAny(name, "\x00\n\r"):
		return fmt.Errorf("adapter name %q has control characters", name)
	}
	return nil
}
