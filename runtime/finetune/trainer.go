package finetune

import (
	"context"
	"io"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/runtime/dataset"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/train"
)

// Run fine-tunes j.Model on j.Options' dataset with the LoRA trainer and
// writes the adapter to the output directory.
func Run(ctx context.Context, j Job) (*Result, error) {
	return run(ctx, j, newTrainStepper)
}

// trainStepper adapts train.Trainer to the loop.
type trainStepper struct {
	t   *train.Trainer
	cfg peft.Config
	buf [][]train.Example
}

func newTrainStepper(m *llama.Model, c Options, totalSteps int) (Stepper, error) {
	t, err := train.New(m, TrainOptions(c, totalSteps))
	if err != nil {
		return nil, err
	}
	cfg := peft.NewConfig(c.R, c.LoraAlpha)
	cfg.UseRSLoRA = c.UseRSLoRA
	cfg.LoraDropout = c.LoraDropout
	cfg.TargetModules = append([]string(nil), c.TargetModules...)
	cfg.BaseModelNameOrPath = c.Model
	return &trainStepper{t: t, cfg: cfg}, nil
}

// TrainOptions maps the run's options onto the trainer's.
func TrainOptions(c Options, totalSteps int) train.Options {
	return train.Options{
		Rank: c.R, Alpha: c.LoraAlpha, Dropout: c.LoraDropout, RSLoRA: c.UseRSLoRA, Targets: c.TargetModules,
		LearningRate: c.LearningRate, WarmupSteps: c.WarmupSteps, TotalSteps: totalSteps,
		WeightDecay: c.WeightDecay, Optim: c.Optim, MaxGradNorm: c.MaxGradNorm,
		Seed: c.Seed, GradientCheckpointing: c.GradientCheckpointing,
	}
}

func (s *trainStepper) Step(micro [][]dataset.Example) (StepStats, error) {
	s.buf = s.buf[:0]
	for _, mb := range micro {
		ex := make([]train.Example, len(mb))
		for i, e := range mb {
			ex[i] = train.Example{Input: e.Input, Labels: e.Labels}
		}
		s.buf = append(s.buf, ex)
	}
	st, err := s.t.Step(s.buf)
	if err != nil {
		return StepStats{}, err
	}
	return StepStats{Loss: st.Loss, GradNorm: st.GradNorm, LearningRate: st.LearningRate, Tokens: st.Tokens, LabelTokens: st.LabelTokens}, nil
}

func (s *trainStepper) Adapter() (*peft.Adapter, error) {
	a := &peft.Adapter{Config: s.cfg, Modules: map[string]*peft.Module{}}
	for _, m := range s.t.LoRAWeights() { // copies
		a.Modules[m.Name] = m
	}
	return a, nil
}

func (s *trainStepper) SaveState(w io.Writer) error      { return s.t.SaveState(w) }
func (s *trainStepper) LoadState(r io.Reader) error      { return s.t.LoadState(r) }
func (s *trainStepper) MemoryStats() (base, train int64) { return s.t.MemoryStats() }
