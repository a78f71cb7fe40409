package peft

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/internal/pyjson"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// expectedFixture is testdata/<name>/expected.json, written by
// gen_peft_fixtures.py with torch.
type expectedFixture struct {
	Modules map[string]struct {
		Rank, In, Out int
		Scale         float64
		AHead         []float64 `json:"a_head"`
		BHead         []float64 `json:"b_head"`
		Delta         []float64
	}
}

// The loader reads adapters laid out exactly as PEFT saves them and finds
// the tensors, ranks, scalings and LoRA outputs torch computed.
func TestLoadPEFTFixtures(t *testing.T) {
	for _, name := range []string{"peft_list", "peft_regex_rslora"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			var want expectedFixture
			data, err := os.ReadFile(filepath.Join(dir, "expected.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			a, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Modules) != len(want.Modules) {
				t.Fatalf("loaded modules %v, want %d", a.Names(), len(want.Modules))
			}
			for mod, w := range want.Modules {
				m := a.Modules[mod]
				if m == nil {
					t.Fatalf("module %s missing", mod)
				}
				if m.Rank != w.Rank || m.In != w.In || m.Out != w.Out {
					t.Errorf("%s: rank %d [%d->%d], want %d [%d->%d]", mod, m.Rank, m.In, m.Out, w.Rank, w.In, w.Out)
				}
				if got := a.Config.Scale(mod); got != float32(w.Scale) {
					t.Errorf("%s: scale %v, want %v", mod, got, float32(w.Scale))
				}
				for i := range w.AHead {
					if float64(m.A[i]) != w.AHead[i] || float64(m.B[i]) != w.BHead[i] {
						t.Fatalf("%s: A[%d]=%v B[%d]=%v, want %v %v", mod, i, m.A[i], i, m.B[i], w.AHead[i], w.BHead[i])
					}
				}
				// delta = scale · B (A x) with x_j = sin(j+1): checks the [r,in]/[out,r] layouts.
				x := make([]float64, m.In)
				for j := range x {
					x[j] = math.Sin(float64(j + 1))
				}
				for o := range m.Out {
					var d float64
					for r := range m.Rank {
						var ax float64
						for j := range m.In {
							ax += float64(m.A[r*m.In+j]) * x[j]
						}
						d += float64(m.B[o*m.Rank+r]) * ax
					}
					d *= float64(a.Config.Scale(mod))
					if math.Abs(d-w.Delta[o]) > 1e-6*(1+math.Abs(w.Delta[o])) {
						t.Fatalf("%s: delta[%d] = %v, torch %v", mod, o, d, w.Delta[o])
					}
				}
			}
		})
	}
}

// Loading a PEFT-written adapter and saving it again reproduces PEFT's
// files byte for byte (the config always; the weights when they are F32,
// the dtype Save writes).
func TestSaveReproducesPEFTBytes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		sameWeights bool
	}{{"peft_list", true}, {"peft_regex_rslora", false}} {
		src := filepath.Join("testdata", tc.name)
		a, err := Load(src)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "out")
		saveAdapter(t, dst, a)
		files := []string{ConfigName}
		if tc.sameWeights {
			files = append(files, WeightsName)
		}
		for _, f := range files {
			want, _ := os.ReadFile(filepath.Join(src, f))
			got, _ := os.ReadFile(filepath.Join(dst, f))
			if !bytes.Equal(got, want) {
				t.Errorf("%s/%s differs from PEFT's:\n got: %.300s\nwant: %.300s", tc.name, f, got, want)
			}
		}
		b, err := Load(dst)
		if err != nil {
			t.Fatal(err)
		}
		assertSameAdapter(t, b, a)
	}
}

// The config of a fresh adapter is PEFT 0.15.2's rendering of an
// Unsloth-style LoraConfig (testdata/adapter_config.example.peft0.15.2.json,
// written by PEFT 0.15.2's LoraConfig.save_pretrained).
func TestNewConfigMatchesPEFTExample(t *testing.T) {
	want, err := os.ReadFile("testdata/adapter_config.example.peft0.15.2.json")
	if err != nil {
		t.Fatal(err)
	}
	c := NewConfig(16, 16)
	c.BaseModelNameOrPath = "unsloth/llama-3.2-1b-instruct-bnb-4bit"
	got, err := c.marshal()
	if err != nil {
		t.Fatal(err)
	}
	// The example also carries Unsloth's auto_mapping, which NewConfig leaves null.
	var gm, wm map[string]any
	json.Unmarshal(got, &gm)
	json.Unmarshal(want, &wm)
	wm["auto_mapping"] = nil
	if !reflect.DeepEqual(gm, wm) {
		t.Errorf("fields differ:\n got %v\nwant %v", gm, wm)
	}
	// And parsing then writing the example reproduces it byte for byte.
	parsed, err := ParseConfig(want)
	if err != nil {
		t.Fatal(err)
	}
	again, err := parsed.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, want) {
		t.Errorf("re-encoded example differs:\n%s", again)
	}
}

// Save then Load returns the same adapter, bit for bit.
func TestSaveLoadRoundTripBitExact(t *testing.T) {
	a := randomAdapter(16, 32, 1, 0.5, nil)
	a.Config.UseRSLoRA = true
	a.Config.BaseModelNameOrPath = "tiny"
	a.Config.AlphaPattern = map[string]float64{"down_proj": 3.5}
	dir := filepath.Join(t.TempDir(), "a")
	saveAdapter(t, dir, a)
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	assertSameAdapter(t, b, a)
	if b.Config.BaseModelNameOrPath != "tiny" || !b.Config.UseRSLoRA || b.Config.R != 16 || b.Config.LoraAlpha != 32 ||
		!reflect.DeepEqual(b.Config.AlphaPattern, a.Config.AlphaPattern) || !slices.Equal(b.Config.TargetModules, a.Config.TargetModules) {
		t.Errorf("config round trip: %+v", b.Config)
	}
	f, err := safetensors.Open(filepath.Join(dir, WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if md := f.Metadata(); !reflect.DeepEqual(md, map[string]string{"format": "pt"}) {
		t.Errorf("metadata %v", md)
	}
	if n := len(f.Names()); n != 2*7*tiny.Layers {
		t.Errorf("%d tensors, want %d", n, 2*7*tiny.Layers)
	}
	tq, _ := f.Tensor("base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight")
	if tq.DType != safetensors.F32 || !slices.Equal(tq.Shape, []int{32, 16}) {
		t.Errorf("k_proj lora_B: %s %v", tq.DType, tq.Shape)
	}
}

func assertSameAdapter(t *testing.T, got, want *Adapter) {
	t.Helper()
	if !slices.Equal(got.Names(), want.Names()) {
		t.Fatalf("modules %v, want %v", got.Names(), want.Names())
	}
	for name, w := range want.Modules {
		g := got.Modules[name]
		if g.Rank != w.Rank || g.In != w.In || g.Out != w.Out || !slices.Equal(g.A, w.A) || !slices.Equal(g.B, w.B) {
			t.Fatalf("module %s differs", name)
		}
		if got.Config.Scale(name) != want.Config.Scale(name) {
			t.Fatalf("module %s: scale %v, want %v", name, got.Config.Scale(name), want.Config.Scale(name))
		}
	}
}

func TestScale(t *testing.T) {
	c := Config{R: 8, LoraAlpha: 16}
	if got := c.Scale("model.layers.0.self_attn.q_proj"); got != 2 {
		t.Errorf("alpha/r = %v, want 2", got)
	}
	c.UseRSLoRA = true
	if got, want := c.Scale("model.layers.0.self_attn.q_proj"), float32(16/2.8284271247461903); got != want {
		t.Errorf("alpha/sqrt(r) = %v, want %v", got, want)
	}
	c = Config{R: 8, LoraAlpha: 16,
		RankPattern:  map[string]float64{"q_proj": 4, "layers.1.mlp.down_proj": 2},
		AlphaPattern: map[string]float64{"model.layers.0.self_attn.v_proj": 32}}
	for _, tc := range []struct {
		module string
		rank   int
		scale  float32
	}{
		{"model.layers.0.self_attn.q_proj", 4, 4},  // 16/4
		{"model.layers.3.self_attn.q_proj", 4, 4},  // a suffix pattern matches every layer
		{"model.layers.0.self_attn.xq_proj", 8, 2}, // but only at a dot boundary
		{"model.layers.1.mlp.down_proj", 2, 8},     // 16/2
		{"model.layers.11.mlp.down_proj", 8, 2},    // "layers.1." is not "layers.11."
		{"model.layers.0.self_attn.v_proj", 8, 4},  // 32/8
		{"model.layers.10.self_attn.v_proj", 8, 2}, // anchored at the start of a segment
		{"model.layers.0.self_attn.k_proj", 8, 2},  // no pattern
	} {
		if r, s := c.Rank(tc.module), c.Scale(tc.module); r != tc.rank || s != tc.scale {
			t.Errorf("%s: rank %d scale %v, want %d %v", tc.module, r, s, tc.rank, tc.scale)
		}
	}
}

func TestTargets(t *testing.T) {
	list := Config{TargetModules: []string{"q_proj", "mlp.down_proj"}}
	re := Config{TargetModulesRegex: `.*\.(q_proj|v_proj)`}
	for _, tc := range []struct {
		c      Config
		module string
		want   bool
	}{
		{list, "model.layers.0.self_attn.q_proj", true},
		{list, "model.layers.0.mlp.down_proj", true},
		{list, "model.layers.0.self_attn.k_proj", false},
		{list, "model.layers.0.self_attn.xq_proj", false},
		{re, "model.layers.0.self_attn.v_proj", true},
		{re, "model.layers.0.self_attn.o_proj", false},
		{re, "model.layers.0.self_attn.v_proj.extra", false}, // fullmatch
		{Config{TargetModulesRegex: "all-linear"}, "model.layers.0.mlp.up_proj", true},
		{Config{}, "model.layers.0.mlp.up_proj", true}, // null: the tensors decide
	} {
		if got := tc.c.Targets(tc.module); got != tc.want {
			t.Errorf("%+v targets %s = %v", tc.c.TargetModules, tc.module, got)
		}
	}
}

// writeRaw writes an adapter directory from a config and raw tensors.
func writeRaw(t *testing.T, dir, config string, tensors []safetensors.Tensor) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigName), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if tensors != nil {
		if err := safetensors.Write(filepath.Join(dir, WeightsName), tensors, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
}

func f32Tensor(name string, shape []int, v float32) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = v
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: f32Bytes(vals)}
}

func loraPair(module string, rank, in, out int) []safetensors.Tensor {
	return []safetensors.Tensor{
		f32Tensor(TensorKeyPrefix+module+".lora_A.weight", []int{rank, in}, 0.1),
		f32Tensor(TensorKeyPrefix+module+".lora_B.weight", []int{out, rank}, 0.2),
	}
}

// Every refusal of the format: each case must fail to load with an error
// that names the problem.
func TestLoadRefusals(t *testing.T) {
	const okCfg = `{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "k_proj"]}`
	q := "model.layers.0.self_attn.q_proj"
	good := loraPair(q, 4, 64, 64)
	cases := []struct {
		name    string
		config  string
		tensors []safetensors.Tensor
		setup   func(dir string)
		want    string // substring of the error
	}{
		{"not json", `{"r": 4,`, good, nil, "not a JSON object"},
		{"prefix tuning", `{"peft_type": "PREFIX_TUNING"}`, good, nil, `peft_type "PREFIX_TUNING"`},
		{"dora", `{"r": 4, "use_dora": true}`, good, nil, "DoRA"},
		{"bias", `{"r": 4, "bias": "all"}`, good, nil, `bias "all"`},
		{"modules_to_save", `{"r": 4, "modules_to_save": ["lm_head"]}`, good, nil, "modules_to_save"},
		{"fan_in_fan_out", `{"r": 4, "fan_in_fan_out": true}`, good, nil, "fan_in_fan_out"},
		{"rank zero", `{"r": 0}`, good, nil, "r must be a positive integer"},
		{"rank fraction", `{"r": 2.5}`, good, nil, "r must be a positive integer"},
		{"bad regex", `{"r": 4, "target_modules": ".*(?!k_proj)"}`, good, nil, "not a regular expression"},
		{"regex excludes tensor", `{"r": 4, "target_modules": ".*\\.v_proj"}`, good, nil, "not selected by target_modules"},
		{"list excludes tensor", `{"r": 4, "target_modules": ["v_proj"]}`, good, nil, "not selected by target_modules"},
		{"rank vs config", `{"r": 8}`, good, nil, "rank 4, but adapter_config.json gives it r=8"},
		{"rank vs rank_pattern", `{"r": 4, "rank_pattern": {"q_proj": 2}}`, good, nil, "gives it r=2"},
		{"no config", "", good, func(dir string) { os.Remove(filepath.Join(dir, ConfigName)) }, "no adapter_config.json"},
		{"pickle bin", okCfg, nil, func(dir string) {
			os.WriteFile(filepath.Join(dir, PickleName), []byte("\x80\x02}q\x00."), 0o644)
		}, "pickled"},
		{"no weights", okCfg, nil, nil, "no adapter_model.safetensors"},
		{"truncated safetensors", okCfg, good, func(dir string) {
			p := filepath.Join(dir, WeightsName)
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-10], 0o644)
		}, "corrupt"},
		{"garbage safetensors", okCfg, nil, func(dir string) {
			os.WriteFile(filepath.Join(dir, WeightsName), []byte("\xff\xff\xff\xff\xff\xff\xff\x7fnot a header"), 0o644)
		}, "corrupt"},
		{"embedding tensor", okCfg, append(slices.Clone(good), f32Tensor("base_model.model.model.embed_tokens.weight", []int{8, 64}, 0)), nil, "not a LoRA matrix"},
		{"dora magnitude", okCfg, append(slices.Clone(good), f32Tensor(TensorKeyPrefix+q+".lora_magnitude_vector", []int{64}, 0)), nil, "DoRA"},
		{"adapter name in key", okCfg, []safetensors.Tensor{f32Tensor(TensorKeyPrefix+q+".lora_A.default.weight", []int{4, 64}, 0)}, nil, "adapter name"},
		{"A without B", okCfg, good[:1], nil, "no lora_B"},
		{"rank disagreement", okCfg, []safetensors.Tensor{good[0], f32Tensor(TensorKeyPrefix+q+".lora_B.weight", []int{64, 3}, 0)}, nil, "lora_A is [4 64]"},
		{"nan", okCfg, []safetensors.Tensor{good[0], f32Tensor(TensorKeyPrefix+q+".lora_B.weight", []int{64, 4}, float32(math.NaN()))}, nil, "NaN"},
		{"int tensor", okCfg, []safetensors.Tensor{good[0], {Name: TensorKeyPrefix + q + ".lora_B.weight", DType: safetensors.I32, Shape: []int{64, 4}, Data: make([]byte, 4*256)}}, nil, "must be F32, F16, BF16 or F64"},
		{"no tensors", okCfg, []safetensors.Tensor{}, nil, "no LoRA tensors"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			writeRaw(t, dir, tc.config, tc.tensors)
			if tc.setup != nil {
				tc.setup(dir)
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// Unknown config keys (later PEFT versions) are tolerated, and F16/BF16/F64
// weights load exactly.
func TestLoadToleratesAndConverts(t *testing.T) {
	q := "model.layers.0.self_attn.q_proj"
	cfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], "peft_version": "0.18.0", "alora_invocation_tokens": null}`
	a16 := []uint16{0x3c00, 0xc000, 0x3800, 0x0001} // F16: 1, -2, 0.5, 2^-24
	b16 := []uint16{0x3f80, 0xc040, 0x3e80, 0x0001} // BF16: 1, -3, 0.25, 2^-133
	enc16 := func(v []uint16, n int) []byte {
		out := make([]byte, 0, 2*n)
		for i := range n {
			x := v[i%len(v)]
			out = append(out, byte(x), byte(x>>8))
		}
		return out
	}
	f64 := func(v float64, n int) []byte {
		out := make([]byte, 8*n)
		for i := range n {
			bits := math.Float64bits(v)
			for k := range 8 {
				out[8*i+k] = byte(bits >> (8 * k))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		a, b  safetensors.Tensor
		wantA []float32
		wantB []float32
	}{
		{"f16-bf16",
			safetensors.Tensor{Name: TensorKeyPrefix + q + ".lora_A.weight", DType: safetensors.F16, Shape: []int{2, 64}, Data: enc16(a16, 128)},
			safetensors.Tensor{Name: TensorKeyPrefix + q + ".lora_B.weight", DType: safetensors.BF16, Shape: []int{64, 2}, Data: enc16(b16, 128)},
			[]float32{1, -2, 0.5, float32(math.Ldexp(1, -24))}, []float32{1, -3, 0.25, float32(math.Ldexp(1, -133))}},
		{"f64",
			safetensors.Tensor{Name: TensorKeyPrefix + q + ".lora_A.weight", DType: safetensors.F64, Shape: []int{2, 64}, Data: f64(0.125, 128)},
			safetensors.Tensor{Name: TensorKeyPrefix + q + ".lora_B.weight", DType: safetensors.F64, Shape: []int{64, 2}, Data: f64(-1.5, 128)},
			[]float32{0.125, 0.125, 0.125, 0.125}, []float32{-1.5, -1.5, -1.5, -1.5}},
	} {
		dir := filepath.Join(t.TempDir(), tc.name)
		writeRaw(t, dir, cfg, []safetensors.Tensor{tc.a, tc.b})
		a, err := Load(dir)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		m := a.Modules[q]
		if !slices.Equal(m.A[:4], tc.wantA) || !slices.Equal(m.B[:4], tc.wantB) {
			t.Errorf("%s: A %v B %v, want %v %v", tc.name, m.A[:4], m.B[:4], tc.wantA, tc.wantB)
		}
		if a.Config.Scale(q) != 2 {
			t.Errorf("%s: scale %v", tc.name, a.Config.Scale(q))
		}
	}
}

func TestIntegralAsInt(t *testing.T) {
	// Python's repr of these floats, integral values as integers (as Unsloth writes them).
	for f, want := range map[float64]string{
		0: "0", 16: "16", -3: "-3", 0.05: "0.05", 1e-05: "1e-05", 0.0001: "0.0001", 1.5e16: "1.5e+16",
		123456.789: "123456.789", 1e-100: "1e-100", 0.30000000000000004: "0.30000000000000004", 1e16: "1e+16",
	} {
		v, err := integralAsInt(map[string]any{"x": []any{f}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := pyjson.Marshal(v, pyjson.Options{})
		if want := `{"x": [` + want + `]}`; err != nil || string(got) != want {
			t.Errorf("%v: %s, %v, want %s", f, got, err, want)
		}
	}
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if _, err := integralAsInt(map[string]any{"lora_alpha": f}); err == nil {
			t.Errorf("%v accepted", f)
		}
	}
}
