//go:build unix

package peft

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"syscall"
	"testing"
)

// equalAdapters reports whether a and b have the same config rank and
// alpha, and the same modules with the same weights.
func equalAdapters(a, b *Adapter) bool {
	if a.Config.R != b.Config.R || a.Config.LoraAlpha != b.Config.LoraAlpha || !slices.Equal(a.Names(), b.Names()) {
		return false
	}
	for name, m := range a.Modules {
		n := b.Modules[name]
		if m.Rank != n.Rank || m.In != n.In || m.Out != n.Out || !slices.Equal(m.A, n.A) || !slices.Equal(m.B, n.B) {
			return false
		}
	}
	return true
}

// The adapters of TestSaveCrash: the child process draws the same new one.
func crashAdapters(t *testing.T) (old, new *Adapter) {
	return randomAdapter(8, 16, 1, 0.2, nil), randomAdapter(16, 32, 2, 0.2, nil)
}

// What finetune keeps in its output directory beside the adapter.
var crashExtras = map[string]string{
	"trainer_state.json":                 `{"global_step": 3}`,
	"training_args.json":                 `{"r": 16}`,
	"checkpoint-3/trainer_state.json":    `{"global_step": 3}`,
	"checkpoint-3/optimizer.safetensors": "moments",
	"checkpoint-3/nested/run_state.json": "{}",
	"checkpoint-3/" + ConfigName:         `{"r": 8}`,
	"checkpoint-3/" + WeightsName:        "weights of step 3",
	"checkpoint-3/nested/deeper/log.txt": "step 1\nstep 2\n",
	"README.md":                          "# pirate adapter\n",
}

func extrasIntact(dir string) error {
	for name, want := range crashExtras {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("%s holds %q, want %q", name, got, want)
		}
	}
	return nil
}

// The child half of TestSaveCrash: Save the new adapter over the old one
// and SIGKILL this process at step k of the sequence.
func saveCrashChild(t *testing.T, dir string, k int) {
	_, new := crashAdapters(t)
	n := 0
	saveStep = func(step string) {
		if n++; n == k {
			fmt.Fprintf(os.Stderr, "killed after step %q\n", step)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	if err := Save(dir, new); err != nil {
		t.Fatal(err)
	}
}

// A finetune run killed (SIGKILL) at each step of Save in turn, saving a
// rank-16 adapter over a rank-8 one, leaves exactly the old adapter or
// exactly the new one (config and weights of the same version), and every
// other file of the output directory, checkpoints included. The next Save
// cleans up what the killed one left beside the directory.
func TestSaveCrash(t *testing.T) {
	if dir := os.Getenv("PARROT_SAVE_CRASH_DIR"); dir != "" {
		k, _ := strconv.Atoi(os.Getenv("PARROT_SAVE_CRASH_AT"))
		saveCrashChild(t, dir, k)
		return
	}
	old, new := crashAdapters(t)
	dir := filepath.Join(t.TempDir(), "out")
	saveAdapter(t, dir, old)
	for name, content := range crashExtras {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stepName := regexp.MustCompile(`killed after step "([^"]*)"`)
	tried, survived := 0, 0
	var steps []string
	for k := 1; ; k++ {
		if k > 1 {
			saveAdapter(t, dir, old) // also removes what the killed Save left
			if a := mustLoad(t, dir); !equalAdapters(a, old) {
				t.Fatalf("after kill %d, a Save of the old adapter did not restore it", k-1)
			}
			if ents, _ := os.ReadDir(filepath.Dir(dir)); len(ents) != 1 {
				t.Fatalf("after kill %d and a Save, %d entries beside the directory", k-1, len(ents)-1)
			}
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestSaveCrash$")
		cmd.Env = append(os.Environ(), "PARROT_SAVE_CRASH_DIR="+dir, "PARROT_SAVE_CRASH_AT="+strconv.Itoa(k))
		out, err := cmd.CombinedOutput()
		if err == nil {
			if a := mustLoad(t, dir); !equalAdapters(a, new) {
				t.Fatal("an uninterrupted Save did not write the new adapter")
			}
			break // k is past the last step
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("child at step %d: %v\n%s", k, err, out)
		}
		step := fmt.Sprint(k)
		if m := stepName.FindSubmatch(out); m != nil {
			step = string(m[1])
		}
		steps = append(steps, step)
		tried++
		a, err := Load(dir)
		switch {
		case err != nil:
			t.Errorf("killed after %s: %v", step, err)
		case !equalAdapters(a, old) && !equalAdapters(a, new):
			t.Errorf("killed after %s: the directory holds neither the old nor the new adapter (rank %d)", step, a.MaxRank())
		default:
			if err := extrasIntact(dir); err != nil {
				t.Errorf("killed after %s: %v", step, err)
				continue
			}
			survived++
		}
	}
	t.Logf("kills survived %d/%d, one after each step of Save: %q", survived, tried, steps)
	if tried < 7 {
		t.Errorf("only %d steps to kill at", tried)
	}
}
