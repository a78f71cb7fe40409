package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fileBytes builds a file from a header string and dataLen zero bytes.
func fileBytes(hdr string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(b, hdr...)
	return append(b, make([]byte, dataLen)...)
}

func openBytes(t *testing.T, b []byte) (*File, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f.safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err == nil {
		t.Cleanup(func() { f.Close() })
	} else if !strings.Contains(err.Error(), p) {
		t.Errorf("error does not name the file: %v", err)
	}
	return f, err
}

func TestOpenRejectsCorruptHeaders(t *testing.T) {
	cases := []struct {
		hdr     string
		dataLen int
		want    string // substring of the error
	}{
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4, `"a"`},                     // past the end
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, 8, `"a"`},                     // size mismatch
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}`, 8, `"a"`},                     // begin > end
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}}`, 8, `"a"`},                    // negative
		{`{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, 8, `"a"`},                    // negative dim
		{`{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}`, 8, "unknown dtype"},            // dtype
		{`{"a":{"dtype":"F32","shape":[2]}}`, 8, `"a"`},                                          // missing offsets
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4,8]}}`, 8, `"a"`},                   // 3 offsets
		{`{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}`, 8, `"a"`},                   // float dim
		{`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}`, 8, `"a"`}, // overflow
		{`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, 8, "overlap"},
		{`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}`, 8, "twice"},
		{`{"__metadata__":{"k":1}}`, 0, "__metadata__"},
		{`{"a":1}`, 0, `"a"`},
		{`[1,2]`, 0, "object"},
		{`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}} x`, 8, "trailing"},
		{"{\"\xff\":{}}", 0, "UTF-8"},
		{`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}`, 8, "JSON"},
		{``, 8, "JSON"},
	}
	for _, c := range cases {
		_, err := openBytes(t, fileBytes(c.hdr, c.dataLen))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("header %s: error %v, want one containing %q", c.hdr, err, c.want)
		}
	}
	// Zero-sized tensors may share an offset with anything; gaps are tolerated.
	ok := `{"e":{"dtype":"F32","shape":[0,3],"data_offsets":[4,4]},"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"g":{"dtype":"U8","shape":[2],"data_offsets":[10,12]}}`
	if _, err := openBytes(t, fileBytes(ok, 12)); err != nil {
		t.Errorf("valid header rejected: %v", err)
	}
}

func TestOpenRejectsBadLengths(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		{1, 2, 3},
		binary.LittleEndian.AppendUint64(nil, 100),                // header past EOF
		binary.LittleEndian.AppendUint64(nil, MaxHeaderSize+1),    // too large
		binary.LittleEndian.AppendUint64(nil, 1<<63),              // absurd
		append(binary.LittleEndian.AppendUint64(nil, 2), "{}"...), // fine
	} {
		_, err := openBytes(t, b)
		if (err == nil) != (len(b) == 10) {
			t.Errorf("% x: err = %v", b, err)
		}
	}
}

// Truncating the real file anywhere must give an error, never a panic.
func TestOpenTruncated(t *testing.T) {
	raw, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "t.safetensors")
	for _, c := range []int{0, 1, 7, 8, 9, 100, 4863, 4864, 4865, len(raw) - 1} {
		if err := os.WriteFile(p, raw[:c], 0o644); err != nil {
			t.Fatal(err)
		}
		if f, err := Open(p); err == nil {
			f.Close()
			t.Errorf("truncated at %d: no error", c)
		}
	}
	for c := 1000; c < len(raw); c += 1000 {
		if _, _, err := readHeader(bytes.NewReader(raw[:c]), int64(c)); err == nil {
			t.Errorf("truncated at %d: no error", c)
		}
	}
}

// Flipping any header byte must never panic; whatever still opens must be
// self-consistent (every tensor's bytes inside the file).
func TestOpenFlippedHeaderBytes(t *testing.T) {
	raw, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.LittleEndian.Uint64(raw))
	b := append([]byte(nil), raw[:8+n]...) // header only; data area replaced by a short one
	opened := 0
	for i := 0; i < 8+n; i += 7 {
		for _, x := range []byte{0x01, 0x20, 0x80} {
			c := append([]byte(nil), b...)
			c[i] ^= x
			// readHeader reads only the header, so the data area need not be present.
			h, _, err := readHeader(bytes.NewReader(c), int64(len(raw)))
			if err != nil {
				continue
			}
			opened++
			for _, e := range h.entries {
				if e.begin < 0 || e.end > int64(len(raw)-8-n) || e.end-e.begin != int64(numel(e.shape)*e.dtype.Size()) {
					t.Fatalf("flip at %d: inconsistent entry %+v", i, e)
				}
			}
		}
	}
	if opened == 0 {
		t.Error("no flip kept the file valid: expected some (e.g. in tensor names)")
	}
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func FuzzReadHeader(f *testing.F) {
	raw, err := os.ReadFile(stories)
	if err != nil {
		f.Fatal(err)
	}
	n := binary.LittleEndian.Uint64(raw)
	f.Add(append(raw[:8+n:8+n], make([]byte, 64)...))
	f.Add(fileBytes(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"x":"y"}}`, 8))
	f.Add(fileBytes(`{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}`, 8))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, off, err := readHeader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		dataLen := int64(len(b)) - off
		var prevEnd int64
		for _, e := range h.entries { // sorted by offset
			if e.begin < 0 || e.end > dataLen || e.end-e.begin != int64(numel(e.shape)*e.dtype.Size()) {
				t.Fatalf("inconsistent entry %+v in %d-byte data area", e, dataLen)
			}
			if e.begin != e.end {
				if e.begin < prevEnd {
					t.Fatalf("overlap at %+v", e)
				}
				prevEnd = e.end
			}
		}
	})
}
