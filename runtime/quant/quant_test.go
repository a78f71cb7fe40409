package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"reflect"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// golden is testdata/nf4_doublequant_golden.json, written by
// testdata/gen_nf4_golden.py (a line-for-line copy of bitsandbytes' default
// backend, backends/default/ops.py, with double quantization).
type golden struct {
	W              []float32 `json:"W_bf16_as_f32"`
	WeightU8       []uint8   `json:"weight_u8"`
	WeightShape    []int     `json:"weight_u8_shape"`
	AbsmaxU8       []uint8   `json:"absmax_u8"`
	Absmax         []float32 `json:"absmax_f32_first_level"`
	NestedAbsmax   []float32 `json:"nested_absmax_f32"`
	NestedOffset   float32   `json:"nested_offset"`
	QuantStateJSON string    `json:"quant_state_json"`
	DequantAbsmax  []float32 `json:"dequant_absmax_f32"`
	DequantW       []float32 `json:"dequant_W_f32"`
	DequantWBF16   []float32 `json:"dequant_W_bf16_as_f32"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}

// equalBits compares float32 slices bit for bit.
func equalBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v (%#08x), want %v (%#08x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

func mapLookup(ts []safetensors.Tensor) Lookup {
	m := map[string]safetensors.Tensor{}
	for _, t := range ts {
		m[t.Name] = t
	}
	return func(name string) (safetensors.Tensor, bool) { t, ok := m[name]; return t, ok }
}

func TestNF4DoubleQuantGolden(t *testing.T) {
	var g golden
	readJSON(t, "testdata/nf4_doublequant_golden.json", &g)
	m, err := QuantizeNF4(g.W, 8, 96)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(m.Packed, g.WeightU8) || !reflect.DeepEqual(g.WeightShape, []int{len(m.Packed), 1}) {
		t.Fatalf("packed bytes differ: got %v...", m.Packed[:8])
	}
	equalBits(t, "absmax", m.Absmax, g.Absmax)

	codes, nested, offset := DoubleQuantize(m.Absmax)
	if !reflect.DeepEqual(codes, g.AbsmaxU8) {
		t.Errorf("absmax_u8 %v, want %v", codes, g.AbsmaxU8)
	}
	equalBits(t, "nested_absmax", nested, g.NestedAbsmax)
	equalBits(t, "nested_offset", []float32{offset}, []float32{g.NestedOffset})

	ts, err := BnbTensors("w", m, true, "bfloat16")
	if err != nil {
		t.Fatal(err)
	}
	qs, ok := mapLookup(ts)("w.quant_state.bitsandbytes__nf4")
	if !ok || string(qs.Data) != g.QuantStateJSON {
		t.Errorf("quant_state JSON\n got %s\nwant %s", qs.Data, g.QuantStateJSON)
	}

	// Decode path: load the tensors back and dequantize.
	got, err := LoadBnbNF4(mapLookup(ts), "w")
	if err != nil {
		t.Fatal(err)
	}
	equalBits(t, "dequantized absmax", got.Absmax, g.DequantAbsmax)
	dq, err := DequantizeNF4(got)
	if err != nil {
		t.Fatal(err)
	}
	equalBits(t, "dequantized W", dq, g.DequantW)
	for i := range dq {
		dq[i] = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(dq[i]))
	}
	equalBits(t, "dequantized W as bf16", dq, g.DequantWBF16)
}

// inputs mirrors inputs() of testdata/gen_quant_cases.py.
func inputs(n, seed int, scale float64) []float32 {
	unif := func(i, s int) float64 {
		return float64(uint32(uint64(i)*2654435761+uint64(s)*97531+12345)) / 4294967296.0
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32((unif(i, seed) + unif(i, seed+1) + unif(i, seed+2) - 1.5) * scale)
	}
	return x
}

func hexFloats(t *testing.T, hs []string) []float32 {
	t.Helper()
	out := make([]float32, len(hs))
	for i, h := range hs {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 4 {
			t.Fatalf("bad hex %q", h)
		}
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b))
	}
	return out
}

func sha(v any) string {
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	case []float32:
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
		}
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

type cases struct {
	Mean []struct {
		N    int    `json:"n"`
		Mean string `json:"mean"`
	} `json:"mean"`
	NF4 []struct {
		Name          string   `json:"name"`
		Rows          int      `json:"rows"`
		Cols          int      `json:"cols"`
		Seed          int      `json:"seed"`
		Scale         float64  `json:"scale"`
		BF16          bool     `json:"bf16"`
		ZeroRow       int      `json:"zero_row"`
		PackedSHA     string   `json:"packed_sha256"`
		Absmax        []string `json:"absmax"`
		AbsmaxU8      []uint8  `json:"absmax_u8"`
		NestedAbsmax  []string `json:"nested_absmax"`
		NestedOffset  string   `json:"nested_offset"`
		DequantAbsmax []string `json:"dequant_absmax"`
		DequantSHA    string   `json:"dequant_sha256"`
	} `json:"nf4"`
	Rounding struct {
		W      []string `json:"W"`
		Packed []uint8  `json:"packed"`
		Absmax []string `json:"absmax"`
	} `json:"rounding"`
	Blockwise []struct {
		N          int      `json:"n"`
		Blocksize  int      `json:"blocksize"`
		Codes      []uint8  `json:"codes"`
		Absmax     []string `json:"absmax"`
		DequantSHA string   `json:"dequant_sha256"`
	} `json:"blockwise"`
}

// testdata/quant_cases.json: torch 1.13 outputs from testdata/gen_quant_cases.py.
func TestTorchMean(t *testing.T) {
	var c cases
	readJSON(t, "testdata/quant_cases.json", &c)
	if len(c.Mean) < 60 {
		t.Fatalf("%d mean cases", len(c.Mean))
	}
	for _, m := range c.Mean {
		x := inputs(m.N, 7, 0.1)
		for i := range x {
			x[i] = float32(math.Abs(float64(x[i])))
		}
		want := hexFloats(t, []string{m.Mean})[0]
		if got := torchMean(x); math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("mean of %d: %v, torch %v", m.N, got, want)
		}
	}
}

func TestNF4Cases(t *testing.T) {
	var c cases
	readJSON(t, "testdata/quant_cases.json", &c)
	if len(c.NF4) != 4 {
		t.Fatalf("%d nf4 cases", len(c.NF4))
	}
	for _, k := range c.NF4 {
		t.Run(k.Name, func(t *testing.T) {
			w := inputs(k.Rows*k.Cols, k.Seed, k.Scale)
			if k.ZeroRow >= 0 {
				clear(w[k.ZeroRow*k.Cols : (k.ZeroRow+1)*k.Cols])
			}
			if k.BF16 {
				for i := range w {
					w[i] = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(w[i]))
				}
			}
			m, err := QuantizeNF4(w, k.Rows, k.Cols)
			if err != nil {
				t.Fatal(err)
			}
			equalBits(t, "absmax", m.Absmax, hexFloats(t, k.Absmax))
			if sha(m.Packed) != k.PackedSHA {
				t.Error("packed bytes differ")
			}
			codes, nested, offset := DoubleQuantize(m.Absmax)
			if !reflect.DeepEqual(codes, k.AbsmaxU8) {
				t.Errorf("absmax_u8 differ")
			}
			equalBits(t, "nested_absmax", nested, hexFloats(t, k.NestedAbsmax))
			equalBits(t, "nested_offset", []float32{offset}, hexFloats(t, []string{k.NestedOffset}))
			dyn := SignedDynamicMap()
			scales, err := DequantizeAbsmax(codes, nested, &dyn, offset)
			if err != nil {
				t.Fatal(err)
			}
			equalBits(t, "dequantized absmax", scales, hexFloats(t, k.DequantAbsmax))
			m.Absmax = scales
			dq, err := DequantizeNF4(m)
			if err != nil {
				t.Fatal(err)
			}
			if sha(dq) != k.DequantSHA {
				t.Error("dequantized W differs")
			}
		})
	}
}

// Values on which x*(1/absmax) (full blocks) and x/absmax (the partial last
// block) pick different codes: the reference scales the two differently.
func TestNF4ScalingRounding(t *testing.T) {
	var c cases
	readJSON(t, "testdata/quant_cases.json", &c)
	w := hexFloats(t, c.Rounding.W)
	m, err := QuantizeNF4(w, 1, len(w))
	if err != nil {
		t.Fatal(err)
	}
	equalBits(t, "absmax", m.Absmax, hexFloats(t, c.Rounding.Absmax))
	if !reflect.DeepEqual(m.Packed, c.Rounding.Packed) {
		t.Errorf("packed %v, want %v", m.Packed, c.Rounding.Packed)
	}
}

func TestBlockwiseCases(t *testing.T) {
	var c cases
	readJSON(t, "testdata/quant_cases.json", &c)
	code := UnsignedDynamicMap()
	for _, k := range c.Blockwise {
		x := inputs(k.N, 9, 1e-3)
		for i := range x {
			x[i] *= x[i]
		}
		codes, absmax, err := QuantizeBlockwise(x, &code, k.Blocksize)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(codes, k.Codes) {
			t.Errorf("n=%d: codes differ", k.N)
		}
		equalBits(t, "absmax", absmax, hexFloats(t, k.Absmax))
		dq, err := DequantizeBlockwise(codes, absmax, &code, k.Blocksize)
		if err != nil {
			t.Fatal(err)
		}
		if sha(dq) != k.DequantSHA {
			t.Errorf("n=%d: dequantized values differ", k.N)
		}
	}
}

// The generated Go tables equal testdata/bnb_code_tables.json (bitsandbytes
// functional.py get_4bit_type and create_dynamic_map).
func TestCodeTables(t *testing.T) {
	var tables map[string]any
	readJSON(t, "testdata/bnb_code_tables.json", &tables)
	hexes := func(key string) []float32 {
		var hs []string
		for _, v := range tables[key].([]any) {
			hs = append(hs, v.(string))
		}
		return hexFloats(t, hs)
	}
	s, u, f := SignedDynamicMap(), UnsignedDynamicMap(), FP4Code()
	equalBits(t, "signed", s[:], hexes("dynamic_signed_hex_le"))
	equalBits(t, "unsigned", u[:], hexes("dynamic_unsigned_hex_le"))
	equalBits(t, "fp4", f[:], hexes("fp4_code_by_index_hex_le"))
	equalBits(t, "nf4", kernels.NF4Code[:], hexes("nf4_hardcoded_f32_hex_le"))
	if s[0] != -0.99296875 || s[127] != 0 || s[255] != 1 || u[0] != 0 || u[255] != 1 {
		t.Errorf("landmarks (create_dynamic_map): %v %v %v %v %v", s[0], s[127], s[255], u[0], u[255])
	}
}

// Nearest-code choice at and around the NF4 midpoints: a value exactly on a
// midpoint takes the lower code (torch.bucketize, right=False).
func TestNF4Midpoints(t *testing.T) {
	code := kernels.NF4Code
	for i := 0; i < 15; i++ {
		mid := float32(code[i]+code[i+1]) / 2
		// Block: the absmax 1 first (so scaled == value), then probes.
		w := make([]float32, 64)
		w[0] = 1
		w[1], w[2], w[3] = mid, math.Nextafter32(mid, 2), math.Nextafter32(mid, -2)
		m, err := QuantizeNF4(w, 1, 64)
		if err != nil {
			t.Fatal(err)
		}
		nib := func(j int) int {
			if j%2 == 0 {
				return int(m.Packed[j/2] >> 4)
			}
			return int(m.Packed[j/2] & 15)
		}
		if nib(0) != 15 || nib(1) != i || nib(2) != i+1 || nib(3) != i || nib(4) != 7 {
			t.Errorf("midpoint %d (%v): codes %d %d %d %d %d", i, mid, nib(0), nib(1), nib(2), nib(3), nib(4))
		}
	}
}

// A naive reference: nearest NF4 value by distance, the absmax per block,
// high nibble first, an all-zero block -> absmax 0 and code 7.
func TestQuantizeNF4Reference(t *testing.T) {
	for _, shape := range [][2]int{{1, 1}, {1, 3}, {3, 5}, {7, 33}, {2, 64}, {5, 100}, {17, 96}} {
		rows, cols := shape[0], shape[1]
		w := inputs(rows*cols, rows+cols, 0.1)
		if rows*cols > 128 {
			clear(w[64:128]) // an all-zero block
		}
		m, err := QuantizeNF4(w, rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Validate(); err != nil {
			t.Fatal(err)
		}
		for b := range m.Absmax {
			var want float32
			for _, v := range w[b*64 : min(b*64+64, len(w))] {
				want = max(want, float32(math.Abs(float64(v))))
			}
			if m.Absmax[b] != want {
				t.Fatalf("%v block %d: absmax %v, want %v", shape, b, m.Absmax[b], want)
			}
		}
		for i, v := range w {
			a := m.Absmax[i/64]
			var s float64
			if a != 0 {
				s = float64(v) / float64(a)
			}
			best, bestD := 0, math.Inf(1)
			for c, cv := range kernels.NF4Code {
				if d := math.Abs(s - float64(cv)); d < bestD {
					best, bestD = c, d
				}
			}
			got := int(m.Packed[i/2] >> 4)
			if i%2 == 1 {
				got = int(m.Packed[i/2] & 15)
			}
			if got != best {
				t.Fatalf("%v element %d (%v / %v): code %d, want %d", shape, i, v, a, got, best)
			}
		}
		if n := rows * cols; n%2 == 1 && m.Packed[n/2]&15 != 7 {
			t.Errorf("%v: padding nibble %d, want 7 (the code of 0)", shape, m.Packed[n/2]&15)
		}
	}
	if _, err := QuantizeNF4(make([]float32, 5), 2, 3); err == nil {
		t.Error("size mismatch accepted")
	}
}

func TestBnbRoundTripAndErrors(t *testing.T) {
	w := inputs(40*70, 11, 0.03) // 2800 = 43.75 blocks: a partial last block
	m, err := QuantizeNF4(w, 40, 70)
	if err != nil {
		t.Fatal(err)
	}
	for _, dq := range []bool{false, true} {
		ts, err := BnbTensors("p.weight", m, dq, "float16")
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]safetensors.DType{}
		for _, t := range ts {
			names[t.Name] = t.DType
		}
		want := map[string]safetensors.DType{
			"p.weight": safetensors.U8, "p.weight.absmax": safetensors.F32, "p.weight.quant_map": safetensors.F32,
			"p.weight.quant_state.bitsandbytes__nf4": safetensors.U8,
		}
		if dq {
			want["p.weight.absmax"] = safetensors.U8
			want["p.weight.nested_absmax"] = safetensors.F32
			want["p.weight.nested_quant_map"] = safetensors.F32
		}
		if !reflect.DeepEqual(names, want) {
			t.Errorf("double quant %v: tensors %v, want %v", dq, names, want)
		}
		lk := mapLookup(ts)
		if !IsBnbQuantized(lk, "p.weight") || IsBnbQuantized(lk, "q.weight") {
			t.Error("IsBnbQuantized")
		}
		got, err := LoadBnbNF4(lk, "p.weight")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Packed, m.Packed) || got.Code != kernels.NF4Code || got.Rows != 40 || got.Cols != 70 {
			t.Error("round trip changed the codes or shape")
		}
		for b, a := range got.Absmax {
			// Without double quantization the scales are exact; with it, 8-bit
			// dynamic codes keep them within a few percent of the block maximum.
			if tol := float32(0.02) * max(m.Absmax[b], 0.01); (!dq && a != m.Absmax[b]) || abs32(a-m.Absmax[b]) > tol {
				t.Fatalf("dq=%v block %d: scale %v, want %v", dq, b, a, m.Absmax[b])
			}
		}
	}
	if got := BnbWeightNames([]string{"a.weight", "a.weight.quant_state.bitsandbytes__nf4", "b.weight.quant_state.bitsandbytes__fp4", "c.quant_state.bitsandbytes__x"}); !reflect.DeepEqual(got, []string{"a.weight", "b.weight"}) {
		t.Errorf("BnbWeightNames: %v", got)
	}

	// Corruptions of a valid set: each must be a clear error, never a panic.
	base, _ := BnbTensors("p.weight", m, true, "bfloat16")
	edit := func(name string, f func(*safetensors.Tensor)) []safetensors.Tensor {
		var out []safetensors.Tensor
		for _, t := range base {
			if t.Name == name {
				if f == nil {
					continue
				}
				f(&t)
			}
			out = append(out, t)
		}
		return out
	}
	setJSON := func(js string) func(*safetensors.Tensor) {
		return func(t *safetensors.Tensor) { t.Data = []byte(js); t.Shape = []int{len(js)} }
	}
	qsName := "p.weight.quant_state.bitsandbytes__nf4"
	bad := map[string][]safetensors.Tensor{
		"no quant state":   edit(qsName, nil),
		"no weight":        edit("p.weight", nil),
		"no absmax":        edit("p.weight.absmax", nil),
		"no nested map":    edit("p.weight.nested_quant_map", nil),
		"short weight":     edit("p.weight", func(t *safetensors.Tensor) { t.Data = t.Data[:10]; t.Shape = []int{10, 1} }),
		"short absmax":     edit("p.weight.absmax", func(t *safetensors.Tensor) { t.Data = t.Data[:3]; t.Shape = []int{3} }),
		"short nested":     edit("p.weight.nested_absmax", func(t *safetensors.Tensor) { t.Data = nil; t.Shape = []int{0} }),
		"blocksize 128":    edit(qsName, setJSON(`{"quant_type":"nf4","blocksize":128,"dtype":"bfloat16","shape":[40,70],"nested_blocksize":256,"nested_offset":0.1}`)),
		"bad shape":        edit(qsName, setJSON(`{"quant_type":"nf4","blocksize":64,"dtype":"bfloat16","shape":[2800],"nested_blocksize":256,"nested_offset":0.1}`)),
		"wrong shape":      edit(qsName, setJSON(`{"quant_type":"nf4","blocksize":64,"dtype":"bfloat16","shape":[70,41],"nested_blocksize":256,"nested_offset":0.1}`)),
		"not JSON":         edit(qsName, setJSON(`{"quant_type":`)),
		"missing dtype":    edit(qsName, setJSON(`{"quant_type":"nf4","blocksize":64,"shape":[40,70]}`)),
		"type mismatch":    edit(qsName, setJSON(`{"quant_type":"fp4","blocksize":64,"dtype":"bfloat16","shape":[40,70],"nested_blocksize":256,"nested_offset":0.1}`)),
		"no nested offset": edit(qsName, setJSON(`{"quant_type":"nf4","blocksize":64,"dtype":"bfloat16","shape":[40,70]}`)),
		"nested bs 0":      edit(qsName, setJSON(`{"quant_type":"nf4","blocksize":64,"dtype":"bfloat16","shape":[40,70],"nested_blocksize":0,"nested_offset":0.1}`)),
	}
	for what, ts := range bad {
		if _, err := LoadBnbNF4(mapLookup(ts), "p.weight"); err == nil {
			t.Errorf("%s: no error", what)
		}
	}
	// Compact JSON from third-party writers is accepted.
	ok := edit(qsName, setJSON(`{"quant_type":"nf4","blocksize":64,"dtype":"bfloat16","shape":[40,70],"nested_blocksize":256,"nested_dtype":"float32","nested_offset":0.02}`))
	if _, err := LoadBnbNF4(mapLookup(ok), "p.weight"); err != nil {
		t.Errorf("compact JSON: %v", err)
	}
	if _, err := BnbTensors("x", m, true, "int8"); err == nil {
		t.Error("dtype int8 accepted")
	}
}

func abs32(x float32) float32 { return float32(math.Abs(float64(x))) }

// An FP4 checkpoint loads with its stored quant_map as the code book.
func TestLoadFP4(t *testing.T) {
	w := inputs(64*3, 5, 0.1)
	m, err := QuantizeNF4(w, 3, 64)
	if err != nil {
		t.Fatal(err)
	}
	m.Code = FP4Code() // the codes are meaningless as FP4, but the layout is the same
	ts, err := BnbTensors("f.weight", m, false, "float32")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadBnbNF4(mapLookup(ts), "f.weight")
	if err != nil {
		t.Fatal(err)
	}
	if got.Code != FP4Code() {
		t.Errorf("code %v", got.Code)
	}
	if _, ok := mapLookup(ts)("f.weight.quant_state.bitsandbytes__fp4"); !ok {
		t.Error("no __fp4 quant state")
	}
}

// Large weights are quantized by several goroutines; the result must equal
// quantizing row ranges separately (blocks do not straddle them here).
func TestQuantizeNF4Parallel(t *testing.T) {
	const rows, cols = 1024, 2048 // 2M elements: above the parallel threshold
	w := inputs(rows*cols, 3, 0.02)
	m, err := QuantizeNF4(w, rows, cols)
	if err != nil {
		t.Fatal(err)
	}
	var packed []byte
	var absmax []float32
	for r := 0; r < rows; r += 256 { // 512K elements each: serial
		part, err := QuantizeNF4(w[r*cols:(r+256)*cols], 256, cols)
		if err != nil {
			t.Fatal(err)
		}
		packed = append(packed, part.Packed...)
		absmax = append(absmax, part.Absmax...)
	}
	if !reflect.DeepEqual(m.Packed, packed) {
		t.Error("packed bytes differ")
	}
	equalBits(t, "absmax", m.Absmax, absmax)
}

// A loaded weight owns its bytes: the checkpoint may be closed afterwards.
func TestLoadBnbNF4Copies(t *testing.T) {
	m, err := QuantizeNF4(inputs(128, 1, 0.1), 2, 64)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := BnbTensors("w", m, true, "bfloat16")
	if err != nil {
		t.Fatal(err)
	}
	ts[0].Data = append([]byte(nil), ts[0].Data...) // the "file" bytes
	got, err := LoadBnbNF4(mapLookup(ts), "w")
	if err != nil {
		t.Fatal(err)
	}
	before := got.Packed[0]
	ts[0].Data[0] ^= 0xFF
	if got.Packed[0] != before {
		t.Error("Packed aliases the tensor data")
	}
}
