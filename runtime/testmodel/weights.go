package testmodel

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/parrot-llm/parrot/runtime/quant"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// tensorSpec is one weight of the model, by its Hugging Face name.
type tensorSpec struct {
	name  string
	shape []int // [out, in] for matrices
	norm  bool  // an RMSNorm weight: 1 + noise instead of noise
	proj  bool  // one of the 7 linear projections of a layer (quantized under Options.Quantize)
}

func (s tensorSpec) numel() int {
	n := 1
	for _, d := range s.shape {
		n *= d
	}
	return n
}

func specs(o Options) []tensorSpec {
	h, q, kv := o.Hidden, o.Heads*o.HeadDim, o.KVHeads*o.HeadDim
	ts := []tensorSpec{{name: "model.embed_tokens.weight", shape: []int{o.Vocab, h}}}
	for l := 0; l < o.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			tensorSpec{name: p + "input_layernorm.weight", shape: []int{h}, norm: true},
			tensorSpec{name: p + "self_attn.q_proj.weight", shape: []int{q, h}, proj: true},
			tensorSpec{name: p + "self_attn.k_proj.weight", shape: []int{kv, h}, proj: true},
			tensorSpec{name: p + "self_attn.v_proj.weight", shape: []int{kv, h}, proj: true},
			tensorSpec{name: p + "self_attn.o_proj.weight", shape: []int{h, q}, proj: true},
			tensorSpec{name: p + "post_attention_layernorm.weight", shape: []int{h}, norm: true},
			tensorSpec{name: p + "mlp.gate_proj.weight", shape: []int{o.Intermediate, h}, proj: true},
			tensorSpec{name: p + "mlp.up_proj.weight", shape: []int{o.Intermediate, h}, proj: true},
			tensorSpec{name: p + "mlp.down_proj.weight", shape: []int{h, o.Intermediate}, proj: true},
		)
	}
	ts = append(ts, tensorSpec{name: "model.norm.weight", shape: []int{h}, norm: true})
	if !o.Tied {
		ts = append(ts, tensorSpec{name: "lm_head.weight", shape: []int{o.Vocab, h}})
	}
	return ts
}

// TensorNames lists the model's weights in Hugging Face naming (the float
// names: a quantized projection is stored as that name plus its bnb tensors).
func TensorNames(o Options) []string {
	var names []string
	for _, s := range specs(o) {
		names = append(names, s.name)
	}
	return names
}

// FloatTensor returns the shape and float32 values of the named weight
// before they are stored: approximately N(0, 0.02) noise (see gaussish), or
// 1 + that noise for RMSNorm weights. A bfloat16 or quantized model stores
// these values rounded to bfloat16 (and then quantized). The values are a pure function of
// (o.Seed, name): PCG-DXSM streams keyed by the name's FNV-1a hash.
func FloatTensor(o Options, name string) ([]int, []float32, error) {
	for _, s := range specs(o) {
		if s.name == name {
			v := make([]float32, s.numel())
			fillValues(o.Seed, s, 0, len(v), func(lo int, vals []float32) { copy(v[lo:], vals) })
			return append([]int(nil), s.shape...), v, nil
		}
	}
	return nil, nil, fmt.Errorf("testmodel: no tensor %q in this model", name)
}

// gaussish maps 64 random bits to an approximately normal value with mean 0
// and standard deviation 0.02: the sum of four 16-bit uniforms (Irwin-Hall,
// variance 1/3) rescaled, so bounded at ±3.46 standard deviations. It is
// several times cheaper than an exact normal, which matters for 1.2 billion
// weights.
func gaussish(bits uint64) float64 {
	// Σ (u_k + 0.5)/65536 over the four 16-bit fields u_k, computed exactly.
	sum := bits&0xFFFF + bits>>16&0xFFFF + bits>>32&0xFFFF + bits>>48 + 2
	const scale = 0.034641016151377546 // 0.02·√3
	// The conversion rounds the product: no fused multiply-add.
	return float64((float64(sum)/65536 - 2) * scale)
}

// chunk is the number of consecutive elements drawn from one PRNG stream;
// streams are independent, so chunks can be generated in parallel.
const chunk = 1 << 16

// fillValues generates elements [off, off+n) of tensor s (off a multiple of
// chunk) in parallel, one chunk at a time, handing each chunk to emit with
// its position relative to off. emit is called concurrently on disjoint
// ranges.
func fillValues(seed uint64, s tensorSpec, off, n int, emit func(lo int, vals []float32)) {
	h := fnv.New64a()
	h.Write([]byte(s.name))
	key := seed ^ h.Sum64()
	nchunks := (n + chunk - 1) / chunk
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < min(runtime.GOMAXPROCS(0), nchunks); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]float32, chunk)
			for {
				i := int(next.Add(1) - 1)
				if i >= nchunks {
					return
				}
				v := vals[:min(chunk, n-i*chunk)]
				r := rand.NewPCG(key, uint64(off/chunk+i))
				for j := range v {
					x := gaussish(r.Uint64())
					if s.norm {
						x += 1
					}
					v[j] = float32(x)
				}
				emit(i*chunk, v)
			}
		}()
	}
	wg.Wait()
}

// writeWeights writes model.safetensors, streaming each float tensor in
// windows so that the file is never held in memory. Quantized projections
// are quantized first (their quant_state JSON length is needed for the
// header) and held packed, ~0.5 bytes per weight.
func writeWeights(dir string, o Options) error {
	var st []safetensors.StreamTensor
	dtype, esize := safetensors.F32, 4
	if o.DType == "bfloat16" {
		dtype, esize = safetensors.BF16, 2
	}
	var buf []float32
	for _, s := range specs(o) {
		if !(s.proj && o.Quantize) {
			s := s
			st = append(st, safetensors.StreamTensor{Name: s.name, DType: dtype, Shape: s.shape,
				WriteData: func(w io.Writer) error { return streamFloats(w, o.Seed, s, esize) }})
			continue
		}
		if cap(buf) < s.numel() {
			buf = make([]float32, s.numel())
		}
		v := buf[:s.numel()]
		bf16 := dtype == safetensors.BF16
		fillValues(o.Seed, s, 0, len(v), func(lo int, vals []float32) {
			for i, x := range vals {
				if bf16 { // quantize what a bfloat16 checkpoint holds
					x = safetensors.BF16ToFloat32(safetensors.Float32ToBF16(x))
				}
				v[lo+i] = x
			}
		})
		m, err := quant.QuantizeNF4(v, s.shape[0], s.shape[1])
		if err != nil {
			return err
		}
		ts, err := quant.BnbTensors(s.name, m, true, o.DType)
		if err != nil {
			return err
		}
		for _, t := range ts {
			t := t
			st = append(st, safetensors.StreamTensor{Name: t.Name, DType: t.DType, Shape: t.Shape,
				WriteData: func(w io.Writer) error { _, err := w.Write(t.Data); return err }})
		}
	}
	return safetensors.WriteStream(filepath.Join(dir, "model.safetensors"), st, map[string]string{"format": "pt"})
}

// streamFloats generates tensor s window by window and writes it as
// little-endian float32 (esize 4) or bfloat16 (esize 2); the next window is
// generated while the current one is written.
func streamFloats(w io.Writer, seed uint64, s tensorSpec, esize int) error {
	const window = 64 * chunk
	n := s.numel()
	encode := func(off int, out []byte) []byte {
		m := min(window, n-off)
		fillValues(seed, s, off, m, func(lo int, vals []float32) {
			b := out[esize*lo:]
			for i, x := range vals {
				if esize == 2 {
					binary.LittleEndian.PutUint16(b[2*i:], safetensors.Float32ToBF16(x))
				} else {
					binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
				}
			}
		})
		return out[:esize*m]
	}
	bufs := [2][]byte{make([]byte, esize*min(window, n)), make([]byte, esize*min(window, n))}
	cur := encode(0, bufs[0])
	for off, k := 0, 0; off < n; off, k = off+window, k+1 {
		var next []byte
		done := make(chan struct{})
		go func() {
			defer close(done)
			if off+window < n {
				next = encode(off+window, bufs[(k+1)%2])
			}
		}()
		_, err := w.Write(cur)
		<-done
		if err != nil {
			return err
		}
		cur = next
	}
	return nil
}
