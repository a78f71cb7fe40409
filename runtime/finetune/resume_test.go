package finetune

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// Killing a run after step 4 and resuming it from checkpoint-3 must end
// with the same bytes as the uninterrupted run: adapter, optimizer state
// and logged losses. Dropout and the 8-bit optimizer are on, so the RNG and
// the quantized moments must survive the checkpoint too.
func TestResumeIsBitIdentical(t *testing.T) {
	args := func(out string) Options {
		c := defaultOptions("stories260K", pirateData, out)
		c.MaxSteps, c.SaveSteps, c.MaxSeqLength, c.PerDeviceTrainBatchSize, c.GradientAccumulationSteps = 6, 3, 64, 2, 2
		c.LoraDropout, c.LearningRate, c.Optim, c.WarmupSteps, c.R = 0.1, 1e-3, "adamw_8bit", 2, 8
		return c
	}
	ctx := context.Background()
	outA := t.TempDir()
	if _, err := Run(ctx, Job{Options: args(outA), Model: loadStories(t)}); err != nil {
		t.Fatal(err)
	}

	outB := t.TempDir()
	killCtx, kill := context.WithCancel(ctx)
	stopAfter4 := func(m *llama.Model, c Options, n int) (Stepper, error) {
		s, err := newTrainStepper(m, c, n)
		return &cancelAt{Stepper: s, at: 4, cancel: kill}, err
	}
	if _, err := run(killCtx, Job{Options: args(outB), Model: loadStories(t)}, stopAfter4); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	// What a kill in the middle of writing checkpoint-6 would leave behind.
	if err := os.MkdirAll(filepath.Join(outB, ".checkpoint-6.tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	cB := args(outB)
	cB.ResumeFromCheckpoint = "true"
	res, err := Run(ctx, Job{Options: cB, Model: loadStories(t)})
	if err != nil {
		t.Fatal(err)
	}
	if res.StartStep != 3 || res.GlobalStep != 6 {
		t.Fatalf("resumed from step %d to %d, want 3 to 6", res.StartStep, res.GlobalStep)
	}
	if _, err := os.Stat(filepath.Join(outB, ".checkpoint-6.tmp")); !os.IsNotExist(err) {
		t.Errorf("the stale staging directory is still there: %v", err)
	}
	for _, f := range []string{peft.WeightsName, peft.ConfigName, filepath.Join("checkpoint-6", OptimizerName), filepath.Join("checkpoint-6", RunStateName)} {
		a, errA := os.ReadFile(filepath.Join(outA, f))
		b, errB := os.ReadFile(filepath.Join(outB, f))
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the uninterrupted and the resumed run", f)
		}
	}
	var tsA, tsB TrainerState
	if err := readJSON(filepath.Join(outA, TrainerStateName), &tsA); err != nil {
		t.Fatal(err)
	}
	if err := readJSON(filepath.Join(outB, TrainerStateName), &tsB); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tsA.LogHistory[:6], tsB.LogHistory[:6]) {
		t.Errorf("logged steps differ:\n%s\n%s", logString(tsA.LogHistory[:6]), logString(tsB.LogHistory[:6]))
	}
	// And the adapter really trained: B is no longer zero.
	a, err := peft.Load(outA)
	if err != nil {
		t.Fatal(err)
	}
	nonzero := 0
	for _, m := range a.Modules {
		for _, v := range m.B {
			if v != 0 {
				nonzero++
			}
		}
	}
	if nonzero == 0 {
		t.Error("every lora_B is still zero after 6 steps")
	}
}

// logString prints log entries' values (they hold pointers).
func logString(es []LogEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "{step %d epoch %v", e.Step, e.Epoch)
		for _, f := range []struct {
			name string
			v    *float64
		}{{"loss", e.Loss}, {"lr", e.LearningRate}, {"grad_norm", e.GradNorm}} {
			if f.v != nil {
				fmt.Fprintf(&b, " %s %v", f.name, *f.v)
			}
		}
		b.WriteString("} ")
	}
	return b.String()
}
