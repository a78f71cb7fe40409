package peft

import (
	"bytes"
	"maps"
	"slices"
	"testing"
)

// sameConfig compares the fields of two configs that change what an
// adapter computes (a nil and an empty target list differ: all modules
// against none).
func sameConfig(a, b Config) bool {
	return a.PeftType == b.PeftType && a.TaskType == b.TaskType && a.BaseModelNameOrPath == b.BaseModelNameOrPath &&
		a.R == b.R && a.LoraAlpha == b.LoraAlpha && a.UseRSLoRA == b.UseRSLoRA &&
		(a.TargetModules == nil) == (b.TargetModules == nil) && slices.Equal(a.TargetModules, b.TargetModules) &&
		a.TargetModulesRegex == b.TargetModulesRegex && a.LoraDropout == b.LoraDropout && a.Bias == b.Bias &&
		maps.Equal(a.RankPattern, b.RankPattern) && maps.Equal(a.AlphaPattern, b.AlphaPattern)
}

// ParseConfig never panics, and every config it accepts is written by
// Save's marshal into one it reads back the same, and that one is written
// again byte for byte (the seed corpus is in testdata/fuzz/FuzzParseConfig).
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		out, err := c.marshal()
		if err != nil {
			t.Fatalf("accepted config cannot be written: %v\n%s", err, data)
		}
		back, err := ParseConfig(out)
		if err != nil {
			t.Fatalf("written config is refused: %v\n%s", err, out)
		}
		if !sameConfig(c, back) {
			t.Fatalf("config changed through marshal:\n%+v\n%+v\n%s", c, back, out)
		}
		again, err := back.marshal()
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("second marshal differs (%v):\n%s\n%s", err, out, again)
		}
	})
}
