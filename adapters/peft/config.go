package peft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/parrot-llm/parrot/internal/pyjson"
)

// File names of a PEFT adapter directory (peft/utils/constants.py).
const (
	ConfigName      = "adapter_config.json"
	WeightsName     = "adapter_model.safetensors"
	PickleName      = "adapter_model.bin" // legacy torch.save format; refused
	TensorKeyPrefix = "base_model.model." // of every tensor name (peft/utils/save_and_load.py)
)

// Config is an adapter_config.json (PEFT LoraConfig). Only the fields that
// change what the adapter computes are modelled; the rest of PEFT's field
// set is kept as read and written back by Save.
type Config struct {
	PeftType            string  // "LORA" ("" is written as "LORA")
	TaskType            string  // e.g. "CAUSAL_LM"; "" = null
	BaseModelNameOrPath string  // "" = null
	R                   int     // rank of every module not in RankPattern
	LoraAlpha           float64 // alpha of every module not in AlphaPattern
	UseRSLoRA           bool    // scale alpha/√r instead of alpha/r
	// TargetModules is the list form of target_modules: a module is targeted
	// if its name equals an entry or ends with "."+entry. TargetModulesRegex
	// is the string form: a regex the whole module name must match. At most
	// one is set; neither means target_modules was null.
	TargetModules      []string
	TargetModulesRegex string
	LoraDropout        float64 // training only
	Bias               string  // only "none" is supported ("" is written as "none")
	// RankPattern and AlphaPattern override r and lora_alpha for the modules
	// whose name matches a key at a dot boundary (PEFT get_pattern_key:
	// `(.*\.)?(key)$`); keys are tried in sorted order, the order PEFT wrote them.
	RankPattern  map[string]float64
	AlphaPattern map[string]float64

	raw map[string]any // every key as read (json.Number for numbers); Save re-emits unchanged values verbatim
}

// NewConfig returns the configuration Unsloth's get_peft_model writes for a
// Llama: rank r, alpha, no dropout, the seven projections, task CAUSAL_LM.
func NewConfig(r int, alpha float64) Config {
	return Config{
		PeftType: "LORA", TaskType: "CAUSAL_LM", R: r, LoraAlpha: alpha, Bias: "none",
		TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
	}
}

// Rank is the rank PEFT gives module (r, or its rank_pattern override).
func (c *Config) Rank(module string) int {
	if k, ok := patternKey(c.RankPattern, module); ok {
		return int(c.RankPattern[k])
	}
	return c.R
}

// Alpha is the lora_alpha PEFT gives module (or its alpha_pattern override).
func (c *Config) Alpha(module string) float64 {
	if k, ok := patternKey(c.AlphaPattern, module); ok {
		return c.AlphaPattern[k]
	}
	return c.LoraAlpha
}

// Scale is the factor PEFT multiplies B·A·x by for module: alpha/r, or
// alpha/√r with use_rslora, after the rank and alpha patterns
// (tuners/lora/layer.py update_layer).
func (c *Config) Scale(module string) float32 {
	r, alpha := float64(c.Rank(module)), c.Alpha(module)
	if r <= 0 {
		return 0
	}
	if c.UseRSLoRA {
		return float32(alpha / math.Sqrt(r))
	}
	return float32(alpha / r)
}

// Targets reports whether target_modules selects module (PEFT
// check_target_module_exists). A null target_modules selects everything:
// the tensors alone then say what the adapter touches.
func (c *Config) Targets(module string) bool {
	if c.TargetModulesRegex != "" {
		if c.TargetModulesRegex == "all-linear" {
			return true // PEFT expands it to every linear layer but the output head
		}
		re, err := regexp.Compile(`^(?:` + c.TargetModulesRegex + `)$`)
		return err == nil && re.MatchString(module)
	}
	if c.TargetModules == nil {
		return true
	}
	for _, t := range c.TargetModules {
		if module == t || strings.HasSuffix(module, "."+t) {
			return true
		}
	}
	return false
}

// patternKey returns the first key of patterns (in sorted order) that
// matches module at a dot boundary.
func patternKey(patterns map[string]float64, module string) (string, bool) {
	keys := make([]string, 0, len(patterns))
	for k := range patterns {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		re, err := regexp.Compile(`^(.*\.)?(?:` + k + `)$`)
		if err == nil && re.MatchString(module) {
			return k, true
		}
	}
	return "", false
}

// maxConfigRank bounds the ranks a config may give, far above any real
// one (vLLM serves up to 512), so that they convert to int exactly.
const maxConfigRank = 1 << 20

// ParseConfig reads an adapter_config.json. Unknown keys are tolerated (as
// PEFT >= 0.14 does); settings that change the computation in ways parrot
// cannot reproduce (DoRA, biases, modules_to_save, fan_in_fan_out, layer
// replication) are refused.
func ParseConfig(data []byte) (Config, error) {
	fail := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%s: %s", ConfigName, fmt.Sprintf(format, args...))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw map[string]any
	if err := dec.Decode(&raw); err != nil {
		return fail("not a JSON object: %v", err)
	}
	if raw == nil {
		return fail("not a JSON object")
	}
	c := Config{raw: raw, PeftType: "LORA", R: 8, LoraAlpha: 8, Bias: "none"} // LoraConfig defaults
	var err error
	str := func(key string, dst *string) {
		if err != nil {
			return
		}
		switch v := raw[key].(type) {
		case nil:
		case string:
			*dst = v
		default:
			err = fmt.Errorf("%s: %s must be a string, got %v", ConfigName, key, v)
		}
	}
	num := func(key string, dst *float64) {
		if err != nil || raw[key] == nil {
			return
		}
		n, ok := raw[key].(json.Number)
		if !ok {
			err = fmt.Errorf("%s: %s must be a number, got %v", ConfigName, key, raw[key])
			return
		}
		*dst, err = n.Float64()
		if err != nil {
			err = fmt.Errorf("%s: %s: %v", ConfigName, key, err)
		}
	}
	flag := func(key string) bool {
		if err != nil {
			return false
		}
		switch v := raw[key].(type) {
		case nil:
			return false
		case bool:
			return v
		default:
			err = fmt.Errorf("%s: %s must be true or false, got %v", ConfigName, key, v)
			return false
		}
	}
	patterns := func(key string) map[string]float64 {
		if err != nil || raw[key] == nil {
			return nil
		}
		m, ok := raw[key].(map[string]any)
		if !ok {
			err = fmt.Errorf("%s: %s must be an object, got %v", ConfigName, key, raw[key])
			return nil
		}
		out := make(map[string]float64, len(m))
		for k, v := range m {
			n, ok := v.(json.Number)
			f, ferr := n.Float64()
			if !ok || ferr != nil {
				err = fmt.Errorf("%s: %s[%q] must be a number, got %v", ConfigName, key, k, v)
				return nil
			}
			if _, rerr := regexp.Compile(k); rerr != nil {
				err = fmt.Errorf("%s: %s key %q is not a regular expression Go accepts: %v", ConfigName, key, k, rerr)
				return nil
			}
			out[k] = f
		}
		return out
	}

	str("peft_type", &c.PeftType)
	str("task_type", &c.TaskType)
	str("base_model_name_or_path", &c.BaseModelNameOrPath)
	str("bias", &c.Bias)
	var r float64 = 8
	num("r", &r)
	num("lora_alpha", &c.LoraAlpha)
	num("lora_dropout", &c.LoraDropout)
	c.UseRSLoRA = flag("use_rslora")
	dora, fanInFanOut, loraBias := flag("use_dora"), flag("fan_in_fan_out"), flag("lora_bias")
	c.RankPattern = patterns("rank_pattern")
	c.AlphaPattern = patterns("alpha_pattern")
	if err != nil {
		return Config{}, err
	}

	switch {
	case c.PeftType != "LORA":
		return fail("peft_type %q is not supported (only LORA)", c.PeftType)
	case r != math.Trunc(r) || r <= 0 || r > maxConfigRank:
		return fail("r must be a positive integer up to %d, got %v", maxConfigRank, r)
	case dora:
		return fail("DoRA adapters (use_dora: true) are not supported")
	case fanInFanOut:
		return fail("fan_in_fan_out: true is for Conv1D layers (GPT-2); Llama projections are nn.Linear")
	case loraBias:
		return fail("lora_bias: true (a bias on lora_B) is not supported")
	case c.Bias != "none":
		return fail("bias %q is not supported (only \"none\": the adapter may not train base biases)", c.Bias)
	}
	c.R = int(r)
	for k, v := range c.RankPattern {
		if v != math.Trunc(v) || v <= 0 || v > maxConfigRank {
			return fail("rank_pattern[%q] must be a positive integer up to %d, got %v", k, maxConfigRank, v)
		}
	}
	if v, ok := raw["modules_to_save"].([]any); raw["modules_to_save"] != nil && (!ok || len(v) > 0) {
		return fail("modules_to_save %v is not supported: the adapter carries full copies of base modules (vLLM refuses these too)", raw["modules_to_save"])
	}
	if raw["layer_replication"] != nil {
		return fail("layer_replication is not supported")
	}
	switch t := raw["target_modules"].(type) {
	case nil:
	case string:
		if t != "all-linear" {
			if _, err := regexp.Compile(`^(?:` + t + `)$`); err != nil {
				return fail("target_modules %q is not a regular expression Go accepts: %v", t, err)
			}
		}
		c.TargetModulesRegex = t
	case []any:
		c.TargetModules = make([]string, len(t))
		for i, v := range t {
			s, ok := v.(string)
			if !ok {
				return fail("target_modules[%d] must be a string, got %v", i, v)
			}
			c.TargetModules[i] = s
		}
	default:
		return fail("target_modules must be a list of names or a regex string, got %v", t)
	}
	return c, nil
}

// peftFields is the field set PEFT 0.15.2 writes for a LoraConfig, with its
// defaults (tuners/lora/config.py LoraConfig; testdata/adapter_config.example.peft0.15.2.json
// is one such file).
func peftFields() map[string]any {
	return map[string]any{
		"alpha_pattern": map[string]any{}, "auto_mapping": nil, "base_model_name_or_path": nil,
		"bias": "none", "corda_config": nil, "eva_config": nil, "exclude_modules": nil,
		"fan_in_fan_out": false, "inference_mode": true, "init_lora_weights": true,
		"layer_replication": nil, "layers_pattern": nil, "layers_to_transform": nil,
		"loftq_config": map[string]any{}, "lora_alpha": 8, "lora_bias": false, "lora_dropout": 0.0,
		"megatron_config": nil, "megatron_core": "megatron.core", "modules_to_save": nil,
		"peft_type": "LORA", "r": 8, "rank_pattern": map[string]any{}, "revision": nil,
		"target_modules": nil, "task_type": nil, "trainable_token_indices": nil,
		"use_dora": false, "use_rslora": false,
	}
}

// marshal renders c as PeftConfigMixin.save_pretrained does: the v0.15.2
// field set, json.dumps(indent=2, sort_keys=True), no trailing newline.
// Values read from a file and left unchanged are written as they were read.
func (c *Config) marshal() ([]byte, error) {
	fields := peftFields()
	for k, v := range c.raw {
		if _, ok := fields[k]; ok {
			fields[k] = v
		}
	}
	set := func(key string, v any) {
		if old, ok := c.raw[key]; ok && sameValue(old, v) {
			return // keep the file's spelling (e.g. 16 vs 16.0)
		}
		fields[key] = v
	}
	nullable := func(s string) any {
		if s == "" {
			return nil
		}
		return s
	}
	set("peft_type", cmp(c.PeftType, "LORA"))
	set("task_type", nullable(c.TaskType))
	set("base_model_name_or_path", nullable(c.BaseModelNameOrPath))
	set("r", c.R)
	set("lora_alpha", c.LoraAlpha)
	set("lora_dropout", c.LoraDropout)
	set("use_rslora", c.UseRSLoRA)
	set("bias", cmp(c.Bias, "none"))
	switch {
	case c.TargetModulesRegex != "":
		set("target_modules", c.TargetModulesRegex)
	case c.TargetModules != nil:
		set("target_modules", slices.Clone(c.TargetModules))
	default:
		set("target_modules", nil)
	}
	set("rank_pattern", patternValue(c.RankPattern))
	set("alpha_pattern", patternValue(c.AlphaPattern))
	fields["inference_mode"] = true // PeftModel.save_pretrained saves in inference mode
	v, err := integralAsInt(fields)
	if err != nil {
		return nil, err
	}
	return pyjson.Marshal(v, pyjson.Options{Indent: 2, EnsureASCII: true})
}

// integralAsInt returns a copy of v (a tree of maps, lists and scalars) with
// every integral float64 below 1e16 as an integer, the way Unsloth's configs
// hold numbers ("lora_alpha": 16, "lora_dropout": 0) where Python's repr
// would write 16.0; other floats keep their repr. NaN and infinities are an
// error: json.dumps would write NaN, which no JSON parser but Python's reads.
func integralAsInt(v any) (any, error) {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("cannot encode %v in JSON", x)
		}
		if x == math.Trunc(x) && math.Abs(x) < 1e16 {
			return json.Number(strconv.FormatFloat(x, 'f', 0, 64)), nil
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			var err error
			if out[k], err = integralAsInt(item); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
		}
		return out, nil
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			var err error
			if out[i], err = integralAsInt(item); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func patternValue(m map[string]float64) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sameValue reports whether a value as read (json.Number, []any, ...)
// means the same as a Go value about to be written.
func sameValue(read, v any) bool {
	switch w := v.(type) {
	case int:
		n, ok := read.(json.Number)
		f, err := n.Float64()
		return ok && err == nil && f == float64(w)
	case float64:
		n, ok := read.(json.Number)
		f, err := n.Float64()
		return ok && err == nil && f == w
	case map[string]any:
		m, ok := read.(map[string]any)
		if !ok || len(m) != len(w) {
			return false
		}
		for k, x := range w {
			if y, ok := m[k]; !ok || !sameValue(y, x) {
				return false
			}
		}
		return true
	case []string:
		l, ok := read.([]any)
		if !ok || len(l) != len(w) {
			return false
		}
		for i := range w {
			if l[i] != w[i] {
				return false
			}
		}
		return true
	default:
		return read == v
	}
}
