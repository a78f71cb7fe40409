package quant

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/parrot-llm/parrot/internal/pyjson"
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// Lookup finds a tensor by name, e.g. (*safetensors.Set).Tensor.
type Lookup func(name string) (safetensors.Tensor, bool)

// QuantState is the JSON a bitsandbytes checkpoint stores in
// "<weight>.quant_state.bitsandbytes__<quant_type>" (bitsandbytes
// functional.py QuantState.as_dict, packed by utils.py pack_dict_to_tensor).
type QuantState struct {
	QuantType       string  // "nf4" or "fp4"
	Blocksize       int     // 64 for every checkpoint this runtime reads
	DType           string  // dtype of the weight before quantization: "bfloat16", "float16", "float32"
	Shape           []int   // [out, in]
	Nested          bool    // double quantization: the three fields below are set
	NestedBlocksize int     // 256
	NestedDType     string  // "float32"
	NestedOffset    float32 // mean of the first-level absmax
}

const quantStateKey = ".quant_state.bitsandbytes__"

// IsBnbQuantized reports whether the weight named prefix (e.g.
// "model.layers.0.self_attn.q_proj.weight") is stored as a bitsandbytes
// 4-bit weight, i.e. whether its quant_state tensor exists (the rule
// transformers applies).
func IsBnbQuantized(lookup Lookup, prefix string) bool {
	_, nf4 := lookup(prefix + quantStateKey + "nf4")
	_, fp4 := lookup(prefix + quantStateKey + "fp4")
	return nf4 || fp4
}

// ReadQuantState finds and parses the quant_state JSON of the weight prefix.
func ReadQuantState(lookup Lookup, prefix string) (*QuantState, error) {
	var found []string
	var raw safetensors.Tensor
	for _, qt := range []string{"nf4", "fp4"} {
		if t, ok := lookup(prefix + quantStateKey + qt); ok {
			found, raw = append(found, qt), t
		}
	}
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("quant: %s: no %snf4 or fp4 tensor: not a bitsandbytes 4-bit weight", prefix, quantStateKey)
	case 2:
		return nil, fmt.Errorf("quant: %s: has both nf4 and fp4 quant states", prefix)
	}
	qs, err := parseQuantState(raw.Data)
	if err != nil {
		return nil, fmt.Errorf("quant: %s: %w", raw.Name, err)
	}
	if qs.QuantType != found[0] {
		return nil, fmt.Errorf("quant: %s: quant_type %q in a tensor named for %q", raw.Name, qs.QuantType, found[0])
	}
	return qs, nil
}

func parseQuantState(js []byte) (*QuantState, error) {
	var j struct {
		QuantType       *string  `json:"quant_type"`
		Blocksize       *int     `json:"blocksize"`
		DType           *string  `json:"dtype"`
		Shape           []int    `json:"shape"`
		NestedBlocksize *int     `json:"nested_blocksize"`
		NestedDType     *string  `json:"nested_dtype"`
		NestedOffset    *float64 `json:"nested_offset"`
	}
	if err := json.Unmarshal(js, &j); err != nil {
		return nil, fmt.Errorf("bad quant_state JSON: %w", err)
	}
	if j.QuantType == nil || j.Blocksize == nil || j.DType == nil || j.Shape == nil {
		return nil, fmt.Errorf("quant_state JSON %s lacks quant_type, blocksize, dtype or shape", js)
	}
	qs := &QuantState{QuantType: *j.QuantType, Blocksize: *j.Blocksize, DType: *j.DType, Shape: j.Shape}
	if j.NestedOffset != nil || j.NestedBlocksize != nil {
		if j.NestedOffset == nil || j.NestedBlocksize == nil {
			return nil, fmt.Errorf("quant_state JSON %s has only some nested_* fields", js)
		}
		qs.Nested = true
		qs.NestedBlocksize = *j.NestedBlocksize
		qs.NestedOffset = float32(*j.NestedOffset)
		if j.NestedDType != nil {
			qs.NestedDType = *j.NestedDType
		}
	}
	return qs, nil
}

// LoadBnbNF4 reads the bitsandbytes 4-bit weight named prefix (e.g.
// "model.layers.0.self_attn.q_proj.weight") from a checkpoint's tensors:
// prefix itself (the packed codes, U8 [(N+1)/2, 1], or another storage dtype
// whose bytes are reinterpreted), prefix+".quant_map", prefix+".absmax" and,
// with double quantization, prefix+".nested_absmax" and
// prefix+".nested_quant_map". Every size is checked against the shape in the
// quant_state JSON. Code is the stored quant_map, so FP4 weights load too.
// Absmax is returned dequantized (bitsandbytes functional.py
// dequantize_4bit). Packed is a copy, so the file may be closed once the
// weight is loaded.
func LoadBnbNF4(lookup Lookup, prefix string) (*kernels.NF4Matrix, error) {
	qs, err := ReadQuantState(lookup, prefix)
	if err != nil {
		return nil, err
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("quant: %s: %s", prefix, fmt.Sprintf(format, a...))
	}
	if qs.Blocksize != kernels.NF4BlockSize {
		return nil, fail("blocksize %d, only %d is supported", qs.Blocksize, kernels.NF4BlockSize)
	}
	if len(qs.Shape) != 2 || qs.Shape[0] <= 0 || qs.Shape[1] <= 0 || qs.Shape[0] > math.MaxInt32 || qs.Shape[1] > math.MaxInt32 {
		return nil, fail("shape %v is not a [out, in] matrix", qs.Shape)
	}
	rows, cols := qs.Shape[0], qs.Shape[1]
	n := rows * cols
	nblocks := (n + kernels.NF4BlockSize - 1) / kernels.NF4BlockSize

	w, ok := lookup(prefix)
	if !ok {
		return nil, fail("packed weight tensor missing")
	}
	if len(w.Data) != (n+1)/2 {
		return nil, fail("packed weight has %d bytes, want %d for shape %v", len(w.Data), (n+1)/2, qs.Shape)
	}
	m := &kernels.NF4Matrix{Rows: rows, Cols: cols, Packed: append([]byte(nil), w.Data...)}

	qmap, err := floats(lookup, prefix+".quant_map", 16)
	if err != nil {
		return nil, err
	}
	copy(m.Code[:], qmap)

	at, ok := lookup(prefix + ".absmax")
	if !ok {
		return nil, fail("absmax tensor missing")
	}
	if _, nested := lookup(prefix + ".nested_absmax"); !nested {
		if qs.Nested {
			return nil, fail("quant_state has nested fields but there is no nested_absmax tensor")
		}
		if m.Absmax, err = floats(lookup, prefix+".absmax", nblocks); err != nil {
			return nil, err
		}
		return m, nil
	}
	if !qs.Nested {
		return nil, fail("nested_absmax tensor present but quant_state has no nested_offset")
	}
	if at.DType != safetensors.U8 || len(at.Data) != nblocks {
		return nil, fail("nested absmax must be U8 [%d], got %s %v", nblocks, at.DType, at.Shape)
	}
	if qs.NestedBlocksize <= 0 {
		return nil, fail("nested_blocksize %d", qs.NestedBlocksize)
	}
	nested, err := floats(lookup, prefix+".nested_absmax", (nblocks+qs.NestedBlocksize-1)/qs.NestedBlocksize)
	if err != nil {
		return nil, err
	}
	nqm, err := floats(lookup, prefix+".nested_quant_map", 256)
	if err != nil {
		return nil, err
	}
	var code [256]float32
	copy(code[:], nqm)
	if m.Absmax, err = dequantizeAbsmax(at.Data, nested, &code, qs.NestedOffset, qs.NestedBlocksize); err != nil {
		return nil, fail("%v", err)
	}
	return m, nil
}

// floats reads a float tensor (F32, BF16 or F16) of exactly n elements.
func floats(lookup Lookup, name string, n int) ([]float32, error) {
	t, ok := lookup(name)
	if !ok {
		return nil, fmt.Errorf("quant: tensor %s missing", name)
	}
	v, err := safetensors.ToFloat32(t)
	if err != nil {
		return nil, fmt.Errorf("quant: %w", err)
	}
	if len(v) != n {
		return nil, fmt.Errorf("quant: tensor %s has %d values (shape %v), want %d", name, len(v), t.Shape, n)
	}
	return v, nil
}

// BnbTensors returns the tensors bitsandbytes saves for the 4-bit weight
// prefix (bitsandbytes nn/modules.py Linear4bit._save_to_state_dict): prefix
// (U8 [(N+1)/2, 1]), prefix+".absmax", ".quant_map", with doubleQuant
// ".nested_absmax" and ".nested_quant_map", and
// ".quant_state.bitsandbytes__nf4" (or __fp4 when m.Code is the FP4 table)
// holding the JSON exactly as Python's json.dumps writes it. m.Absmax must be
// the exact first-level scales (as QuantizeNF4 returns them); with
// doubleQuant they are quantized by DoubleQuantize. dtype is the weight's
// dtype before quantization: "bfloat16", "float16" or "float32".
func BnbTensors(prefix string, m *kernels.NF4Matrix, doubleQuant bool, dtype string) ([]safetensors.Tensor, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("quant: %s: %w", prefix, err)
	}
	switch dtype {
	case "bfloat16", "float16", "float32":
	default:
		return nil, fmt.Errorf("quant: %s: dtype %q is not bfloat16, float16 or float32", prefix, dtype)
	}
	var quantType string
	switch m.Code {
	case kernels.NF4Code:
		quantType = "nf4"
	case fp4Code:
		quantType = "fp4"
	default:
		return nil, fmt.Errorf("quant: %s: code book is neither the NF4 nor the FP4 table", prefix)
	}
	nblocks := len(m.Absmax)
	ts := []safetensors.Tensor{
		{Name: prefix, DType: safetensors.U8, Shape: []int{len(m.Packed), 1}, Data: m.Packed},
	}
	js := fmt.Sprintf(`{"quant_type": "%s", "blocksize": %d, "dtype": "%s", "shape": [%d, %d]`,
		quantType, kernels.NF4BlockSize, dtype, m.Rows, m.Cols)
	if doubleQuant {
		codes, nested, offset := DoubleQuantize(m.Absmax)
		dyn := SignedDynamicMap()
		ts = append(ts,
			safetensors.Tensor{Name: prefix + ".absmax", DType: safetensors.U8, Shape: []int{nblocks}, Data: codes},
			f32Tensor(prefix+".quant_map", m.Code[:]),
			f32Tensor(prefix+".nested_absmax", nested),
			f32Tensor(prefix+".nested_quant_map", dyn[:]))
		js += fmt.Sprintf(`, "nested_blocksize": %d, "nested_dtype": "float32", "nested_offset": %s`,
			NestedBlockSize, pyjson.FloatRepr(float64(offset)))
	} else {
		ts = append(ts,
			f32Tensor(prefix+".absmax", m.Absmax),
			f32Tensor(prefix+".quant_map", m.Code[:]))
	}
	js += "}"
	ts = append(ts, safetensors.Tensor{Name: prefix + quantStateKey + quantType, DType: safetensors.U8,
		Shape: []int{len(js)}, Data: []byte(js)})
	return ts, nil
}

func f32Tensor(name string, v []float32) safetensors.Tensor {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: []int{len(v)}, Data: b}
}

// BnbWeightNames returns, in the order given, the weight names (prefixes) of
// every bitsandbytes 4-bit weight among a checkpoint's tensor names.
func BnbWeightNames(names []string) []string {
	var out []string
	for _, name := range names {
		i := strings.LastIndex(name, quantStateKey)
		if i < 0 {
			continue
		}
		switch name[i+len(quantStateKey):] {
		case "nf4", "fp4":
			out = append(out, name[:i])
		}
	}
	return out
}
