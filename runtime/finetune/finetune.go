// Package finetune is the supervised fine-tuning loop of `parrot finetune`:
// it prepares the dataset (runtime/dataset), drives the LoRA trainer
// (runtime/train) through epochs or max_steps with gradient accumulation,
// logs loss, learning rate and grad norm into trainer_state.json as
// transformers keeps it, writes checkpoints it can resume from bit for bit,
// and saves the final adapter in PEFT format (peft.Save) into the output
// directory, where a watching server picks it up.
package finetune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/parrot-llm/parrot/internal/atomicfile"
	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/dataset"
	"github.com/parrot-llm/parrot/runtime/hub"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// Job is one fine-tuning run.
type Job struct {
	Options Options
	Model   *llama.Loaded // the base model, loaded on its backend
	Hub     *hub.Client   // for a Hub dataset; nil = from the environment
	Stdout  io.Writer     // log lines and the summary (nil = discard)
	Stderr  io.Writer     // the progress bar (nil = none)
}

// stepperFactory builds the trainer for a model; totalSteps sizes the
// learning-rate schedule.
type stepperFactory func(m *llama.Model, o Options, totalSteps int) (Stepper, error)

// Plan is the shape of a run, worked out from the data and the options.
type Plan struct {
	Examples        int
	BatchesPerEpoch int // micro-batches
	StepsPerEpoch   int // optimizer steps (the last one of an epoch may be short)
	MaxSteps        int
	NumTrainEpochs  int
}

// NewPlan computes the steps: MaxSteps if positive, else
// ceil(NumTrainEpochs × steps per epoch), as transformers does.
func NewPlan(examples, batchesPerEpoch int, c Options) Plan {
	p := Plan{Examples: examples, BatchesPerEpoch: batchesPerEpoch}
	p.StepsPerEpoch = (batchesPerEpoch + c.GradientAccumulationSteps - 1) / c.GradientAccumulationSteps
	if c.MaxSteps > 0 {
		p.MaxSteps = c.MaxSteps
		p.NumTrainEpochs = (p.MaxSteps + p.StepsPerEpoch - 1) / p.StepsPerEpoch
	} else {
		p.MaxSteps = max(1, int(math.Ceil(c.NumTrainEpochs*float64(p.StepsPerEpoch))))
		p.NumTrainEpochs = int(math.Ceil(c.NumTrainEpochs))
	}
	return p
}

func run(ctx context.Context, j Job, newStepper stepperFactory) (*Result, error) {
	c := j.Options
	out := j.Stdout
	if out == nil {
		out = io.Discard
	}
	if j.Model == nil || j.Model.Model == nil {
		return nil, errors.New("finetune: no model")
	}
	examples, err := prepareData(ctx, j, out)
	if err != nil {
		return nil, err
	}
	pad, _ := specialIDs(j.Model)
	loader, err := dataset.NewLoader(examples, dataset.LoaderOptions{BatchSize: c.PerDeviceTrainBatchSize, Seed: c.Seed, Pad: pad})
	if err != nil {
		return nil, err
	}
	plan := NewPlan(len(examples), loader.BatchesPerEpoch(), c)
	st, err := newStepper(j.Model.Model, c, plan.MaxSteps)
	if err != nil {
		return nil, err
	}
	a, err := st.Adapter()
	if err != nil {
		return nil, err
	}
	trainable := 0
	for _, m := range a.Modules {
		trainable += len(m.A) + len(m.B)
	}
	fmt.Fprintf(out, "Num examples = %d | Num Epochs = %d | Total steps = %d\n", plan.Examples, plan.NumTrainEpochs, plan.MaxSteps)
	fmt.Fprintf(out, "Batch size per device = %d | Gradient accumulation steps = %d | Total batch size (%d x %d) = %d\n",
		c.PerDeviceTrainBatchSize, c.GradientAccumulationSteps, c.PerDeviceTrainBatchSize, c.GradientAccumulationSteps,
		c.PerDeviceTrainBatchSize*c.GradientAccumulationSteps)
	fmt.Fprintf(out, "Trainable parameters = %d (LoRA r=%d on %s)\n", trainable, c.R, strings.Join(c.TargetModules, ", "))

	if err := os.MkdirAll(c.OutputDir, 0o755); err != nil {
		return nil, err
	}
	if err := cleanStale(c.OutputDir, out); err != nil {
		return nil, fmt.Errorf("cleaning up %s: %w", c.OutputDir, err)
	}
	r := newRunner(loopConfig{
		OutputDir: c.OutputDir, MaxSteps: plan.MaxSteps, NumTrainEpochs: plan.NumTrainEpochs,
		GA: c.GradientAccumulationSteps, BatchSize: c.PerDeviceTrainBatchSize,
		LoggingSteps: c.LoggingSteps, SaveSteps: c.SaveSteps, Stdout: out, Stderr: j.Stderr,
	}, st, loader)
	if c.ResumeFromCheckpoint != "" {
		dir := c.ResumeFromCheckpoint
		if dir == "true" {
			if dir, err = LatestCheckpoint(c.OutputDir, out); err != nil {
				return nil, err
			}
		}
		if err := r.resume(dir); err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "Resumed from %s at step %d (epoch %.2f)\n", dir, r.ts.GlobalStep, r.ts.Epoch)
	}
	if err := writeTrainingArgs(c); err != nil {
		return nil, err
	}
	res, err := r.run(ctx)
	if err != nil {
		return nil, err
	}
	printSummary(out, res, c.OutputDir)
	return res, nil
}

// prepareData loads, converts, tokenizes and masks the dataset, reporting
// what it did, and prints the --show-masking sample.
func prepareData(ctx context.Context, j Job, out io.Writer) ([]dataset.Example, error) {
	c := j.Options
	rows, files, err := dataset.Load(ctx, c.Dataset, dataset.LoadOptions{Split: c.DatasetSplit, Hub: j.Hub})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Dataset %s: %d rows from %d file(s)\n", c.Dataset, len(rows), len(files))
	var markers *dataset.Markers
	if c.InstructionPart != "" {
		if markers, err = dataset.NewMarkers(j.Model.Tokenizer, c.InstructionPart, c.ResponsePart); err != nil {
			return nil, err
		}
	}
	_, eos := specialIDs(j.Model)
	maxLen := c.MaxSeqLength
	if maxPos := j.Model.Model.Config.MaxPos; maxLen > maxPos {
		fmt.Fprintf(out, "--max-seq-length %d is longer than the model's context: truncating at %d\n", maxLen, maxPos)
		maxLen = maxPos
	}
	enc, err := dataset.NewEncoder(j.Model.Tokenizer, j.Model.Template, dataset.EncoderOptions{
		MaxSeqLength: maxLen, ResponsesOnly: c.TrainOnResponsesOnly, Markers: markers, EOS: eos,
	})
	if err != nil {
		return nil, err
	}
	examples, stats, err := dataset.Prepare(rows, dataset.Format{TextField: c.DatasetTextField, SystemPrompt: c.SystemPrompt}, enc)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "Prepared %s\n", stats.Summary())
	if stats.Bad > 0 {
		fmt.Fprintf(out, "Skipped %d bad row(s); the first:\n", stats.Bad)
		for _, b := range stats.BadExamples {
			fmt.Fprintf(out, "  %s\n", b)
		}
	}
	if n := c.ShowMasking; n >= 0 {
		if n >= len(examples) {
			return nil, fmt.Errorf("--show-masking %d: the dataset has %d examples", n, len(examples))
		}
		in, labels, err := dataset.ShowMasking(j.Model.Tokenizer, examples[n])
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(out, "Sample %d input:\n%s\nSample %d labels (masked tokens as spaces):\n%s\n", n, in, n, labels)
	}
	return examples, nil
}

// specialIDs returns the padding id (tokenizer_config's pad_token, else
// config.json's pad_token_id, else the EOS) and the EOS appended to text
// samples (tokenizer_config's eos_token, else config.json's first
// eos_token_id; -1 if none).
func specialIDs(l *llama.Loaded) (pad, eos int32) {
	pad, eos = -1, -1
	tokens := map[string]string{}
	if data, err := os.ReadFile(filepath.Join(l.Dir, "tokenizer_config.json")); err == nil {
		if m, err := chat.SpecialTokens(data); err == nil {
			tokens = m
		}
	}
	if id, ok := l.Tokenizer.TokenID(tokens["eos_token"]); ok && tokens["eos_token"] != "" {
		eos = id
	} else if len(l.Model.Config.EOS) > 0 {
		eos = l.Model.Config.EOS[0]
	}
	if id, ok := l.Tokenizer.TokenID(tokens["pad_token"]); ok && tokens["pad_token"] != "" {
		pad = id
	} else if l.Model.Config.Pad >= 0 {
		pad = l.Model.Config.Pad
	} else {
		pad = max(eos, 0)
	}
	return pad, eos
}

// writeTrainingArgs records the settings of the run beside its outputs
// (transformers keeps training_args.bin).
func writeTrainingArgs(c Options) error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(c.OutputDir, "training_args.json"), append(data, '\n'))
}

// printSummary prints the lab's end-of-training report.
func printSummary(w io.Writer, r *Result, outputDir string) {
	secs := r.Runtime.Seconds()
	fmt.Fprintf(w, "%.4f seconds used for training.\n", secs)
	fmt.Fprintf(w, "%.2f minutes used for training.\n", secs/60)
	peak := r.Memory.PeakRSS
	overhead := max(peak-r.StartRSS, 0)
	fmt.Fprintf(w, "Peak reserved memory = %.3f GB.\n", gb(peak))
	fmt.Fprintf(w, "Peak reserved memory for training = %.3f GB.\n", gb(overhead))
	if r.Memory.Total > 0 {
		fmt.Fprintf(w, "Peak reserved memory %% of max memory = %.3f %%.\n", 100*float64(peak)/float64(r.Memory.Total))
		fmt.Fprintf(w, "Peak reserved memory for training %% of max memory = %.3f %%.\n", 100*float64(overhead)/float64(r.Memory.Total))
	}
	fmt.Fprintf(w, "Base model weights = %s, training state (LoRA, gradients, optimizer, activations) = %s.\n", size(r.BaseBytes), size(r.TrainBytes))
	if secs > 0 {
		fmt.Fprintf(w, "Trained %d steps: %.1f tokens/s, train loss %.4f.\n", r.GlobalStep-r.StartStep, float64(r.Tokens)/secs, r.TrainLoss)
	}
	fmt.Fprintf(w, "Adapter written to %s\n", outputDir)
}
