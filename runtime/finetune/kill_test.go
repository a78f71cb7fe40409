//go:build unix

package finetune

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
)

// Environment of the child process of TestCheckpointSurvivesKill.
const (
	killStageEnv = "PARROT_TEST_KILL_STAGE" // "stage:n": SIGKILL at the n-th checkpoint's stage
	killOutEnv   = "PARROT_TEST_KILL_OUT"   // the output directory
	killDataEnv  = "PARROT_TEST_KILL_DATA"  // the dataset
)

// checkpointStages are the names checkpoint() passes to checkpointHook, in
// order ("aside" only when it replaces an existing checkpoint).
var checkpointStages = []string{"mkdir", "adapter", "trainer_state", "optimizer", "run_state", "manifest", "aside", "rename", "done"}

// TestCheckpointKillChild is the child process of
// TestCheckpointSurvivesKill: it resumes the run in $PARROT_TEST_KILL_OUT
// from checkpoint-4 and kills itself at the stage it is told.
func TestCheckpointKillChild(t *testing.T) {
	spec := os.Getenv(killStageEnv)
	if spec == "" {
		t.Skip("the child of TestCheckpointSurvivesKill")
	}
	stage, nth, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(nth)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	setHook(t, func(s string) {
		if s == stage {
			if seen++; seen == n {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
		}
	})
	out := os.Getenv(killOutEnv)
	c := baseConfig(t, os.Getenv(killDataEnv), out)
	c.ResumeFromCheckpoint = CheckpointDir(out, 4)
	var f *fakeStepper
	if _, err := run(context.Background(), Job{Options: c, Model: stories(t)}, fakeFactory(&f)); err != nil {
		t.Fatal(err)
	}
}

// A run SIGKILLed at any stage of writing a checkpoint leaves a complete
// checkpoint to resume from (the old or the new), and the resumed run ends
// with the bytes of an uninterrupted one. The child reruns steps 5-10 over
// a copy of checkpoints 4 and 8, so its first checkpoint (8) replaces an
// existing one and its second (10) is new.
func TestCheckpointSurvivesKill(t *testing.T) {
	if os.Getenv(killStageEnv) != "" {
		t.Skip("in the child")
	}
	model := stories(t)
	data := writeStories(t, 7)
	ref := t.TempDir()
	var f *fakeStepper
	if _, err := run(context.Background(), Job{Options: baseConfig(t, data, ref), Model: model}, fakeFactory(&f)); err != nil {
		t.Fatal(err)
	}
	refAdapter, err := os.ReadFile(filepath.Join(ref, peft.WeightsName))
	if err != nil {
		t.Fatal(err)
	}
	var refState TrainerState
	if err := readJSON(filepath.Join(ref, TrainerStateName), &refState); err != nil {
		t.Fatal(err)
	}

	tried, survived := 0, 0
	for i, step := range []int{8, 10} { // the child's first and second checkpoint
		nth := i + 1
		for _, stage := range checkpointStages {
			if stage == "aside" && step == 10 {
				continue // checkpoint-10 replaces nothing
			}
			name := fmt.Sprintf("checkpoint-%d/%s", step, stage)
			out := t.TempDir()
			copyDir(t, CheckpointDir(ref, 4), CheckpointDir(out, 4))
			copyDir(t, CheckpointDir(ref, 8), CheckpointDir(out, 8))
			cmd := exec.Command(os.Args[0], "-test.run=^TestCheckpointKillChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), killStageEnv+"="+stage+":"+strconv.Itoa(nth), killOutEnv+"="+out, killDataEnv+"="+data)
			output, err := cmd.CombinedOutput()
			tried++
			var exit *exec.ExitError
			if !errors.As(err, &exit) || !exit.Sys().(syscall.WaitStatus).Signaled() {
				t.Errorf("%s: the child was not killed (%v):\n%s", name, err, output)
				continue
			}

			c := baseConfig(t, data, out)
			c.ResumeFromCheckpoint = "true"
			var stdout bytes.Buffer
			res, err := run(context.Background(), Job{Options: c, Model: model, Stdout: &stdout}, fakeFactory(&f))
			if err != nil {
				t.Errorf("%s: resume: %v", name, err)
				continue
			}
			wantStart := 8
			if step == 10 && (stage == "rename" || stage == "done") {
				wantStart = 10
			}
			ok := true
			fail := func(format string, args ...any) {
				t.Errorf(name+": "+format, args...)
				ok = false
			}
			if res.StartStep != wantStart || res.GlobalStep != 10 {
				fail("resumed from step %d to %d, want %d to 10", res.StartStep, res.GlobalStep, wantStart)
			}
			if got, _ := os.ReadFile(filepath.Join(out, peft.WeightsName)); !bytes.Equal(got, refAdapter) {
				fail("the final adapter differs from the uninterrupted run's")
			}
			var ts TrainerState
			if err := readJSON(filepath.Join(out, TrainerStateName), &ts); err != nil || !reflect.DeepEqual(ts.LogHistory[:10], refState.LogHistory[:10]) {
				fail("log history differs (%v)", err)
			}
			for _, s := range []int{4, 8, 10} {
				if err := checkComplete(CheckpointDir(out, s)); err != nil {
					fail("%v", err)
				}
				for _, file := range checkpointFiles {
					a, _ := os.ReadFile(filepath.Join(CheckpointDir(ref, s), file))
					b, _ := os.ReadFile(filepath.Join(CheckpointDir(out, s), file))
					if !bytes.Equal(a, b) {
						fail("checkpoint-%d/%s differs from the uninterrupted run's", s, file)
					}
				}
			}
			if names := hidden(t, out); len(names) != 0 {
				fail("left behind: %v", names)
			}
			if ok {
				survived++
			}
		}
	}
	t.Logf("checkpoint kill test: %d kills tried, %d survived (resumed to a bit-identical adapter)", tried, survived)
}
