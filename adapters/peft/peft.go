// Package peft is the on-disk format of PEFT LoRA adapters: Load and Save
// read and write an adapter directory (adapter_config.json and
// adapter_model.safetensors) exactly as PEFT 0.15.2 lays it out
// (peft/utils/save_and_load.py, tuners/lora/config.py). Save replaces the
// directory whole, so a crash leaves the old adapter or the new one. It
// knows nothing of the model an adapter is served or trained on.
package peft

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

// Load reads a PEFT adapter directory: adapter_config.json, checked by
// ParseConfig, and adapter_model.safetensors (F32, F16, BF16 or F64
// tensors), checked by Decode. A pickled adapter_model.bin is refused: it
// can run code when unpickled. Errors name dir.
func Load(dir string) (*Adapter, error) {
	a, err := load(dir)
	if err != nil {
		return nil, fmt.Errorf("adapter %s: %w", dir, err)
	}
	return a, nil
}

func load(dir string) (*Adapter, error) {
	data, err := os.ReadFile(filepath.Join(dir, ConfigName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s (not a PEFT adapter directory)", ConfigName)
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
		if _, err := os.Stat(filepath.Join(dir, PickleName)); err == nil {
			return nil, ErrPickled
		}
		return nil, fmt.Errorf("no %s", WeightsName)
	}
	f, err := safetensors.Open(wpath)
	if err != nil {
		return nil, fmt.Errorf("corrupt or unreadable weights: %w", err)
	}
	defer f.Close()
	return Decode(cfg, f)
}

// ErrPickled refuses an adapter directory that has only the legacy
// torch.save weights.
var ErrPickled = errors.New("only " + PickleName + " is present; parrot does not load pickled weights (unpickling can run code): " +
	"convert it with safetensors.torch.save_file, or save the adapter with safe_serialization=True")

// Decode pairs the LoRA tensors of an opened adapter_model.safetensors into
// the adapter cfg describes. It checks the tensor names
// (base_model.model.<module>.lora_A.weight / lora_B.weight), their shapes,
// that A and B agree on the rank and that the rank is the one cfg gives the
// module. Its errors name the weights file but no path.
func Decode(cfg Config, weights *safetensors.File) (*Adapter, error) {
	a, err := readMapped(weights, &cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", WeightsName, err)
	}
	return a, nil
}

// readMapped is readModules on a memory-mapped file. A tool that truncates
// the file while it is read (cp over it) makes the access fault (SIGBUS),
// which would end the process; with SetPanicOnFault, meant for mapped
// files, the fault is a panic recovered here as an error.
func readMapped(f *safetensors.File, cfg *Config) (a *Adapter, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r) // a bug, not the file
			}
			a, err = nil, errors.New("the file shrank while it was read")
		}
	}()
	return readModules(f, cfg)
}

// readModules pairs the lora_A/lora_B tensors of f into modules.
func readModules(f *safetensors.File, cfg *Config) (*Adapter, error) {
	a := &Adapter{Config: *cfg, Modules: map[string]*Module{}}
	type pair struct{ a, b *safetensors.Tensor }
	pairs := map[string]*pair{}
	for _, name := range f.Names() {
		t, _ := f.Tensor(name)
		module, isA, err := SplitTensorName(name)
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

// SplitTensorName splits a PEFT tensor name into its module and which
// matrix it is (lora_A or lora_B); the error says what else the name is.
func SplitTensorName(name string) (module string, isA bool, err error) {
	rest, ok := strings.CutPrefix(name, TensorKeyPrefix)
	var hint string
	switch {
	case !ok:
		hint = "PEFT keys start with " + TensorKeyPrefix
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
			safetensors.Tensor{Name: TensorKeyPrefix + name + ".lora_A.weight", DType: safetensors.F32, Shape: []int{m.Rank, m.In}, Data: f32Bytes(m.A)},
			safetensors.Tensor{Name: TensorKeyPrefix + name + ".lora_B.weight", DType: safetensors.F32, Shape: []int{m.Out, m.Rank}, Data: f32Bytes(m.B)})
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
