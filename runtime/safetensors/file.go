package safetensors

import (
	"fmt"
	"os"
)

// Tensor is one tensor of a file. Data holds numel*DType.Size() little-endian
// bytes, row-major; for a Tensor returned by File.Tensor it aliases the
// read-only file mapping and is valid until File.Close.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// NumElements is the product of the shape (1 for a scalar).
func (t Tensor) NumElements() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// File is an open safetensors file. Its methods may be called concurrently,
// but not concurrently with Close.
type File struct {
	path     string
	buf      []byte // the whole file (mapped, or read into memory)
	dataOff  int64  // start of the data area in buf
	entries  []entry
	index    map[string]int // name -> entries index
	metadata map[string]string
	release  func() error // unmaps buf; nil once closed
}

// Open maps the file at path read-only and validates its header (see
// parseHeader for the checks). Errors name the file and, where one is at
// fault, the tensor.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	h, dataOff, err := readHeader(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	buf, release, err := mapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	sf := &File{
		path:     path,
		buf:      buf,
		dataOff:  dataOff,
		entries:  h.entries,
		index:    make(map[string]int, len(h.entries)),
		metadata: h.metadata,
		release:  release,
	}
	for i, e := range h.entries {
		sf.index[e.name] = i
	}
	return sf, nil
}

// Path is the path the file was opened from.
func (f *File) Path() string { return f.path }

// Tensor returns the named tensor; its Data aliases the file mapping.
func (f *File) Tensor(name string) (Tensor, bool) {
	i, ok := f.index[name]
	if !ok || f.release == nil {
		return Tensor{}, false
	}
	e := f.entries[i]
	lo, hi := f.dataOff+e.begin, f.dataOff+e.end
	return Tensor{
		Name:  e.name,
		DType: e.dtype,
		Shape: append([]int{}, e.shape...),
		Data:  f.buf[lo:hi:hi],
	}, true
}

// Names lists the tensor names in file order (by data offset).
func (f *File) Names() []string {
	names := make([]string, len(f.entries))
	for i, e := range f.entries {
		names[i] = e.name
	}
	return names
}

// Metadata returns a copy of the header's __metadata__ map (nil if absent).
func (f *File) Metadata() map[string]string {
	if f.metadata == nil {
		return nil
	}
	m := make(map[string]string, len(f.metadata))
	for k, v := range f.metadata {
		m[k] = v
	}
	return m
}

// Evict drops the file's mapped pages from the process's resident memory,
// as a loader does once it has copied what it read: the mapping stays valid
// (pages read again come back from the page cache), so that the file and
// the loaded weights are never both resident in full. A no-op when the
// file was read into memory instead of mapped.
func (f *File) Evict() {
	if f.release != nil {
		evictPages(f.buf)
	}
}

// Close unmaps the file; tensors obtained from it must no longer be used.
// Closing twice is a no-op.
func (f *File) Close() error {
	if f.release == nil {
		return nil
	}
	err := f.release()
	f.release, f.buf = nil, nil
	if err != nil {
		return fmt.Errorf("safetensors: %s: %w", f.path, err)
	}
	return nil
}
