package adapters

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
)

// The adapters PEFT wrote for testmodel.Tiny fit its projections.
func TestValidatePEFTFixtures(t *testing.T) {
	base := tinyConfig(t)
	for _, name := range []string{"peft_list", "peft_regex_rslora"} {
		a, err := loadDir(filepath.Join("peft", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := Validate(a, base); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Every refusal of an adapter that does not fit the base model.
func TestValidateRefusals(t *testing.T) {
	base := tinyConfig(t) // hidden 64, 2 layers, k/v projections of 32
	one := func(name string, in, out int) *peft.Adapter {
		m := &peft.Module{Name: name, Rank: 4, In: in, Out: out, A: make([]float32, 4*in), B: make([]float32, out*4)}
		return &peft.Adapter{Config: peft.NewConfig(4, 8), Modules: map[string]*peft.Module{name: m}}
	}
	q := "model.layers.0.self_attn.q_proj"
	if err := Validate(one(q, 64, 64), base); err != nil {
		t.Fatalf("a fitting adapter: %v", err)
	}
	for _, tc := range []struct {
		name string
		a    *peft.Adapter
		want string // substring of the error
	}{
		{"no modules", &peft.Adapter{Config: peft.NewConfig(4, 8)}, "no modules"},
		{"layer count", one("model.layers.2.self_attn.q_proj", 64, 64), "layer 2, but the base model has 2 layers"},
		{"unknown module", one("model.layers.0.self_attn.rotary_proj", 64, 64), "not a projection of a Llama model"},
		{"lm_head", one("lm_head", 64, 1024), "not a projection"},
		{"leading zero", one("model.layers.00.self_attn.q_proj", 64, 64), "not a projection"},
		{"wrong in", one(q, 32, 64), "maps 32 to 64 features, but the base projection maps 64 to 64"},
		{"wrong out", one("model.layers.1.self_attn.k_proj", 64, 64), "maps 64 to 64 features, but the base projection maps 64 to 32"},
	} {
		if err := Validate(tc.a, base); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestCheckRank(t *testing.T) {
	a := randomAdapter(tinyConfig(t), 16, 16, 1, 0.1, []string{"self_attn.q_proj"})
	if err := checkRank(a, 16); err != nil {
		t.Fatal(err)
	}
	if err := checkRank(a, 8); err == nil || !strings.Contains(err.Error(), "rank 16, above the maximum LoRA rank 8") {
		t.Fatalf("rank 16 with max 8: %v", err)
	}
}

// The server's reader refuses what peft.Load refuses, naming the files but
// no path.
func TestLoadDirRefusals(t *testing.T) {
	good := randomAdapter(tinyConfig(t), 4, 8, 1, 0.1, []string{"self_attn.q_proj"})
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string // substring of the error
	}{
		{"no config", func(dir string) { os.Remove(filepath.Join(dir, peft.ConfigName)) }, "no adapter_config.json"},
		{"bad config", func(dir string) { os.WriteFile(filepath.Join(dir, peft.ConfigName), []byte(`{"r": 4,`), 0o644) }, "not a JSON object"},
		{"pickle bin", func(dir string) {
			os.Remove(filepath.Join(dir, peft.WeightsName))
			os.WriteFile(filepath.Join(dir, peft.PickleName), []byte("\x80\x02}q\x00."), 0o644)
		}, "pickled"},
		{"no weights", func(dir string) { os.Remove(filepath.Join(dir, peft.WeightsName)) }, "no adapter_model.safetensors"},
		{"truncated weights", func(dir string) { os.Truncate(filepath.Join(dir, peft.WeightsName), 100) }, "corrupt"},
		{"rank vs config", func(dir string) { os.WriteFile(filepath.Join(dir, peft.ConfigName), []byte(`{"r": 8}`), 0o644) }, "gives it r=8"},
	} {
		dir := filepath.Join(t.TempDir(), "a")
		saveAdapter(t, dir, good)
		tc.setup(dir)
		_, err := loadDir(dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), dir) {
			t.Errorf("%s: error %q names the server path", tc.name, err)
		}
	}
}
