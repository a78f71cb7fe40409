package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const stories = "../../testdata/stories260K/model.safetensors"

// The real file written by the Python safetensors library (torch save_file).
func TestStories260K(t *testing.T) {
	f, err := Open(stories)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := f.Names()
	if len(names) != 47 { // 5 layers × 9 + embed + final norm (tied: no lm_head)
		t.Fatalf("%d tensors, want 47", len(names))
	}
	want := map[string][]int{
		"model.embed_tokens.weight": {512, 64},
		"model.norm.weight":         {64},
	}
	for l := 0; l < 5; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		want[p+"input_layernorm.weight"] = []int{64}
		want[p+"post_attention_layernorm.weight"] = []int{64}
		want[p+"self_attn.q_proj.weight"] = []int{64, 64}
		want[p+"self_attn.k_proj.weight"] = []int{32, 64}
		want[p+"self_attn.v_proj.weight"] = []int{32, 64}
		want[p+"self_attn.o_proj.weight"] = []int{64, 64}
		want[p+"mlp.gate_proj.weight"] = []int{172, 64}
		want[p+"mlp.up_proj.weight"] = []int{172, 64}
		want[p+"mlp.down_proj.weight"] = []int{64, 172}
	}
	for name, shape := range want {
		tn, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("missing %s", name)
		}
		if tn.DType != F32 || !reflect.DeepEqual(tn.Shape, shape) {
			t.Errorf("%s: %s %v, want F32 %v", name, tn.DType, tn.Shape, shape)
		}
	}
	if md := f.Metadata(); !reflect.DeepEqual(md, map[string]string{"format": "pt"}) {
		t.Errorf("metadata %v", md)
	}
	// A value read independently of the parser: the header is 4856 bytes and
	// the embedding is the first tensor, so its first float is at byte 8+4856.
	raw, err := os.ReadFile(stories)
	if err != nil {
		t.Fatal(err)
	}
	emb, _ := f.Tensor("model.embed_tokens.weight")
	v, err := ToFloat32(emb)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := v[0], math.Float32frombits(binary.LittleEndian.Uint32(raw[8+4856:])); got != want {
		t.Errorf("embed[0] = %v, want %v", got, want)
	}

	// Writing the same tensors and metadata back reproduces the file exactly.
	var ts []Tensor
	for _, n := range names {
		tn, _ := f.Tensor(n)
		ts = append(ts, tn)
	}
	out := filepath.Join(t.TempDir(), "copy.safetensors")
	if err := Write(out, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, raw) {
		t.Fatalf("rewritten file differs from the original (%d vs %d bytes)", len(got), len(raw))
	}
}

// Byte vectors from the Rust crate's own serialization tests.
func TestWriteMatchesRustCrateVectors(t *testing.T) {
	dir := t.TempDir()
	data := f32bytes(0, 1, 2, 3, 4, 5)
	cases := []struct {
		tensors  []Tensor
		metadata map[string]string
		header   string
	}{
		{[]Tensor{{Name: "attn.0", DType: F32, Shape: []int{1, 2, 3}, Data: data}}, nil,
			`{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`},
		{[]Tensor{{Name: "attn0", DType: F32, Shape: []int{1, 1, 2, 3}, Data: data}}, nil,
			`{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       `},
		{nil, nil, `{}      `},
		{nil, map[string]string{"framework": "pt"}, `{"__metadata__":{"framework":"pt"}}     `},
	}
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := Write(p, c.tensors, c.metadata); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(p)
		want := binary.LittleEndian.AppendUint64(nil, uint64(len(c.header)))
		want = append(want, c.header...)
		for _, tn := range c.tensors {
			want = append(want, tn.Data...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("case %d:\n got %q\nwant %q", i, got, want)
		}
	}
}

func f32bytes(v ...float32) []byte {
	var b []byte
	for _, x := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	return b
}

func TestWriteOrderAndRoundTrip(t *testing.T) {
	ts := []Tensor{
		{Name: "b.u8", DType: U8, Shape: []int{3}, Data: []byte{1, 2, 3}},
		{Name: "a.u8", DType: U8, Shape: []int{1}, Data: []byte{9}},
		{Name: "z.f32", DType: F32, Shape: []int{2}, Data: f32bytes(1.5, -2)},
		{Name: "c.bf16", DType: BF16, Shape: []int{2, 1}, Data: []byte{0x80, 0x3f, 0, 0xc0}},
		{Name: "i64", DType: I64, Shape: []int{1}, Data: make([]byte, 8)},
		{Name: "empty", DType: F16, Shape: []int{0, 4}, Data: nil},
		{Name: "scalar", DType: I32, Shape: []int{}, Data: []byte{7, 0, 0, 0}},
		{Name: "uni\u00e9\"\n", DType: BOOL, Shape: []int{1}, Data: []byte{1}},
	}
	p := filepath.Join(t.TempDir(), "m.safetensors")
	md := map[string]string{"b": "2", "a": "<&>"}
	if err := Write(p, ts, md); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// Decreasing dtype alignment (I64 > F32 > I32 > BF16 > F16 > U8 > BOOL), then name.
	wantOrder := []string{"i64", "z.f32", "scalar", "c.bf16", "empty", "a.u8", "b.u8", "uni\u00e9\"\n"}
	if got := f.Names(); !reflect.DeepEqual(got, wantOrder) {
		t.Errorf("order %q, want %q", got, wantOrder)
	}
	if !reflect.DeepEqual(f.Metadata(), md) {
		t.Errorf("metadata %v", f.Metadata())
	}
	for _, w := range ts {
		g, ok := f.Tensor(w.Name)
		if !ok {
			t.Fatalf("missing %q", w.Name)
		}
		if g.DType != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%q: got %s %v %v, want %s %v %v", w.Name, g.DType, g.Shape, g.Data, w.DType, w.Shape, w.Data)
		}
	}
	raw, _ := os.ReadFile(p)
	hl := binary.LittleEndian.Uint64(raw)
	if hl%8 != 0 || !strings.HasPrefix(string(raw[8:]), `{"__metadata__":{"a":"<&>","b":"2"},"i64":`) {
		t.Errorf("header %q", raw[8:8+hl])
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.safetensors")
	bad := [][]Tensor{
		{{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}},
		{{Name: "a", DType: "F128", Shape: []int{1}, Data: make([]byte, 16)}},
		{{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}},
		{{Name: "__metadata__", DType: U8, Shape: []int{1}, Data: []byte{1}}},
		{{Name: "a", DType: U8, Shape: []int{-1}, Data: nil}},
	}
	for i, ts := range bad {
		if err := Write(p, ts, nil); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
	// A stream tensor that writes the wrong number of bytes fails and leaves nothing.
	err := WriteStream(p, []StreamTensor{{Name: "s", DType: F32, Shape: []int{2},
		WriteData: func(w io.Writer) error { _, err := w.Write(make([]byte, 4)); return err }}}, nil)
	if err == nil || !strings.Contains(err.Error(), `"s"`) {
		t.Errorf("short stream: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
}
