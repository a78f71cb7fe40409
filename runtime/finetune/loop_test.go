package finetune

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/kernels/cpu"
	"github.com/parrot-llm/parrot/runtime/dataset"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// fakeStepper stands for the trainer in loop tests: its "weights" move by a
// deterministic function of every token it is fed and of its own random
// stream, so the final adapter depends on the exact sequence of batches and
// on the saved RNG, as the real trainer's does.
type fakeStepper struct {
	w     []float32 // one module: A [1, 4], B [4, 1]
	step  int
	rng   uint64
	steps []int // micro-batch count of each step, for assertions
}

func newFake(seed uint64) *fakeStepper { return &fakeStepper{w: make([]float32, 8), rng: seed} }

func (f *fakeStepper) Step(micro [][]dataset.Example) (StepStats, error) {
	var st StepStats
	for _, mb := range micro {
		for _, ex := range mb {
			st.Tokens += len(ex.Input)
			st.LabelTokens += ex.LabelTokens()
			for t, id := range ex.Input {
				f.rng = f.rng*6364136223846793005 + 1442695040888963407
				f.w[(t+int(id))%len(f.w)] += float32(id%7)*1e-3 + float32(f.rng>>40)*1e-12
			}
		}
	}
	f.step++
	f.steps = append(f.steps, len(micro))
	st.Loss = 3 / float64(f.step+1)
	st.GradNorm = float64(f.w[0])
	st.LearningRate = 1e-3 / float64(f.step)
	return st, nil
}

func (f *fakeStepper) Adapter() (*peft.Adapter, error) {
	cfg := peft.NewConfig(1, 2)
	name := "model.layers.0.self_attn.q_proj"
	return &peft.Adapter{Config: cfg, Modules: map[string]*peft.Module{
		name: {Name: name, Rank: 1, In: 4, Out: 4, A: append([]float32(nil), f.w[:4]...), B: append([]float32(nil), f.w[4:]...)},
	}}, nil
}

func (f *fakeStepper) SaveState(w io.Writer) error {
	return binary.Write(w, binary.LittleEndian, append([]uint64{uint64(f.step), f.rng}, f32bits(f.w)...))
}

func (f *fakeStepper) LoadState(r io.Reader) error {
	v := make([]uint64, 2+len(f.w))
	if err := binary.Read(r, binary.LittleEndian, v); err != nil {
		return err
	}
	f.step, f.rng = int(v[0]), v[1]
	for i := range f.w {
		f.w[i] = math.Float32frombits(uint32(v[2+i]))
	}
	return nil
}

func (f *fakeStepper) MemoryStats() (int64, int64) { return 1000, 200 }

func f32bits(w []float32) []uint64 {
	out := make([]uint64, len(w))
	for i, x := range w {
		out[i] = uint64(math.Float32bits(x))
	}
	return out
}

// stories loads the stories260K checkpoint (a base model without a chat template).
func stories(t testing.TB) *llama.Loaded {
	t.Helper()
	be := cpu.New(1)
	t.Cleanup(be.Close)
	l, err := llama.Load("../../testdata/stories260K", llama.LoadOptions{Quantize: llama.QuantNone, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeStories(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		row, _ := json.Marshal(map[string]string{"text": fmt.Sprintf("Arr, matey %d sailed the sea. %s", i, strings.Repeat("Ye be brave. ", i%4))})
		b.Write(row)
		b.WriteByte('\n')
	}
	p := filepath.Join(t.TempDir(), "stories.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// defaultOptions are the options cmd/finetune gives a run by default (its
// flags' defaults, config/finetune.go), training on data into out.
func defaultOptions(model, data, out string) Options {
	return Options{
		Model: model, Dataset: data, OutputDir: out,
		DatasetSplit: "train", DatasetTextField: "text", SystemPrompt: "You are an assistant",
		R: 16, LoraAlpha: 16, TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
		MaxSeqLength: 2048, PerDeviceTrainBatchSize: 2, GradientAccumulationSteps: 4, WarmupSteps: 5,
		MaxSteps: 1000, NumTrainEpochs: 3, LearningRate: 2e-4, WeightDecay: 0.01, Optim: "adamw_8bit", MaxGradNorm: 1,
		Seed: 3407, LoggingSteps: 1, SaveSteps: 500, GradientCheckpointing: true,
		TrainOnResponsesOnly: true, ShowMasking: -1,
	}
}

func baseConfig(t *testing.T, data, out string) Options {
	t.Helper()
	c := defaultOptions("stories", data, out)
	c.MaxSteps, c.SaveSteps, c.PerDeviceTrainBatchSize, c.GradientAccumulationSteps = 10, 4, 2, 2
	c.MaxSeqLength, c.Seed = 64, 7
	return c
}

func fakeFactory(f **fakeStepper) stepperFactory {
	return func(_ *llama.Model, c Options, _ int) (Stepper, error) {
		*f = newFake(c.Seed)
		return *f, nil
	}
}

func TestLoopLogsCheckpointsAndResumes(t *testing.T) {
	model := stories(t)
	data := writeStories(t, 7) // 4 micro-batches of 2 per epoch: steps of 2, 2, 2, 2 micro-batches...
	outA := t.TempDir()
	var fa *fakeStepper
	var stdout bytes.Buffer
	res, err := run(context.Background(), Job{Options: baseConfig(t, data, outA), Model: model, Stdout: &stdout}, fakeFactory(&fa))
	if err != nil {
		t.Fatal(err)
	}
	if res.GlobalStep != 10 || res.StartStep != 0 || fa.step != 10 {
		t.Fatalf("steps: result %d, trainer %d", res.GlobalStep, fa.step)
	}
	// 7 examples → 4 micro-batches per epoch → 2 steps of 2 micro-batches each.
	for i, n := range fa.steps {
		if n != 2 {
			t.Errorf("step %d had %d micro-batches, want 2", i+1, n)
		}
	}
	var ts TrainerState
	if err := readJSON(filepath.Join(outA, TrainerStateName), &ts); err != nil {
		t.Fatal(err)
	}
	if ts.GlobalStep != 10 || ts.MaxSteps != 10 || ts.NumTrainEpochs != 5 || ts.TrainBatchSize != 2 || ts.LoggingSteps != 1 || ts.SaveSteps != 4 {
		t.Errorf("trainer_state: %+v", ts)
	}
	if len(ts.LogHistory) != 11 {
		t.Fatalf("%d log entries, want 10 steps + the summary", len(ts.LogHistory))
	}
	totalLoss := 0.0
	for i, e := range ts.LogHistory[:10] {
		step := i + 1
		wantLoss := round(3/float64(step+1), 4)
		if e.Step != step || e.Loss == nil || *e.Loss != wantLoss || *e.LearningRate != 1e-3/float64(step) || e.Epoch != float64(step)/2 {
			t.Errorf("log %d: %+v (loss %v lr %v), want loss %v epoch %v", i, e, *e.Loss, *e.LearningRate, wantLoss, float64(step)/2)
		}
		totalLoss += 3 / float64(step+1)
	}
	final := ts.LogHistory[10]
	if final.TrainLoss == nil || *final.TrainLoss != totalLoss/10 || final.Step != 10 || final.TrainRuntime == nil {
		t.Errorf("summary entry %+v", final)
	}
	if !strings.Contains(stdout.String(), "{'loss': 1.5, 'grad_norm':") || !strings.Contains(stdout.String(), "minutes used for training.") {
		t.Errorf("stdout lacks the log lines or the summary:\n%s", stdout.String())
	}
	for _, step := range []int{4, 8, 10} {
		for _, f := range []string{peft.ConfigName, peft.WeightsName, TrainerStateName, OptimizerName, RunStateName, ManifestName} {
			if _, err := os.Stat(filepath.Join(CheckpointDir(outA, step), f)); err != nil {
				t.Errorf("checkpoint %d: %v", step, err)
			}
		}
	}
	if latest, err := LatestCheckpoint(outA, nil); err != nil || latest != CheckpointDir(outA, 10) {
		t.Errorf("latest checkpoint %q %v", latest, err)
	}
	finalA, err := os.ReadFile(filepath.Join(outA, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := peft.Load(outA); err != nil || got.Modules["model.layers.0.self_attn.q_proj"].A[0] != fa.w[0] {
		t.Fatalf("final adapter: %v", err)
	}

	// Kill-and-resume: a run that stops after step 5 (checkpoint at 4),
	// resumed from checkpoint-4, ends with the same adapter bytes and log.
	outB := t.TempDir()
	cB := baseConfig(t, data, outB)
	ctx, cancel := context.WithCancel(context.Background())
	var fb *fakeStepper
	stopAfter5 := func(m *llama.Model, c Options, n int) (Stepper, error) {
		s, _ := fakeFactory(&fb)(m, c, n)
		return &cancelAt{Stepper: s, at: 5, cancel: cancel}, nil
	}
	if _, err := run(ctx, Job{Options: cB, Model: model}, stopAfter5); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped at step 5") {
		t.Fatalf("interrupted run: %v", err)
	}
	cB.ResumeFromCheckpoint = "true"
	res, err = run(context.Background(), Job{Options: cB, Model: model}, fakeFactory(&fb))
	if err != nil {
		t.Fatal(err)
	}
	if res.StartStep != 4 || res.GlobalStep != 10 || fb.step != 10 {
		t.Fatalf("resumed run: start %d end %d trainer %d", res.StartStep, res.GlobalStep, fb.step)
	}
	finalB, _ := os.ReadFile(filepath.Join(outB, peft.WeightsName))
	if !bytes.Equal(finalA, finalB) {
		t.Error("resumed adapter differs from the uninterrupted run's")
	}
	var tsB TrainerState
	if err := readJSON(filepath.Join(outB, TrainerStateName), &tsB); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ts.LogHistory[:10], tsB.LogHistory[:10]) || *tsB.LogHistory[10].TrainLoss != *final.TrainLoss {
		t.Errorf("resumed log history differs:\n%s\n%s", logString(ts.LogHistory), logString(tsB.LogHistory))
	}

	// Resuming from an explicit checkpoint directory works the same.
	outC := t.TempDir()
	cC := baseConfig(t, data, outC)
	cC.ResumeFromCheckpoint = CheckpointDir(outA, 8)
	var fc *fakeStepper
	if _, err := run(context.Background(), Job{Options: cC, Model: model}, fakeFactory(&fc)); err != nil {
		t.Fatal(err)
	}
	if finalC, _ := os.ReadFile(filepath.Join(outC, peft.WeightsName)); !bytes.Equal(finalA, finalC) || len(fc.steps) != 2 {
		t.Errorf("resume from checkpoint-8: same adapter %v, steps run %d", bytes.Equal(finalA, finalC), len(fc.steps))
	}
}

// cancelAt cancels the context after step `at`, as a kill would stop the run.
type cancelAt struct {
	Stepper
	at     int
	n      int
	cancel func()
}

func (c *cancelAt) Step(micro [][]dataset.Example) (StepStats, error) {
	st, err := c.Stepper.Step(micro)
	if c.n++; c.n == c.at {
		c.cancel()
	}
	return st, err
}

func TestPlanAndEpochRemainder(t *testing.T) {
	c := Options{GradientAccumulationSteps: 4, MaxSteps: -1, NumTrainEpochs: 1.5}
	p := NewPlan(19, 10, c) // 10 micro-batches per epoch → 3 steps (4+4+2)
	if p.StepsPerEpoch != 3 || p.MaxSteps != 5 || p.NumTrainEpochs != 2 {
		t.Errorf("epochs plan %+v", p)
	}
	c.MaxSteps = 7
	if p := NewPlan(19, 10, c); p.MaxSteps != 7 || p.NumTrainEpochs != 3 {
		t.Errorf("max-steps plan %+v", p)
	}

	// The last step of an epoch takes the remaining micro-batches only.
	model := stories(t)
	data := writeStories(t, 9) // 5 micro-batches of 2 → steps of 4 and 1
	cfg := baseConfig(t, data, t.TempDir())
	cfg.GradientAccumulationSteps, cfg.MaxSteps, cfg.SaveSteps = 4, 5, 0
	var f *fakeStepper
	if _, err := run(context.Background(), Job{Options: cfg, Model: model}, fakeFactory(&f)); err != nil {
		t.Fatal(err)
	}
	if want := []int{4, 1, 4, 1, 4}; !reflect.DeepEqual(f.steps, want) {
		t.Errorf("micro-batches per step %v, want %v", f.steps, want)
	}
	if _, err := os.Stat(CheckpointDir(cfg.OutputDir, 5)); !os.IsNotExist(err) {
		t.Errorf("--save-steps 0 wrote a checkpoint: %v", err)
	}
}
