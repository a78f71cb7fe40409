// Package train fine-tunes LoRA adapters on a frozen (NF4 or float) Llama:
// forward and backward through the base with input gradients only, float32
// LoRA A/B with PEFT's init, cross-entropy normalised per label token of the
// whole optimizer step, global gradient clipping, AdamW (torch) or 8-bit
// AdamW (bitsandbytes), the linear warmup/decay schedule, and gradient
// checkpointing. The math is PEFT's LoRA (tuners/lora/layer.py), the
// transformers loss and schedule (loss/loss_utils.py ForCausalLMLoss,
// optimization.py) and the two optimizers (torch/optim/adamw.py, bitsandbytes
// csrc/kernels.cu); the ops are the backend's (kernels.TrainBackend), so a
// backend that implements the backward ops trains.
//
// It reproduces a PyTorch/PEFT reference run (testdata/golden.py) step by
// step; see golden_test.go.
package train

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// Example is one training sequence. Labels are already masked with
// kernels.IgnoreIndex (-100) where no loss is wanted; like transformers'
// causal LM loss, the model shifts them: Labels[t+1] is the target of the
// prediction made at position t.
type Example struct {
	Input  []int32
	Labels []int32 // len(Labels) == len(Input)
}

// StepStats describe one optimizer step.
type StepStats struct {
	Loss         float64 // mean cross-entropy per label token over the whole step
	GradNorm     float64 // global L2 norm of the LoRA gradients, before clipping
	LearningRate float64 // the learning rate this step used
	Tokens       int     // input tokens (without padding)
	LabelTokens  int     // tokens that carried a loss (the normaliser)
}

// Trainer trains one LoRA adapter on a model. It is not safe for concurrent
// use, and it reads the model's weights without changing them (the model
// may not be serving at the same time: they share the backend's scratch).
type Trainer struct {
	m       *llama.Model
	cfg     *llama.Config
	be      kernels.TrainBackend
	opts    Options
	scale   float32   // LoRA scaling
	invFreq []float32 // [HeadDim/2]

	invFreqBuf kernels.Buf // invFreq in backend memory

	modules []*module          // layer-major, PEFT projection order within a layer
	layers  [][numProj]*module // per layer; nil where a projection is not trained
	codes   *codes8bit

	step int // optimizer steps taken
	buf  buffers
}

// New prepares LoRA training on m, whose backend must implement
// kernels.TrainBackend. A is initialised from Seed (see initLoRAA) and B is
// zero, as PEFT does.
func New(m *llama.Model, opts Options) (*Trainer, error) {
	if m == nil || m.Config == nil || m.Weights == nil {
		return nil, errors.New("train: nil model")
	}
	be, ok := m.Backend.(kernels.TrainBackend)
	if !ok {
		return nil, fmt.Errorf("train: backend %s has no training ops", m.Backend.Name())
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	c := m.Config
	if len(m.Weights.Layers) != c.Layers {
		return nil, fmt.Errorf("train: model has %d layers, config says %d", len(m.Weights.Layers), c.Layers)
	}
	t := &Trainer{m: m, cfg: c, be: be, opts: opts, scale: opts.Scale(), invFreq: c.InvFreq(),
		layers: make([][numProj]*module, c.Layers), codes: newCodes8bit()}
	matched := make([]bool, len(opts.Targets))
	for l := range m.Weights.Layers {
		for p, lin := range m.Weights.Layers[l].Projections() {
			hit := false
			for i, target := range opts.Targets {
				if lin.Name == target || strings.HasSuffix(lin.Name, "."+target) {
					matched[i], hit = true, true
				}
			}
			if !hit {
				continue
			}
			mod := &module{name: lin.Name, id: uint64(l*numProj + p), lin: lin, in: lin.In, out: lin.Out, rank: opts.Rank,
				a: make([]float32, opts.Rank*lin.In), b: make([]float32, lin.Out*opts.Rank),
				ga: make([]float32, opts.Rank*lin.In), gb: make([]float32, lin.Out*opts.Rank)}
			initLoRAA(mod.a, lin.In, opts.Seed, lin.Name)
			mod.sa, mod.sb = newParamState(len(mod.a), opts), newParamState(len(mod.b), opts)
			t.layers[l][p] = mod
			t.modules = append(t.modules, mod)
		}
	}
	for i, ok := range matched {
		if !ok {
			return nil, fmt.Errorf("train: target module %q matches no projection", opts.Targets[i])
		}
	}
	// The parameters and gradients in backend memory (see module).
	for _, mod := range t.modules {
		for _, d := range []struct {
			buf *kernels.Buf
			n   int
		}{{&mod.da, len(mod.a)}, {&mod.db, len(mod.b)}, {&mod.dga, len(mod.a)}, {&mod.dgb, len(mod.b)}} {
			if *d.buf, err = be.Alloc(d.n); err != nil {
				return nil, fmt.Errorf("train: %s: %w", mod.name, err)
			}
		}
	}
	t.writeParams()
	if t.invFreqBuf, err = be.Alloc(len(t.invFreq)); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	be.Write(t.invFreqBuf, t.invFreq)
	t.buf.inputs = make([]slab, c.Layers+1)
	if opts.GradientCheckpointing {
		t.buf.acts = make([]layerActs, 1)
	} else {
		t.buf.acts = make([]layerActs, c.Layers)
	}
	return t, nil
}

// Options returns the options in effect (defaults filled in).
func (t *Trainer) Options() Options { return t.opts }

// StepCount is the number of optimizer steps taken.
func (t *Trainer) StepCount() int { return t.step }

// makeBatch right-pads examples into a micro-batch and shifts the labels.
func (t *Trainer) makeBatch(exs []Example) (*batch, error) {
	if len(exs) == 0 {
		return nil, errors.New("train: empty micro-batch")
	}
	T := 0
	for i, ex := range exs {
		if len(ex.Input) == 0 {
			return nil, fmt.Errorf("train: example %d is empty", i)
		}
		if len(ex.Labels) != len(ex.Input) {
			return nil, fmt.Errorf("train: example %d has %d labels for %d tokens", i, len(ex.Labels), len(ex.Input))
		}
		if len(ex.Input) > t.cfg.MaxPos {
			return nil, fmt.Errorf("train: example %d has %d tokens, more than the model's %d positions", i, len(ex.Input), t.cfg.MaxPos)
		}
		for j, id := range ex.Input {
			if id < 0 || int(id) >= t.cfg.Vocab {
				return nil, fmt.Errorf("train: example %d token %d: id %d outside vocabulary of %d", i, j, id, t.cfg.Vocab)
			}
			if l := ex.Labels[j]; l != kernels.IgnoreIndex && (l < 0 || int(l) >= t.cfg.Vocab) {
				return nil, fmt.Errorf("train: example %d label %d: %d is neither -100 nor a token id", i, j, l)
			}
		}
		T = max(T, len(ex.Input))
	}
	B := len(exs)
	bt := &batch{B: B, T: T, tokens: make([]int32, B*T), pos: make([]int32, B*T), targets: make([]int32, B*T)}
	for b, ex := range exs {
		for j := 0; j < T; j++ {
			n := b*T + j
			bt.pos[n] = int32(j)
			bt.targets[n] = kernels.IgnoreIndex
			if j < len(ex.Input) {
				bt.tokens[n] = ex.Input[j]
			}
			if j+1 < len(ex.Labels) && ex.Labels[j+1] != kernels.IgnoreIndex {
				bt.targets[n] = ex.Labels[j+1]
				bt.rows = append(bt.rows, int32(n))
			}
		}
	}
	return bt, nil
}

// Step runs one optimizer step over gradient-accumulation micro-batches: the
// loss is the sum of every label token's cross-entropy divided by the number
// of label tokens of the whole step (transformers Trainer's
// num_items_in_batch with ForCausalLMLoss), its LoRA gradients are clipped to
// MaxGradNorm (global L2), and the optimizer updates A and B with this step's
// learning rate.
func (t *Trainer) Step(micro [][]Example) (StepStats, error) {
	if len(micro) == 0 {
		return StepStats{}, errors.New("train: a step needs at least one micro-batch")
	}
	batches := make([]*batch, len(micro))
	var st StepStats
	for i, exs := range micro {
		bt, err := t.makeBatch(exs)
		if err != nil {
			return StepStats{}, fmt.Errorf("micro-batch %d: %w", i, err)
		}
		batches[i] = bt
		st.LabelTokens += len(bt.rows)
		for _, ex := range exs {
			st.Tokens += len(ex.Input)
		}
	}
	if st.LabelTokens == 0 {
		return StepStats{}, errors.New("train: no label tokens in this step (every label is -100)")
	}
	t.zeroGrads()
	scale := float32(1 / float64(st.LabelTokens))
	var total float64
	for i, bt := range batches {
		loss, err := t.forwardBackward(bt, i, scale, true)
		if err != nil {
			return StepStats{}, err
		}
		total += loss
	}
	t.readGrads()
	st.Loss = total / float64(st.LabelTokens)
	st.GradNorm = t.clipGradients()
	st.LearningRate = t.opts.LearningRateAt(t.step)
	t.step++
	h := hyper{lr: st.LearningRate, beta1: t.opts.Beta1, beta2: t.opts.Beta2, eps: t.opts.Eps,
		wd: t.opts.WeightDecay, step: t.step}
	for _, m := range t.modules {
		m.sa.update(m.a, m.ga, h, t.opts.Optim, t.codes)
		m.sb.update(m.b, m.gb, h, t.opts.Optim, t.codes)
	}
	t.writeParams()
	return st, nil
}

// zeroGrads clears the backend's gradient buffers before a step's
// micro-batches accumulate into them.
func (t *Trainer) zeroGrads() {
	for _, m := range t.modules {
		t.zero(m.dga)
		t.zero(m.dgb)
	}
}

// readGrads copies the accumulated gradients to the host, where the
// clipping and the optimizer run (a device backend would add an optimizer
// op and skip this).
func (t *Trainer) readGrads() {
	for _, m := range t.modules {
		t.be.Read(m.ga, m.dga)
		t.be.Read(m.gb, m.dgb)
	}
}

// writeParams copies the host parameters, which the optimizer (or a loaded
// state, or New's init) has just changed, to the backend.
func (t *Trainer) writeParams() {
	for _, m := range t.modules {
		t.be.Write(m.da, m.a)
		t.be.Write(m.db, m.b)
	}
}

// clipGradients returns the global L2 norm of the gradients and, when it
// exceeds MaxGradNorm, scales them by MaxGradNorm/(norm+1e-6) as torch's
// clip_grad_norm_ does (in float32).
func (t *Trainer) clipGradients() float64 {
	var ss float64
	for _, m := range t.modules {
		for _, g := range m.ga {
			ss += float64(g) * float64(g)
		}
		for _, g := range m.gb {
			ss += float64(g) * float64(g)
		}
	}
	norm := math.Sqrt(ss)
	if t.opts.MaxGradNorm <= 0 {
		return norm
	}
	coef := float32(t.opts.MaxGradNorm) / (float32(norm) + 1e-6)
	if coef < 1 {
		for _, m := range t.modules {
			for i := range m.ga {
				m.ga[i] *= coef
			}
			for i := range m.gb {
				m.gb[i] *= coef
			}
		}
	}
	return norm
}

// Eval returns the mean cross-entropy per label token of a batch (one
// forward pass, no dropout, no gradients).
func (t *Trainer) Eval(exs []Example) (float64, error) {
	bt, err := t.makeBatch(exs)
	if err != nil {
		return 0, err
	}
	if len(bt.rows) == 0 {
		return 0, errors.New("train: no label tokens in the evaluation batch")
	}
	loss, err := t.forwardBackward(bt, 0, 1, false)
	if err != nil {
		return 0, err
	}
	return loss / float64(len(bt.rows)), nil
}

// LoRAWeights returns copies of the trained modules in PEFT layout (B not
// multiplied by the scale), by module name order of the model.
func (t *Trainer) LoRAWeights() []*peft.Module {
	out := make([]*peft.Module, len(t.modules))
	for i, m := range t.modules {
		out[i] = &peft.Module{Name: m.name, Rank: m.rank, In: m.in, Out: m.out,
			A: append([]float32(nil), m.a...), B: append([]float32(nil), m.b...)}
	}
	return out
}

// Adapter returns the trained adapter with its PEFT configuration
// (Unsloth's defaults for r and lora_alpha, plus this run's dropout,
// rsLoRA and target modules), ready for peft.Save.
func (t *Trainer) Adapter(baseModel string) *peft.Adapter {
	cfg := peft.NewConfig(t.opts.Rank, t.opts.Alpha)
	cfg.BaseModelNameOrPath = baseModel
	cfg.LoraDropout = t.opts.Dropout
	cfg.UseRSLoRA = t.opts.RSLoRA
	cfg.TargetModules = append([]string(nil), t.opts.Targets...)
	a := &peft.Adapter{Config: cfg, Modules: map[string]*peft.Module{}}
	for _, m := range t.LoRAWeights() {
		a.Modules[m.Name] = m
	}
	return a
}

// MemoryStats returns the bytes of the frozen base weights and of
// everything training adds: LoRA weights, gradients, optimizer states and
// the activation and scratch buffers as last grown.
func (t *Trainer) MemoryStats() (baseBytes, trainingBytes int64) {
	w := t.m.Weights
	baseBytes = matrixBytes(w.Embed) + 4*int64(w.Norm.Len())
	if w.LMHead != kernels.Matrix(w.Embed) {
		baseBytes += matrixBytes(w.LMHead)
	}
	for i := range w.Layers {
		l := &w.Layers[i]
		baseBytes += 4 * int64(l.AttnNorm.Len()+l.MLPNorm.Len())
		for _, p := range l.Projections() {
			baseBytes += matrixBytes(p.W)
		}
	}
	for _, m := range t.modules {
		trainingBytes += 4*int64(len(m.a)+len(m.b)+len(m.ga)+len(m.gb)) + m.sa.bytes() + m.sb.bytes() +
			4*int64(m.da.Len()+m.db.Len()+m.dga.Len()+m.dgb.Len())
	}
	return baseBytes, trainingBytes + t.buf.bytes()
}
