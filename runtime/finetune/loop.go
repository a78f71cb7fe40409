package finetune

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/internal/atomicfile"
	"github.com/parrot-llm/parrot/runtime/dataset"
)

// StepStats describe one optimizer step.
type StepStats struct {
	Loss         float64 // per-token mean cross-entropy over the step's label tokens
	GradNorm     float64 // global L2 norm of the LoRA gradient before clipping
	LearningRate float64 // learning rate the step used
	Tokens       int     // input tokens (padding included)
	LabelTokens  int     // tokens that carried loss
}

// Stepper is the trainer the loop drives (the train package's, or a fake in
// tests).
type Stepper interface {
	// Step runs one optimizer step over gradient-accumulation micro-batches.
	Step(micro [][]dataset.Example) (StepStats, error)
	// Adapter returns the current LoRA weights as a PEFT adapter.
	Adapter() (*peft.Adapter, error)
	// SaveState and LoadState write and restore everything a bit-identical
	// continuation needs: LoRA weights, optimizer moments, step count, RNG.
	SaveState(w io.Writer) error
	LoadState(r io.Reader) error
	// MemoryStats: bytes of the frozen base, and of training (LoRA weights,
	// gradients, optimizer states, activations).
	MemoryStats() (base, training int64)
}

// loopConfig is what the loop needs from the job's configuration.
type loopConfig struct {
	OutputDir      string
	MaxSteps       int // total optimizer steps
	NumTrainEpochs int // epochs that MaxSteps spans (for trainer_state.json)
	GA, BatchSize  int
	LoggingSteps   int
	SaveSteps      int // 0 = no checkpoints
	Stdout, Stderr io.Writer
}

// Result sums up a training run.
type Result struct {
	StartStep, GlobalStep int     // resumed from, and reached
	TrainLoss             float64 // mean step loss over the whole run (all steps, resumed ones included)
	Runtime               time.Duration
	Tokens, LabelTokens   int64 // processed by this process
	Samples               int   // examples processed by this process
	LogHistory            []LogEntry
	Memory                memoryInfo
	BaseBytes, TrainBytes int64 // Stepper.MemoryStats at the end
	StartRSS              int64 // resident memory before the first step
}

// runner is the training loop's state.
type runner struct {
	c    loopConfig
	t    Stepper
	l    *dataset.Loader
	ts   TrainerState
	rs   runState
	prog *progress
}

func newRunner(c loopConfig, t Stepper, l *dataset.Loader) *runner {
	return &runner{c: c, t: t, l: l, ts: TrainerState{
		EvalSteps: 500, IsLocalProcessZero: true, IsWorldProcessZero: true, LogHistory: []LogEntry{},
		LoggingSteps: c.LoggingSteps, MaxSteps: c.MaxSteps, NumTrainEpochs: c.NumTrainEpochs,
		SaveSteps: c.SaveSteps, TrainBatchSize: c.BatchSize,
	}}
}

// resume restores a checkpoint written by checkpoint().
func (r *runner) resume(dir string) error {
	if err := checkComplete(dir); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	var ts TrainerState
	if err := readJSON(filepath.Join(dir, TrainerStateName), &ts); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	var rs runState
	if err := readJSON(filepath.Join(dir, RunStateName), &rs); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if ts.GlobalStep > r.c.MaxSteps {
		return fmt.Errorf("resume: %s is at step %d, past --max-steps %d", dir, ts.GlobalStep, r.c.MaxSteps)
	}
	f, err := os.Open(filepath.Join(dir, OptimizerName))
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	defer f.Close()
	if err := r.t.LoadState(f); err != nil {
		return fmt.Errorf("resume: %s: %w", filepath.Join(dir, OptimizerName), err)
	}
	if err := r.l.Restore(rs.Loader); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	// Keep what the checkpoint logged; the run's own settings take over.
	r.ts.GlobalStep, r.ts.Epoch, r.ts.LogHistory = ts.GlobalStep, ts.Epoch, ts.LogHistory
	r.ts.NumInputTokensSeen, r.ts.TotalFlos = ts.NumInputTokensSeen, ts.TotalFlos
	if r.ts.LogHistory == nil {
		r.ts.LogHistory = []LogEntry{}
	}
	r.rs = rs
	return nil
}

// nextStep gathers the micro-batches of one optimizer step: GA of them, or
// fewer at the end of an epoch (the epoch's remainder makes a short step).
func (r *runner) nextStep() [][]dataset.Example {
	micro := make([][]dataset.Example, 0, r.c.GA)
	for len(micro) < r.c.GA {
		micro = append(micro, r.l.Next())
		if r.l.EpochEnd() {
			break
		}
	}
	return micro
}

// run trains from the current step to MaxSteps.
func (r *runner) run(ctx context.Context) (*Result, error) {
	res := &Result{StartStep: r.ts.GlobalStep, StartRSS: readMemory().RSS}
	r.prog = newProgress(r.c.Stderr, r.ts.GlobalStep, r.c.MaxSteps)
	start := time.Now()
	for r.ts.GlobalStep < r.c.MaxSteps {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("stopped at step %d of %d: %w", r.ts.GlobalStep, r.c.MaxSteps, err)
		}
		micro := r.nextStep()
		st, err := r.t.Step(micro)
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", r.ts.GlobalStep+1, err)
		}
		if math.IsNaN(st.Loss) || math.IsInf(st.Loss, 0) {
			return nil, fmt.Errorf("step %d: the loss is %v (try a lower --learning-rate)", r.ts.GlobalStep+1, st.Loss)
		}
		r.ts.GlobalStep++
		r.ts.Epoch = r.l.Epoch()
		r.ts.NumInputTokensSeen += int64(st.Tokens)
		r.rs.PendingLoss += st.Loss
		r.rs.PendingSteps++
		r.rs.TotalLoss += st.Loss
		res.Tokens += int64(st.Tokens)
		res.LabelTokens += int64(st.LabelTokens)
		for _, mb := range micro {
			res.Samples += len(mb)
		}
		r.prog.update(r.ts.GlobalStep, st.Tokens, st.Loss)

		if r.ts.GlobalStep%r.c.LoggingSteps == 0 {
			if err := r.log(st); err != nil {
				return nil, err
			}
		}
		if r.c.SaveSteps > 0 && (r.ts.GlobalStep%r.c.SaveSteps == 0 || r.ts.GlobalStep == r.c.MaxSteps) {
			if err := r.checkpoint(); err != nil {
				return nil, err
			}
		}
	}
	res.Runtime = time.Since(start)

	// The final entry of log_history, as Trainer.train() adds it.
	steps := r.ts.GlobalStep
	secs := res.Runtime.Seconds()
	trainLoss := 0.0
	if steps > 0 {
		trainLoss = r.rs.TotalLoss / float64(steps)
	}
	ran := float64(steps - res.StartStep)
	final := LogEntry{Epoch: r.ts.Epoch, Step: steps, TotalFlos: ptr(r.ts.TotalFlos), TrainLoss: ptr(trainLoss),
		TrainRuntime: ptr(round(secs, 4))}
	if secs > 0 {
		final.TrainSamplesPerSecond = ptr(round(float64(res.Samples)/secs, 3))
		final.TrainStepsPerSecond = ptr(round(ran/secs, 3))
		final.TrainTokensPerSecond = ptr(round(float64(res.Tokens)/secs, 3))
	}
	r.ts.LogHistory = append(r.ts.LogHistory, final)
	if err := r.writeState(r.c.OutputDir); err != nil {
		return nil, err
	}
	if err := r.saveAdapter(r.c.OutputDir); err != nil {
		return nil, err
	}
	res.GlobalStep, res.TrainLoss, res.LogHistory = steps, trainLoss, r.ts.LogHistory
	res.Memory = readMemory()
	res.BaseBytes, res.TrainBytes = r.t.MemoryStats()
	return res, nil
}

// log appends a log_history entry (the loss averaged over the steps since
// the last log, rounded to 4 digits as transformers does), prints it and
// rewrites trainer_state.json.
func (r *runner) log(st StepStats) error {
	loss := round(r.rs.PendingLoss/float64(r.rs.PendingSteps), 4)
	r.rs.PendingLoss, r.rs.PendingSteps = 0, 0
	e := LogEntry{Epoch: r.ts.Epoch, GradNorm: ptr(st.GradNorm), LearningRate: ptr(st.LearningRate), Loss: ptr(loss), Step: r.ts.GlobalStep}
	r.ts.LogHistory = append(r.ts.LogHistory, e)
	if r.c.Stdout != nil {
		r.prog.printAbove(r.c.Stdout, fmt.Sprintf("{'loss': %v, 'grad_norm': %v, 'learning_rate': %v, 'epoch': %v, 'step': %d}\n",
			loss, st.GradNorm, st.LearningRate, round(r.ts.Epoch, 4), r.ts.GlobalStep))
	}
	return r.writeState(r.c.OutputDir)
}

func (r *runner) writeState(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeJSON(filepath.Join(dir, TrainerStateName), &r.ts)
}

func (r *runner) saveAdapter(dir string) error {
	a, err := r.t.Adapter()
	if err != nil {
		return err
	}
	return peft.Save(dir, a)
}

// checkpointHook, when set (by the kill tests), is called after each step
// of checkpoint() with the step's name. Nil in production.
var checkpointHook func(stage string)

func hook(stage string) {
	if checkpointHook != nil {
		checkpointHook(stage)
	}
}

// checkpoint writes checkpoint-<step>/ (adapter, trainer state, optimizer
// state, loop state, then the manifest that marks it complete) into a
// staging directory, and renames it into place. An existing checkpoint-<step>
// is renamed aside first and removed only once the new one is in place, so
// a kill at any point leaves the old or the new checkpoint, and cleanStale
// tidies up the rest at the start of the next run.
func (r *runner) checkpoint() error {
	final := CheckpointDir(r.c.OutputDir, r.ts.GlobalStep)
	if err := os.MkdirAll(r.c.OutputDir, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(r.c.OutputDir, "."+checkpointPrefix+"*.tmp")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // no-op after the rename
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	hook("mkdir")
	if err := r.saveAdapter(tmp); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	hook("adapter")
	if err := r.writeState(tmp); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	hook("trainer_state")
	if err := atomicfile.Write(filepath.Join(tmp, OptimizerName), r.t.SaveState); err != nil {
		return fmt.Errorf("checkpoint: optimizer state: %w", err)
	}
	hook("optimizer")
	rs := r.rs
	rs.Loader = r.l.State()
	if err := writeJSON(filepath.Join(tmp, RunStateName), &rs); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	hook("run_state")
	if err := writeManifest(tmp); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	hook("manifest")

	aside := filepath.Join(r.c.OutputDir, "."+filepath.Base(final)+asideSuffix)
	if _, err := os.Stat(final); err == nil {
		if err := os.RemoveAll(aside); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		if err := os.Rename(final, aside); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
		hook("aside")
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	if err := atomicfile.SyncDir(r.c.OutputDir); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	hook("rename")
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	hook("done")
	return nil
}

func ptr[T any](v T) *T { return &v }

// round rounds to n decimal digits (Python's round for the values logged).
func round(x float64, n int) float64 {
	p := math.Pow(10, float64(n))
	return math.Round(x*p) / p
}
