package adapters

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"github.com/parrot-llm/parrot/internal/atomicfile"
	"github.com/parrot-llm/parrot/runtime"
	"github.com/parrot-llm/parrot/runtime/safetensors"
)

// Module is the LoRA pair of one projection, in PEFT (PyTorch nn.Linear) layout.
type Module struct {
	Name    string // e.g. "model.layers.0.self_attn.q_proj"
	Rank    int
	In, Out int
	A       []float32 // [Rank, In]
	B       []float32 // [Out, Rank]
}

// Adapter is a PEFT LoRA adapter held in memory.
type Adapter struct {
	Config  Config
	Modules map[string]*Module // by module name
}

// Names lists the module names in sorted order.
func (a *Adapter) Names() []string {
	names := make([]string, 0, len(a.Modules))
	for n := range a.Modules {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// MaxRank is the largest rank of any module.
func (a *Adapter) MaxRank() int {
	r := 0
	for _, m := range a.Modules {
		r = max(r, m.Rank)
	}
	return r
}

// Load reads a PEFT adapter directory: adapter_config.json and
// adapter_model.safetensors (F32, F16, BF16 or F64 tensors). It checks the
// tensor names (base_model.model.<module>.lora_A.weight / lora_B.weight),
// their shapes, that A and B agree on the rank and that the rank is the one
// the config gives the module. A pickled adapter_model.bin is refused: it
// can run code when unpickled.
func Load(dir string) (*Adapter, error) {
	a, err := loadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", dir, err)
	}
	return a, nil
}

// loadDir is Load with errors that name no server path (the pool shows
// them to API clients); their log detail has the paths.
func loadDir(dir string) (*Adapter, error) {
	data, err := readConfig(filepath.Join(dir, ConfigName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fileError{msg: "no " + ConfigName + " (not a PEFT adapter directory)", detail: logDetail(err), err: err}
	}
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, err
	}
	wpath := filepath.Join(dir, WeightsName)
	if _, err := os.Stat(wpath); errors.Is(err, fs.ErrNotExist) {
		if _, perr := os.Stat(filepath.Join(dir, PickleName)); perr == nil {
			return nil, fmt.Errorf("only %s is present; parrot does not load pickled weights (unpickling can run code): "+
				"convert it with safetensors.torch.save_file, or save the adapter with safe_serialization=True", PickleName)
		}
		return nil, missing(WeightsName)
	}
	f, err := safetensors.Open(wpath)
	if err != nil {
		return nil, &fileError{msg: "corrupt or unreadable weights: " + safetensorsReason(err), detail: err.Error(), err: err}
	}
	defer f.Close()
	a, err := readMapped(f, &cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", WeightsName, err)
	}
	return a, nil
}

// readMapped is readModules on a memory-mapped file. A tool that truncates
// the file while it is read (cp over it) makes the access fault (SIGBUS),
// which would end the server; with SetPanicOnFault, meant for mapped files,
// the fault is a panic recovered here as an error.
func readMapped(f *safetensors.File, cfg *Config) (a *Adapter, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r) // a bug, not the file
			}
			a, err = nil, incomplete("the file shrank while it was read")
		}
	}()
	return readModules(f, cfg)
}

// safetensorsReason is an error of safetensors.Open without the file's
// path: the os error's reason, or what the parser found wrong (Open wraps
// it as "safetensors: <path>: <reason>").
func safetensorsReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return WeightsName + ": " + pe.Err.Error()
	}
	if inner := errors.Unwrap(err); inner != nil {
		return inner.Error()
	}
	return err.Error()
}

// readModules pairs the lora_A/lora_B tensors of f into modules.
func readModules(f *safetensors.File, cfg *Config) (*Adapter, error) {
	a := &Adapter{Config: *cfg, Modules: map[string]*Module{}}
	type pair struct{ a, b *safetensors.Tensor }
	pairs := map[string]*pair{}
	for _, name := range f.Names() {
		t, _ := f.Tensor(name)
		module, isA, err := parseTensorName(name)
		if err != nil {
			return nil, err
		}
		p := pairs[module]
		if p == nil {
			p = &pair{}
			pairs[module] = p
		}
		if isA {
			p.a = &t
		} else {
			p.b = &t
		}
	}
	if len(pairs) == 0 {
		return nil, errors.New("no LoRA tensors")
	}
	for module, p := range pairs {
		switch {
		case p.a == nil:
			return nil, fmt.Errorf("module %s has lora_B but no lora_A", module)
		case p.b == nil:
			return nil, fmt.Errorf("module %s has lora_A but no lora_B", module)
		case len(p.a.Shape) != 2 || len(p.b.Shape) != 2:
			return nil, fmt.Errorf("module %s: lora_A %v and lora_B %v must both be matrices", module, p.a.Shape, p.b.Shape)
		}
		rank, in, out := p.a.Shape[0], p.a.Shape[1], p.b.Shape[0]
		if p.b.Shape[1] != rank {
			return nil, fmt.Errorf("module %s: lora_A is %v ([r, in]) but lora_B is %v, want [out, %d]", module, p.a.Shape, p.b.Shape, rank)
		}
		if rank <= 0 || in <= 0 || out <= 0 {
			return nil, fmt.Errorf("module %s: empty LoRA matrices lora_A %v, lora_B %v", module, p.a.Shape, p.b.Shape)
		}
		if want := cfg.Rank(module); rank != want {
			return nil, fmt.Errorf("module %s: tensors have rank %d, but %s gives it r=%d", module, rank, ConfigName, want)
		}
		if !cfg.Targets(module) {
			return nil, fmt.Errorf("module %s has LoRA tensors but is not selected by target_modules %s", module, cfg.targetsString())
		}
		m := &Module{Name: module, Rank: rank, In: in, Out: out}
		var err error
		if m.A, err = floats(*p.a); err != nil {
			return nil, err
		}
		if m.B, err = floats(*p.b); err != nil {
			return nil, err
		}
		a.Modules[module] = m
	}
	return a, nil
}

// parseTensorName splits a PEFT key into its module and which matrix it is.
func parseTensorName(name string) (module string, isA bool, err error) {
	rest, ok := strings.CutPrefix(name, tensorKeyPrefix)
	var hint string
	switch {
	case !ok:
		hint = "PEFT keys start with " + tensorKeyPrefix
	case strings.HasSuffix(rest, ".lora_A.weight"):
		return strings.TrimSuffix(rest, ".lora_A.weight"), true, nil
	case strings.HasSuffix(rest, ".lora_B.weight"):
		return strings.TrimSuffix(rest, ".lora_B.weight"), false, nil
	case strings.Contains(rest, "lora_magnitude_vector"):
		hint = "a DoRA magnitude vector; DoRA is not supported"
	case strings.Contains(rest, "lora_embedding_"):
		hint = "an embedding LoRA; only the seven projections can be adapted"
	case strings.HasSuffix(rest, ".bias"):
		hint = "a bias; LoRA biases are not supported"
	case strings.Contains(rest, ".lora_A.") || strings.Contains(rest, ".lora_B."):
		hint = "the adapter name must not be part of the key (PEFT strips it when saving)"
	default:
		hint = "not a LoRA matrix (modules_to_save or embedding weights are not supported)"
	}
	return "", false, fmt.Errorf("unexpected tensor %q: %s", name, hint)
}

// floats decodes a float tensor and refuses NaN or infinite values, which
// would poison every output of the adapter.
func floats(t safetensors.Tensor) ([]float32, error) {
	var out []float32
	if t.DType == safetensors.F64 {
		if len(t.Data) != 8*t.NumElements() {
			return nil, fmt.Errorf("tensor %s: %d bytes do not hold %v of F64", t.Name, len(t.Data), t.Shape)
		}
		out = make([]float32, t.NumElements())
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(t.Data[8*i:])))
		}
	} else {
		var err error
		if out, err = safetensors.ToFloat32(t); err != nil {
			return nil, fmt.Errorf("tensor %s: LoRA weights must be F32, F16, BF16 or F64: %w", t.Name, err)
		}
	}
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("tensor %s: element %d is %v", t.Name, i, v)
		}
	}
	return out, nil
}

func (c *Config) targetsString() string {
	if c.TargetModulesRegex != "" {
		return strconv.Quote(c.TargetModulesRegex)
	}
	return fmt.Sprintf("%q", c.TargetModules)
}

// Save writes a in PEFT's layout to dir (created if missing):
// adapter_model.safetensors with F32 tensors and metadata {"format": "pt"},
// and adapter_config.json as PEFT 0.15.2 writes it. The directory is
// replaced as a whole (atomicfile.ReplaceDir): both files are written into
// a hidden staging sibling, which takes dir's place in one rename, with
// everything else in dir (checkpoints, trainer state) carried over. A
// reader, or a crash at any point, sees the old adapter or the new one,
// never the weights of one beside the config of the other.
func Save(dir string, a *Adapter) error {
	if len(a.Modules) == 0 {
		return errors.New("save adapter: no modules")
	}
	tensors := make([]safetensors.Tensor, 0, 2*len(a.Modules))
	for _, name := range a.Names() {
		m := a.Modules[name]
		if m.Name != name {
			return fmt.Errorf("save adapter: module %q is stored under %q", m.Name, name)
		}
		if m.Rank <= 0 || len(m.A) != m.Rank*m.In || len(m.B) != m.Out*m.Rank {
			return fmt.Errorf("save adapter: module %s: rank %d, A has %d values (want %d×%d), B %d (want %d×%d)",
				name, m.Rank, len(m.A), m.Rank, m.In, len(m.B), m.Out, m.Rank)
		}
		if m.Rank != a.Config.Rank(name) {
			return fmt.Errorf("save adapter: module %s has rank %d but the config gives it r=%d (set R or RankPattern)", name, m.Rank, a.Config.Rank(name))
		}
		tensors = append(tensors,
			safetensors.Tensor{Name: tensorKeyPrefix + name + ".lora_A.weight", DType: safetensors.F32, Shape: []int{m.Rank, m.In}, Data: f32Bytes(m.A)},
			safetensors.Tensor{Name: tensorKeyPrefix + name + ".lora_B.weight", DType: safetensors.F32, Shape: []int{m.Out, m.Rank}, Data: f32Bytes(m.B)})
	}
	cfg, err := a.Config.marshal()
	if err != nil {
		return fmt.Errorf("save adapter: %s: %w", ConfigName, err)
	}
	err = atomicfile.ReplaceDirSteps(dir, func(staging string) error {
		if err := safetensors.Write(filepath.Join(staging, WeightsName), tensors, map[string]string{"format": "pt"}); err != nil {
			return err
		}
		if saveStep != nil {
			saveStep("weights written")
		}
		return atomicfile.WriteFile(filepath.Join(staging, ConfigName), cfg)
	}, saveStep)
	if err != nil {
		return fmt.Errorf("save adapter: %w", err)
	}
	return nil
}

// saveStep, when set (by crash tests), is called after each step of Save.
var saveStep func(step string)

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// projectionShape returns [out, in] of a projection of the base model.
func projectionShape(c *runtime.Config, proj string) (out, in int, ok bool) {
	q, kv := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
	switch proj {
	case "self_attn.q_proj":
		return q, c.Hidden, true
	case "self_attn.k_proj", "self_attn.v_proj":
		return kv, c.Hidden, true
	case "self_attn.o_proj":
		return c.Hidden, q, true
	case "mlp.gate_proj", "mlp.up_proj":
		return c.Intermediate, c.Hidden, true
	case "mlp.down_proj":
		return c.Hidden, c.Intermediate, true
	}
	return 0, 0, false
}

// splitModule parses "model.layers.<i>.<projection>".
func splitModule(name string) (layer int, proj string, ok bool) {
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return 0, "", false
	}
	idx, proj, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, "", false
	}
	layer, err := strconv.Atoi(idx)
	if err != nil || layer < 0 || strconv.Itoa(layer) != idx || !slices.Contains(runtime.ProjectionNames, proj) {
		return 0, "", false
	}
	return layer, proj, true
}

// Validate checks a against the base model: every module must be one of its
// projections (model.layers.N.{self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj}),
// in a layer the base has, with the base's in/out features.
func (a *Adapter) Validate(base *runtime.Config) error {
	if len(a.Modules) == 0 {
		return errors.New("adapter has no modules")
	}
	for _, name := range a.Names() {
		m := a.Modules[name]
		layer, proj, ok := splitModule(name)
		if !ok {
			return fmt.Errorf("module %s is not a projection of a Llama model (model.layers.N.{self_attn.{q,k,v,o}_proj,mlp.{gate,up,down}_proj})", name)
		}
		if layer >= base.Layers {
			return fmt.Errorf("module %s is in layer %d, but the base model has %d layers: the adapter was trained for another model", name, layer, base.Layers)
		}
		out, in, _ := projectionShape(base, proj)
		if m.In != in || m.Out != out {
			return fmt.Errorf("module %s maps %d to %d features, but the base projection maps %d to %d: the adapter was trained for another model",
				name, m.In, m.Out, in, out)
		}
		if m.Rank <= 0 || len(m.A) != m.Rank*m.In || len(m.B) != m.Out*m.Rank {
			return fmt.Errorf("module %s: rank %d with %d A and %d B values", name, m.Rank, len(m.A), len(m.B))
		}
	}
	return nil
}

// CheckRank refuses an adapter with a module of rank above maxRank (the
// slots' padded rank, --max-lora-rank).
func (a *Adapter) CheckRank(maxRank int) error {
	for _, name := range a.Names() {
		if r := a.Modules[name].Rank; r > maxRank {
			return fmt.Errorf("module %s has rank %d, above the maximum LoRA rank %d (raise --max-lora-rank)", name, r, maxRank)
		}
	}
	return nil
}

// install writes a into slot of the model's LoRA slots, zeroing the
// projections a does not adapt. The slot must not be held by any sequence.
func (a *Adapter) install(ls *runtime.LoRASlots, slot int) error {
	ls.Clear(slot)
	for _, name := range a.Names() {
		m := a.Modules[name]
		if err := ls.Set(slot, name, m.A, m.B, m.Rank, a.Config.Scale(name)); err != nil {
			ls.Clear(slot)
			return err
		}
	}
	return nil
}
