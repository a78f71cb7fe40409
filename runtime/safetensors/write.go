package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"

	"github.com/parrot-llm/parrot/internal/atomicfile"
)

// StreamTensor is a tensor whose bytes are produced while the file is
// written, so that a large checkpoint never has to sit in memory whole.
type StreamTensor struct {
	Name  string
	DType DType
	Shape []int
	// WriteData must write exactly numel*DType.Size() bytes to w.
	WriteData func(w io.Writer) error
}

// Write writes tensors and metadata (nil: no __metadata__ entry) to path.
// The layout is the reference library's: tensors ordered by decreasing dtype
// alignment (the Rust crate's Dtype order: U64, I64, F64, F32, U32, I32, BF16,
// F16, ...), then by name; compact JSON header with __metadata__ first (its
// keys sorted) padded with spaces to a multiple of 8 bytes. The file is
// replaced atomically: written to a temporary file in the same directory,
// fsynced, renamed over path, and the directory fsynced.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	st := make([]StreamTensor, len(tensors))
	for i, t := range tensors {
		t := t
		if want := t.NumElements() * t.DType.Size(); t.DType.Valid() && len(t.Data) != want {
			return fmt.Errorf("safetensors: writing %s: tensor %q: %d bytes of data, want %d for %v %s",
				path, t.Name, len(t.Data), want, t.Shape, t.DType)
		}
		st[i] = StreamTensor{Name: t.Name, DType: t.DType, Shape: t.Shape,
			WriteData: func(w io.Writer) error { _, err := w.Write(t.Data); return err }}
	}
	return WriteStream(path, st, metadata)
}

// WriteStream is Write with tensor data produced on demand: WriteData is
// called once per tensor, in file order (see Write).
func WriteStream(path string, tensors []StreamTensor, metadata map[string]string) (err error) {
	fail := func(err error) error { return fmt.Errorf("safetensors: writing %s: %w", path, err) }
	order, sizes, err := layout(tensors)
	if err != nil {
		return fail(err)
	}
	hdr := encodeHeader(tensors, order, sizes, metadata)

	err = atomicfile.Write(path, func(w io.Writer) error {
		var lenBuf [8]byte
		binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hdr)))
		w.Write(lenBuf[:])
		w.Write(hdr)
		for _, i := range order {
			t := tensors[i]
			cw := &countingWriter{w: w}
			if err := t.WriteData(cw); err != nil {
				return fmt.Errorf("tensor %q: %w", t.Name, err)
			}
			if cw.n != sizes[i] {
				return fmt.Errorf("tensor %q: wrote %d bytes, want %d for %v %s", t.Name, cw.n, sizes[i], t.Shape, t.DType)
			}
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

// layout validates the tensors and returns the write order and byte sizes.
func layout(ts []StreamTensor) (order []int, sizes []int64, err error) {
	seen := map[string]bool{}
	sizes = make([]int64, len(ts))
	for i, t := range ts {
		switch {
		case t.Name == "__metadata__":
			return nil, nil, fmt.Errorf("tensor name %q is reserved", t.Name)
		case seen[t.Name]:
			return nil, nil, fmt.Errorf("tensor %q given twice", t.Name)
		case !t.DType.Valid():
			return nil, nil, fmt.Errorf("tensor %q: unknown dtype %q", t.Name, t.DType)
		case t.WriteData == nil:
			return nil, nil, fmt.Errorf("tensor %q: no data", t.Name)
		}
		seen[t.Name] = true
		n := int64(t.DType.Size())
		for _, d := range t.Shape {
			if d < 0 || (d > 0 && n > math.MaxInt64/int64(d)) {
				return nil, nil, fmt.Errorf("tensor %q: bad shape %v", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		sizes[i] = n
	}
	order = make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ta, tb := ts[order[a]], ts[order[b]]
		if ra, rb := ta.DType.rank(), tb.DType.rank(); ra != rb {
			return ra > rb
		}
		return ta.Name < tb.Name
	})
	return order, sizes, nil
}

// encodeHeader writes the header as serde_json does (compact, no HTML
// escaping), padded with spaces to a multiple of 8.
func encodeHeader(ts []StreamTensor, order []int, sizes []int64, metadata map[string]string) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	if metadata != nil {
		b.WriteString(`"__metadata__":{`)
		for i, k := range sortedKeys(metadata) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(&b, k)
			b.WriteByte(':')
			writeJSONString(&b, metadata[k])
		}
		b.WriteByte('}')
		first = false
	}
	var off int64
	for _, i := range order {
		t := ts[i]
		if !first {
			b.WriteByte(',')
		}
		first = false
		writeJSONString(&b, t.Name)
		b.WriteString(`:{"dtype":`)
		writeJSONString(&b, string(t.DType))
		b.WriteString(`,"shape":[`)
		for j, d := range t.Shape {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		fmt.Fprintf(&b, `],"data_offsets":[%d,%d]}`, off, off+sizes[i])
		off += sizes[i]
	}
	b.WriteByte('}')
	for b.Len()%8 != 0 {
		b.WriteByte(' ')
	}
	return b.Bytes()
}

// writeJSONString quotes s like serde_json: escapes ", \ and control
// characters only; everything else, non-ASCII included, is written raw.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
