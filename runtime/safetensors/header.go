package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize is the largest JSON header accepted, as in the Rust crate.
const MaxHeaderSize = 100_000_000

// entry is one tensor of a parsed header; begin/end are relative to the data area.
type entry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end int64
}

// header is a parsed and validated safetensors header.
type header struct {
	entries  []entry // sorted by data offset
	metadata map[string]string
}

// tensorInfo is the JSON value of one tensor in the header. Pointers tell a
// missing field from a zero one.
type tensorInfo struct {
	DType       *string  `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader parses and validates the JSON header of a file whose data area
// (the bytes after the header) is dataLen bytes long. It checks every tensor:
// known dtype, non-negative shape, 0 <= begin <= end <= dataLen, byte length
// equal to numel*size, and no two tensors overlapping. Gaps between tensors
// are tolerated.
func parseHeader(js []byte, dataLen int64) (*header, error) {
	if !utf8.Valid(js) {
		return nil, errors.New("header is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("header is not a JSON object")
	}
	h := &header{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("header is not JSON: %w", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, errors.New("header is not JSON: object key is not a string")
		}
		if seen[name] {
			return nil, fmt.Errorf("tensor %q: listed twice in header", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		if name == "__metadata__" {
			if err := json.Unmarshal(raw, &h.metadata); err != nil {
				return nil, fmt.Errorf("__metadata__ must map strings to strings: %w", err)
			}
			continue
		}
		e, err := parseEntry(name, raw, dataLen)
		if err != nil {
			return nil, fmt.Errorf("tensor %q: %w", name, err)
		}
		h.entries = append(h.entries, e)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, fmt.Errorf("header is not JSON: %w", err)
	}
	// Only padding may follow the object (the Rust writer pads with spaces).
	rest := js[dec.InputOffset():]
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return nil, errors.New("header has trailing bytes after the JSON object")
	}
	if err := checkOverlap(h.entries); err != nil {
		return nil, err
	}
	return h, nil
}

func parseEntry(name string, raw json.RawMessage, dataLen int64) (entry, error) {
	var ti tensorInfo
	if err := json.Unmarshal(raw, &ti); err != nil {
		return entry{}, err
	}
	if ti.DType == nil || ti.Shape == nil || ti.DataOffsets == nil {
		return entry{}, errors.New("needs dtype, shape and data_offsets")
	}
	e := entry{name: name, dtype: DType(*ti.DType)}
	if !e.dtype.Valid() {
		return entry{}, fmt.Errorf("unknown dtype %q", *ti.DType)
	}
	if len(*ti.DataOffsets) != 2 {
		return entry{}, fmt.Errorf("data_offsets has %d values, want 2", len(*ti.DataOffsets))
	}
	e.begin, e.end = (*ti.DataOffsets)[0], (*ti.DataOffsets)[1]
	if e.begin < 0 || e.end < e.begin || e.end > dataLen {
		return entry{}, fmt.Errorf("data_offsets [%d,%d] outside the %d-byte data area", e.begin, e.end, dataLen)
	}
	// numel*size must equal end-begin <= dataLen, so any product beyond
	// dataLen is an error; checking that as we go also prevents overflow.
	numel := int64(1)
	e.shape = make([]int, len(*ti.Shape))
	for i, d := range *ti.Shape {
		if d < 0 || d > math.MaxInt {
			return entry{}, fmt.Errorf("bad shape %v", *ti.Shape)
		}
		e.shape[i] = int(d)
		if d != 0 && numel > dataLen/d {
			numel = dataLen + 1 // too big; reported below
		} else {
			numel *= d
		}
	}
	size := int64(e.dtype.Size())
	if numel > dataLen || numel*size != e.end-e.begin {
		return entry{}, fmt.Errorf("shape %v of %s needs %s bytes but data_offsets [%d,%d] hold %d",
			*ti.Shape, e.dtype, byteCount(numel, size, dataLen), e.begin, e.end, e.end-e.begin)
	}
	return e, nil
}

func byteCount(numel, size, dataLen int64) string {
	if numel > dataLen {
		return "more than the file's"
	}
	return fmt.Sprint(numel * size)
}

// checkOverlap sorts entries by offset and reports two tensors sharing bytes.
func checkOverlap(es []entry) error {
	sort.Slice(es, func(i, j int) bool {
		if es[i].begin != es[j].begin {
			return es[i].begin < es[j].begin
		}
		return es[i].end < es[j].end
	})
	last := -1 // index of the non-empty tensor reaching furthest so far
	for i, e := range es {
		if e.begin == e.end {
			continue
		}
		if last >= 0 && e.begin < es[last].end {
			p := es[last]
			return fmt.Errorf("tensor %q: data_offsets [%d,%d] overlap tensor %q [%d,%d]",
				e.name, e.begin, e.end, p.name, p.begin, p.end)
		}
		if last < 0 || e.end > es[last].end {
			last = i
		}
	}
	return nil
}

// readHeader reads and validates the 8-byte length and the header of a file
// of the given size; it returns the header and the data area's offset.
func readHeader(r io.ReaderAt, size int64) (*header, int64, error) {
	if size < 8 {
		return nil, 0, fmt.Errorf("file is %d bytes, too short for a safetensors header", size)
	}
	var lenBuf [8]byte
	if _, err := r.ReadAt(lenBuf[:], 0); err != nil {
		return nil, 0, err
	}
	n := uint64(lenBuf[0]) | uint64(lenBuf[1])<<8 | uint64(lenBuf[2])<<16 | uint64(lenBuf[3])<<24 |
		uint64(lenBuf[4])<<32 | uint64(lenBuf[5])<<40 | uint64(lenBuf[6])<<48 | uint64(lenBuf[7])<<56
	if n > MaxHeaderSize {
		return nil, 0, fmt.Errorf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(size-8) {
		return nil, 0, fmt.Errorf("header length %d runs past the end of the %d-byte file (truncated?)", n, size)
	}
	js := make([]byte, n)
	if _, err := r.ReadAt(js, 8); err != nil {
		return nil, 0, err
	}
	h, err := parseHeader(js, size-8-int64(n))
	if err != nil {
		return nil, 0, err
	}
	return h, 8 + int64(n), nil
}
