package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/runtime/quant"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// ggufFile is a GGUF parsed by readGGUF, a reader written for these tests
// from docs/gguf.md alone (it shares no code with the writer).
type ggufFile struct {
	version   uint32
	kv        map[string]any
	keys      []string // in file order
	tensors   []ggufInfo
	dataStart int64
	raw       []byte
}

type ggufInfo struct {
	name   string
	dims   []uint64
	typ    uint32
	offset uint64
}

type ggufReader struct {
	b   []byte
	off int
	err error
}

func (r *ggufReader) take(n int) []byte {
	if r.err != nil || n < 0 || r.off+n > len(r.b) {
		if r.err == nil {
			r.err = fmt.Errorf("truncated at %d (want %d more bytes)", r.off, n)
		}
		return make([]byte, max(n, 0))
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *ggufReader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *ggufReader) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }
func (r *ggufReader) str() string { return string(r.take(int(r.u64()))) }

func (r *ggufReader) value(typ uint32) any {
	switch typ {
	case 0:
		return r.take(1)[0]
	case 1:
		return int8(r.take(1)[0])
	case 2:
		return binary.LittleEndian.Uint16(r.take(2))
	case 3:
		return int16(binary.LittleEndian.Uint16(r.take(2)))
	case 4:
		return r.u32()
	case 5:
		return int32(r.u32())
	case 6:
		return math.Float32frombits(r.u32())
	case 7:
		return r.take(1)[0] != 0
	case 8:
		return r.str()
	case 9:
		et, n := r.u32(), r.u64()
		out := make([]any, 0, min(n, 1<<20))
		for i := uint64(0); i < n && r.err == nil; i++ {
			out = append(out, r.value(et))
		}
		return out
	case 10:
		return r.u64()
	case 11:
		return int64(r.u64())
	case 12:
		return math.Float64frombits(r.u64())
	}
	r.err = fmt.Errorf("unknown value type %d at %d", typ, r.off)
	return nil
}

func readGGUF(t *testing.T, path string) *ggufFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &ggufReader{b: b}
	if magic := string(r.take(4)); magic != "GGUF" {
		t.Fatalf("magic %q", magic)
	}
	f := &ggufFile{version: r.u32(), kv: map[string]any{}, raw: b}
	nt, nkv := r.u64(), r.u64()
	for range nkv {
		k := r.str()
		if _, dup := f.kv[k]; dup {
			t.Errorf("duplicate key %s", k)
		}
		f.kv[k] = r.value(r.u32())
		f.keys = append(f.keys, k)
	}
	for range nt {
		ti := ggufInfo{name: r.str()}
		nd := r.u32()
		for range nd {
			ti.dims = append(ti.dims, r.u64())
		}
		ti.typ, ti.offset = r.u32(), r.u64()
		f.tensors = append(f.tensors, ti)
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	align := int64(32)
	if a, ok := f.kv["general.alignment"].(uint32); ok {
		align = int64(a)
	}
	f.dataStart = (int64(r.off) + align - 1) / align * align
	for i := int64(r.off); i < f.dataStart; i++ {
		if b[i] != 0 {
			t.Errorf("non-zero padding at %d", i)
		}
	}
	return f
}

// size of a tensor by the ggml block sizes (ggml-common.h).
func infoSize(t *testing.T, ti ggufInfo) int64 {
	n := int64(1)
	for _, d := range ti.dims {
		n *= int64(d)
	}
	switch ti.typ {
	case 0:
		return 4 * n
	case 1:
		return 2 * n
	case 2:
		return n / 32 * 18
	case 8:
		return n / 32 * 34
	}
	t.Fatalf("%s: type %d", ti.name, ti.typ)
	return 0
}

func (f *ggufFile) data(t *testing.T, ti ggufInfo) []byte {
	start := f.dataStart + int64(ti.offset)
	return f.raw[start : start+infoSize(t, ti)]
}

// decode expands a tensor's data to float32 (dequantize_row_q4_0 and
// dequantize_row_q8_0 of ggml-quants.c: (q-8)·d and q·d).
func decode(t *testing.T, ti ggufInfo, d []byte) []float32 {
	var out []float32
	switch ti.typ {
	case 0:
		for i := 0; i < len(d); i += 4 {
			out = append(out, math.Float32frombits(binary.LittleEndian.Uint32(d[i:])))
		}
	case 1:
		for i := 0; i < len(d); i += 2 {
			out = append(out, safetensors.F16ToFloat32(binary.LittleEndian.Uint16(d[i:])))
		}
	case 2:
		for b := 0; b < len(d); b += 18 {
			scale := safetensors.F16ToFloat32(binary.LittleEndian.Uint16(d[b:]))
			var blk [32]float32
			for j := range 16 {
				q := d[b+2+j]
				blk[j] = float32(int(q&15)-8) * scale
				blk[j+16] = float32(int(q>>4)-8) * scale
			}
			out = append(out, blk[:]...)
		}
	case 8:
		for b := 0; b < len(d); b += 34 {
			scale := safetensors.F16ToFloat32(binary.LittleEndian.Uint16(d[b:]))
			for j := range 32 {
				out = append(out, float32(int8(d[b+2+j]))*scale)
			}
		}
	}
	return out
}

// The golden blocks are worked out by hand from ggml-common.h and
// quantize_row_q4_0_ref: d = (value of largest magnitude)/-8, code =
// (int8)(x/d + 8.5) capped at 15, element j low nibble and j+16 high nibble
// of byte j, d first as little-endian fp16.
func TestQ4_0Golden(t *testing.T) {
	// x_j = (j-16)/4: the largest magnitude is x_0 = -4, so d = 0.5 (fp16
	// 0x3800) and x/d = (j-16)/2. Codes: j < 16 -> (int)((j-16)/2 + 8.5) =
	// floor((j+1)/2); j >= 16 -> 8 + floor((j-15)/2), and x_31 = 3.75 gives
	// 16, capped to 15.
	var ramp [32]float32
	for j := range ramp {
		ramp[j] = float32(j-16) / 4
	}
	want := []byte{0x00, 0x38, 0x80, 0x91, 0x91, 0xA2, 0xA2, 0xB3, 0xB3, 0xC4, 0xC4, 0xD5, 0xD5, 0xE6, 0xE6, 0xF7, 0xF7, 0xF8}
	if got := appendQ4_0(nil, ramp[:]); !bytes.Equal(got, want) {
		t.Errorf("ramp: % x\nwant  % x", got, want)
	}
	// One positive spike: d = 1/-8 = -0.125 (fp16 0xB000), the spike's code
	// is (int)(-8 + 8.5) = 0, zeros are 8.
	var spike [32]float32
	spike[5] = 1
	want = []byte{0x00, 0xB0, 0x88, 0x88, 0x88, 0x88, 0x88, 0x80, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88, 0x88}
	if got := appendQ4_0(nil, spike[:]); !bytes.Equal(got, want) {
		t.Errorf("spike: % x\nwant  % x", got, want)
	}
	// All zeros: d = 0.0f / -8 is -0 (fp16 0x8000, as in C), id = 0, every
	// code 8.
	var zero [32]float32
	want = append([]byte{0x00, 0x80}, bytes.Repeat([]byte{0x88}, 16)...)
	if got := appendQ4_0(nil, zero[:]); !bytes.Equal(got, want) {
		t.Errorf("zeros: % x", got)
	}
}

// quantize_row_q8_0_ref: d = absmax/127, roundf(x/d), which rounds
// halves away from zero. With absmax 127/64, d = 1/64 (fp16 0x2400) and
// x/d is exact.
func TestQ8_0Golden(t *testing.T) {
	var x [32]float32
	x[0], x[1], x[2], x[31] = -127.0/64, 1.5/64, -2.5/64, 0.5/64
	want := make([]byte, 34)
	want[0], want[1] = 0x00, 0x24
	want[2], want[3], want[4], want[33] = 0x81, 2, 0xFD, 1 // -127, 2, -3, 1
	if got := appendQ8_0(nil, x[:]); !bytes.Equal(got, want) {
		t.Errorf("% x\nwant % x", got, want)
	}
}

func TestF32ToF16(t *testing.T) {
	// Every finite half converts back to itself.
	for h := range 1 << 16 {
		if h&0x7C00 == 0x7C00 && h&0x3FF != 0 {
			continue // NaN
		}
		if got := f32ToF16(safetensors.F16ToFloat32(uint16(h))); got != uint16(h) {
			t.Fatalf("%#04x -> %v -> %#04x", h, safetensors.F16ToFloat32(uint16(h)), got)
		}
	}
	for _, c := range []struct {
		f    float32
		want uint16
	}{
		{65504, 0x7BFF}, {65519.99, 0x7BFF}, {65520, 0x7C00}, {1e10, 0x7C00}, {float32(math.Inf(-1)), 0xFC00},
		{1 + 1.0/2048, 0x3C00},        // tie, to the even 1.0
		{1 + 3.0/2048, 0x3C02},        // tie, to the even 1+2/1024
		{0x1p-24, 0x0001},             // smallest subnormal
		{0x1p-25, 0x0000},             // half of it: tie to even zero
		{0x1.8p-25, 0x0001},           // above the tie
		{-0x1p-14, 0x8400},            // smallest normal
		{0x1.ffcp-15, 0x0400},         // the largest subnormal plus half an ulp: a tie, to the even smallest normal
		{float32(math.NaN()), 0x7E00}, // quiet NaN
	} {
		if got := f32ToF16(c.f); got != c.want {
			t.Errorf("f32ToF16(%g) = %#04x, want %#04x", c.f, got, c.want)
		}
	}
	// Random floats in the half's range: the result is a nearest half.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := float32(rng.NormFloat64() * math.Pow(2, float64(rng.IntN(40)-28)))
		h := f32ToF16(f)
		got := float64(safetensors.F16ToFloat32(h))
		for _, nb := range []uint16{h + 1, h - 1} {
			v := float64(safetensors.F16ToFloat32(nb))
			if nb&0x7FFF < 0x7C00 && math.Abs(v-float64(f)) < math.Abs(got-float64(f)) {
				t.Fatalf("f32ToF16(%g) = %g, but %g is nearer", f, got, v)
			}
		}
	}
}

func TestPermuteRoPE(t *testing.T) {
	// One head of 4 rows, 2 columns: HF rows (half, i) = 0:(0,0) 1:(0,1)
	// 2:(1,0) 3:(1,1) go to 2i+half: 0, 2, 1, 3.
	w := []float32{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5}
	want := []float32{0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5}
	if got := permuteRoPE(w, 1, 2); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	// Two heads of 4 rows: each head permuted on its own.
	w = []float32{0, 1, 2, 3, 4, 5, 6, 7}
	want = []float32{0, 2, 1, 3, 4, 6, 5, 7}
	if got := permuteRoPE(w, 2, 1); !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// hfSource reads an HF weight of a model directory as float32, an NF4 one
// dequantized.
func hfSource(t *testing.T, set *safetensors.Set, name string) []float32 {
	t.Helper()
	if quant.IsBnbQuantized(set.Tensor, name) {
		m, err := quant.LoadBnbNF4(set.Tensor, name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := quant.DequantizeNF4(m)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	tn, ok := set.Tensor(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	w, err := safetensors.ToFloat32(tn)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// ggufToHF maps llama.cpp tensor names back to Hugging Face ones.
func ggufToHF(name string) string {
	r := strings.NewReplacer("blk.", "model.layers.", "attn_q.", "self_attn.q_proj.", "attn_k.", "self_attn.k_proj.",
		"attn_v.", "self_attn.v_proj.", "attn_output.", "self_attn.o_proj.", "ffn_gate.", "mlp.gate_proj.",
		"ffn_up.", "mlp.up_proj.", "ffn_down.", "mlp.down_proj.", "attn_norm.", "input_layernorm.",
		"ffn_norm.", "post_attention_layernorm.")
	switch name {
	case "token_embd.weight":
		return "model.embed_tokens.weight"
	case "output_norm.weight":
		return "model.norm.weight"
	case "output.weight":
		return "lm_head.weight"
	}
	return r.Replace(name)
}

// TestGGUFTiny writes the tiny model as NF4 and as bf16, converts both, and
// parses each GGUF back: header, metadata, tensor table, alignment, and
// every tensor against the weights parrot loads (Q4_0 within half a step
// of its block, except the code capped at 15, which is within one step;
// F16 within half an fp16 ulp; norms exact).
func TestGGUFTiny(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		typ  uint32 // projections
		embd uint32
	}{
		{"nf4-q4_0", []string{"--quantize", "--gguf", "q4_0", "--gguf-embd", "q8_0"}, 2, 8},
		{"bf16-f16", []string{"--gguf", "f16"}, 1, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			path := filepath.Join(t.TempDir(), "m.gguf")
			var out, errb bytes.Buffer
			args := append([]string{"--preset", "tiny", "--tied=false", "--out", dir, "--gguf-out", path}, c.args...)
			if code := run(args, &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			if !strings.Contains(out.String(), "wrote "+path) || !strings.Contains(out.String(), "per_token_bytes ") {
				t.Errorf("stdout %q", out.String())
			}
			f := readGGUF(t, path)
			checkGGUFTiny(t, f, dir, c.typ, c.embd)
		})
	}
}

func checkGGUFTiny(t *testing.T, f *ggufFile, dir string, typ, embd uint32) {
	if f.version != 3 {
		t.Errorf("version %d", f.version)
	}
	// Tiny: hidden 64, 2 layers, 4/2 heads of 16, SwiGLU 128, vocab 1024,
	// llama3 RoPE with theta 500000.
	for k, want := range map[string]any{
		"general.architecture": "llama", "general.alignment": uint32(32), "general.file_type": map[uint32]uint32{1: 1, 2: 2}[typ],
		"llama.vocab_size": uint32(1024), "llama.context_length": uint32(2048), "llama.embedding_length": uint32(64),
		"llama.block_count": uint32(2), "llama.feed_forward_length": uint32(128), "llama.attention.head_count": uint32(4),
		"llama.attention.head_count_kv": uint32(2), "llama.rope.dimension_count": uint32(16),
		"llama.attention.key_length": uint32(16), "llama.attention.value_length": uint32(16),
		"llama.rope.freq_base": float32(500000), "llama.attention.layer_norm_rms_epsilon": float32(1e-5),
		"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "llama-bpe",
		"tokenizer.ggml.bos_token_id": uint32(768), "tokenizer.ggml.eos_token_id": uint32(777), // <|eot_id|>
		"tokenizer.ggml.add_bos_token": true,
	} {
		if got := f.kv[k]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	if f.keys[0] != "general.architecture" {
		t.Errorf("first key %s", f.keys[0])
	}
	tokens, _ := f.kv["tokenizer.ggml.tokens"].([]any)
	types, _ := f.kv["tokenizer.ggml.token_type"].([]any)
	merges, _ := f.kv["tokenizer.ggml.merges"].([]any)
	if len(tokens) != 1024 || len(types) != 1024 || len(merges) != 1024-256-256 {
		t.Fatalf("%d tokens, %d types, %d merges", len(tokens), len(types), len(merges))
	}
	// Byte-level strings: byte 'A' is itself, byte ' ' is U+0120; ids 768+
	// are the special tokens, CONTROL.
	if tokens['A'] != "A" || tokens[' '] != "Ġ" || tokens[768] != "<|begin_of_text|>" || tokens[777] != "<|eot_id|>" {
		t.Errorf("tokens A=%q space=%q 768=%q 777=%q", tokens['A'], tokens[' '], tokens[768], tokens[777])
	}
	if types[0] != int32(1) || types[767] != int32(1) || types[768] != int32(3) || types[1023] != int32(3) {
		t.Errorf("token types %v %v %v %v", types[0], types[767], types[768], types[1023])
	}
	// Every merge "a b" joins two tokens into a third.
	index := map[string]bool{}
	for _, s := range tokens {
		index[s.(string)] = true
	}
	for _, m := range merges {
		a, b, ok := strings.Cut(m.(string), " ")
		if !ok || !index[a] || !index[b] || !index[a+b] {
			t.Fatalf("merge %q", m)
		}
	}
	if s, _ := f.kv["tokenizer.chat_template"].(string); !strings.Contains(s, "<|start_header_id|>") {
		t.Errorf("chat template %.60q", s)
	}

	// Tensor table: names and shapes as llama.cpp's llama architecture
	// wants them, data offsets aligned, in order, not overlapping, and the
	// file ends with the last tensor's padding.
	want := map[string][]uint64{"token_embd.weight": {64, 1024}, "output_norm.weight": {64}, "output.weight": {64, 1024},
		"rope_freqs.weight": {8}}
	for l := range 2 {
		p := fmt.Sprintf("blk.%d.", l)
		for n, d := range map[string][]uint64{"attn_norm": {64}, "ffn_norm": {64}, "attn_q": {64, 64}, "attn_k": {64, 32},
			"attn_v": {64, 32}, "attn_output": {64, 64}, "ffn_gate": {64, 128}, "ffn_up": {64, 128}, "ffn_down": {128, 64}} {
			want[p+n+".weight"] = d
		}
	}
	if len(f.tensors) != len(want) {
		t.Errorf("%d tensors, want %d", len(f.tensors), len(want))
	}
	if f.dataStart%32 != 0 {
		t.Errorf("data starts at %d", f.dataStart)
	}
	var end int64
	for _, ti := range f.tensors {
		if d, ok := want[ti.name]; !ok || !reflect.DeepEqual(d, ti.dims) {
			t.Errorf("%s: dims %v, want %v", ti.name, ti.dims, d)
		}
		if ti.offset%32 != 0 || int64(ti.offset) < end {
			t.Errorf("%s: offset %d (previous tensor ends at %d)", ti.name, ti.offset, end)
		}
		end = int64(ti.offset) + infoSize(t, ti)
		var wantType uint32
		switch {
		case len(ti.dims) == 1:
			wantType = 0
		case ti.name == "token_embd.weight" || ti.name == "output.weight":
			wantType = embd
		default:
			wantType = typ
		}
		if ti.typ != wantType {
			t.Errorf("%s: type %d, want %d", ti.name, ti.typ, wantType)
		}
	}
	if got, want := int64(len(f.raw)), f.dataStart+(end+31)/32*32; got != want {
		t.Errorf("file is %d bytes, want %d", got, want)
	}

	// Values against what parrot loads.
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	for _, ti := range f.tensors {
		got := decode(t, ti, f.data(t, ti))
		if ti.name == "rope_freqs.weight" {
			// Llama 3 scaling of 8 frequencies of theta 500000 over 16
			// dimensions: the fastest rotate unscaled, the slowest by the
			// factor 32.
			if got[0] != 1 || got[7] != 32 {
				t.Errorf("rope_freqs %v", got)
			}
			continue
		}
		src := hfSource(t, set, ggufToHF(ti.name))
		if strings.HasSuffix(ti.name, "attn_q.weight") {
			src = permuteRoPE(src, 4, 64)
		} else if strings.HasSuffix(ti.name, "attn_k.weight") {
			src = permuteRoPE(src, 2, 64)
		}
		if len(got) != len(src) {
			t.Fatalf("%s: %d values, want %d", ti.name, len(got), len(src))
		}
		for i := range got {
			if !near(ti.typ, got, src, i) {
				t.Fatalf("%s[%d] = %v, source %v", ti.name, i, got[i], src[i])
			}
		}
	}
}

// near checks element i of a decoded tensor against its source value.
func near(typ uint32, got, src []float32, i int) bool {
	x, g := float64(src[i]), float64(got[i])
	switch typ {
	case 0:
		return g == x
	case 1: // half an fp16 ulp (2^-11 relative), or of the subnormal step 2^-24
		return math.Abs(g-x) <= math.Max(math.Abs(x)*0x1p-11, 0x1p-25)
	}
	// Block types: the block's step d from its largest magnitude, with the
	// fp16 rounding of d (2^-11 relative) over up to 8 steps.
	blk := src[i/32*32 : i/32*32+32]
	var amax float64
	for _, v := range blk {
		amax = math.Max(amax, math.Abs(float64(v)))
	}
	step := amax / 8
	if typ == 8 {
		step = amax / 127
		return math.Abs(g-x) <= step/2+128*step*0x1p-11+1e-12
	}
	slack := 8*step*0x1p-11 + 1e-12
	if math.Abs(g-x) <= step/2+slack {
		return true
	}
	// The other side of zero has only 7 steps: a value beyond 7.5 steps is
	// capped at code 15 (7 steps), at most one step away.
	return math.Abs(x) > 7.5*step-slack && math.Abs(g-x) <= step+slack
}
