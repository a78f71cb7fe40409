package finetune

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/runtime/dataset"
)

// testRunner is a loop over a few hand-made examples with the fake trainer,
// writing into out.
func testRunner(t *testing.T, out string) (*runner, *fakeStepper) {
	t.Helper()
	var ex []dataset.Example
	for i := range 4 {
		ex = append(ex, dataset.Example{Input: []int32{1, int32(i + 2), 3}, Labels: []int32{1, int32(i + 2), 3}})
	}
	l, err := dataset.NewLoader(ex, dataset.LoaderOptions{BatchSize: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(1)
	return newRunner(loopConfig{OutputDir: out, MaxSteps: 10, NumTrainEpochs: 3, GA: 1, BatchSize: 1, LoggingSteps: 1, SaveSteps: 2}, f, l), f
}

// setHook installs checkpointHook for the test.
func setHook(t *testing.T, h func(stage string)) {
	checkpointHook = h
	t.Cleanup(func() { checkpointHook = nil })
}

// Rewriting checkpoint-N keeps a complete copy of it at every step: the old
// one (in place, or renamed aside) until the new one is renamed in.
func TestCheckpointReplacesOldOnlyWhenNewIsInPlace(t *testing.T) {
	out := t.TempDir()
	r, f := testRunner(t, out)
	r.ts.GlobalStep = 2
	if err := r.checkpoint(); err != nil {
		t.Fatal(err)
	}
	final := CheckpointDir(out, 2)
	oldState, err := os.ReadFile(filepath.Join(final, OptimizerName))
	if err != nil {
		t.Fatal(err)
	}
	f.w[0] = 42 // the new checkpoint of the same step differs from the old one
	aside := filepath.Join(out, ".checkpoint-2"+asideSuffix)

	var seen []string
	setHook(t, func(stage string) {
		dir := final
		if checkComplete(final) != nil {
			dir = aside
			if err := checkComplete(aside); err != nil {
				t.Errorf("after %s: no complete checkpoint-2 in place or aside: %v", stage, err)
				return
			}
		}
		state, _ := os.ReadFile(filepath.Join(dir, OptimizerName))
		which := "new"
		if bytes.Equal(state, oldState) {
			which = "old"
		}
		seen = append(seen, stage+":"+which+"@"+filepath.Base(dir))
	})
	if err := r.checkpoint(); err != nil {
		t.Fatal(err)
	}
	want := "mkdir:old@checkpoint-2 adapter:old@checkpoint-2 trainer_state:old@checkpoint-2 optimizer:old@checkpoint-2 " +
		"run_state:old@checkpoint-2 manifest:old@checkpoint-2 aside:old@.checkpoint-2.old rename:new@checkpoint-2 done:new@checkpoint-2"
	if got := strings.Join(seen, " "); got != want {
		t.Errorf("checkpoint sequence\n got %s\nwant %s", got, want)
	}
	if names := hidden(t, out); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
}

// hidden lists the dot entries of dir (staging directories, temporary
// files, aside checkpoints).
func hidden(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}

// A checkpoint is complete only if its manifest lists the checkpoint files
// and each has the listed size; resume refuses any other.
func TestCheckpointManifest(t *testing.T) {
	out := t.TempDir()
	r, _ := testRunner(t, out)
	r.ts.GlobalStep = 2
	if err := r.checkpoint(); err != nil {
		t.Fatal(err)
	}
	good := CheckpointDir(out, 2)
	if err := checkComplete(good); err != nil {
		t.Fatalf("fresh checkpoint: %v", err)
	}
	var m manifest
	if err := readJSON(filepath.Join(good, ManifestName), &m); err != nil {
		t.Fatal(err)
	}
	for _, name := range checkpointFiles {
		if _, ok := m.Files[name]; !ok {
			t.Errorf("manifest lacks %s: %v", name, m.Files)
		}
	}

	breakages := map[string]func(dir string) error{
		"no manifest": func(dir string) error { return os.Remove(filepath.Join(dir, ManifestName)) },
		"manifest not JSON": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ManifestName), []byte("{"), 0o644)
		},
		"manifest lists too little": func(dir string) error {
			return os.WriteFile(filepath.Join(dir, ManifestName), []byte(`{"files": {}}`), 0o644)
		},
		"manifest lists a path": func(dir string) error {
			m := manifest{Files: map[string]int64{"../x": 1}}
			for _, n := range checkpointFiles {
				info, _ := os.Stat(filepath.Join(dir, n))
				m.Files[n] = info.Size()
			}
			return writeJSON(filepath.Join(dir, ManifestName), &m)
		},
	}
	for _, name := range checkpointFiles {
		breakages[name+" missing"] = func(dir string) error { return os.Remove(filepath.Join(dir, name)) }
		breakages[name+" truncated"] = func(dir string) error { return os.Truncate(filepath.Join(dir, name), 1) }
		breakages[name+" grown"] = func(dir string) error {
			f, err := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			f.Write([]byte("x"))
			return f.Close()
		}
	}
	for what, spoil := range breakages {
		t.Run(what, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "checkpoint-2")
			copyDir(t, good, dir)
			if err := spoil(dir); err != nil {
				t.Fatal(err)
			}
			if err := checkComplete(dir); err == nil {
				t.Fatal("counted as complete")
			}
			r2, _ := testRunner(t, t.TempDir())
			if err := r2.resume(dir); err == nil || !strings.Contains(err.Error(), "checkpoint-2") {
				t.Errorf("resume from it: %v", err)
			}
		})
	}
}

// copyDir copies the files of src (a checkpoint: no subdirectories) to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// The start of a run removes what a killed run left behind, and puts back
// an old checkpoint renamed aside whose replacement never arrived.
func TestCleanStale(t *testing.T) {
	src := t.TempDir()
	r, _ := testRunner(t, src)
	r.ts.GlobalStep = 2
	if err := r.checkpoint(); err != nil {
		t.Fatal(err)
	}
	complete := CheckpointDir(src, 2)

	out := t.TempDir()
	copyDir(t, complete, filepath.Join(out, ".checkpoint-123456.tmp"))       // a staging directory
	copyDir(t, complete, filepath.Join(out, "..checkpoint-7.tmp.staging-9")) // peft.Save's staging beside one
	copyDir(t, complete, filepath.Join(out, ".checkpoint-4"+asideSuffix))    // aside, checkpoint-4 gone: restore
	copyDir(t, complete, filepath.Join(out, ".checkpoint-6"+asideSuffix))    // aside, checkpoint-6 incomplete: restore
	os.MkdirAll(filepath.Join(out, "checkpoint-6"), 0o755)
	copyDir(t, complete, filepath.Join(out, ".checkpoint-8"+asideSuffix)) // aside, checkpoint-8 complete: remove
	copyDir(t, complete, filepath.Join(out, "checkpoint-8"))
	os.WriteFile(filepath.Join(out, ".trainer_state.json.98765.tmp"), []byte("{half"), 0o644) // atomicfile's temporary
	os.WriteFile(filepath.Join(out, ".adapter_model.safetensors.1.tmp"), nil, 0o644)
	keep := []string{"adapter_config.json", "notes.tmp", ".hidden", "checkpoint-8"}
	os.WriteFile(filepath.Join(out, "adapter_config.json"), []byte("{}"), 0o644)
	os.WriteFile(filepath.Join(out, "notes.tmp"), nil, 0o644)
	os.WriteFile(filepath.Join(out, ".hidden"), nil, 0o644)

	var log bytes.Buffer
	if err := cleanStale(out, &log); err != nil {
		t.Fatal(err)
	}
	for _, step := range []int{4, 6, 8} {
		if err := checkComplete(CheckpointDir(out, step)); err != nil {
			t.Errorf("checkpoint-%d: %v", step, err)
		}
	}
	if got := strings.Join(hidden(t, out), " "); got != ".hidden" {
		t.Errorf("hidden entries left: %s", got)
	}
	for _, name := range keep {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("removed %s: %v", name, err)
		}
	}
	for _, want := range []string{"Removed .checkpoint-123456.tmp", "Removed ..checkpoint-7.tmp.staging-9", "Restored checkpoint-4", "Restored checkpoint-6", "Removed .checkpoint-8.old", "Removed .trainer_state.json.98765.tmp"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, log.String())
		}
	}
}

// --resume-from-checkpoint true takes the newest complete checkpoint and
// says which incomplete ones it skipped.
func TestLatestCheckpointSkipsIncomplete(t *testing.T) {
	src := t.TempDir()
	r, _ := testRunner(t, src)
	r.ts.GlobalStep = 2
	if err := r.checkpoint(); err != nil {
		t.Fatal(err)
	}
	complete := CheckpointDir(src, 2)

	dir := t.TempDir()
	for _, d := range []string{"checkpoint-2", "checkpoint-10", "checkpoint-20", "checkpoint-30", "checkpoint-x", "other-40"} {
		copyDir(t, complete, filepath.Join(dir, d))
	}
	os.Remove(filepath.Join(dir, "checkpoint-30", ManifestName))           // killed before the manifest
	os.Truncate(filepath.Join(dir, "checkpoint-20", peft.WeightsName), 10) // a file cut short
	var warn bytes.Buffer
	if got, err := LatestCheckpoint(dir, &warn); err != nil || got != filepath.Join(dir, "checkpoint-10") {
		t.Errorf("latest = %q, %v", got, err)
	}
	for _, want := range []string{"checkpoint-30 has no manifest.json", "checkpoint-20: adapter_model.safetensors has 10 bytes"} {
		if !strings.Contains(warn.String(), want) {
			t.Errorf("warnings lack %q:\n%s", want, warn.String())
		}
	}
	if _, err := LatestCheckpoint(t.TempDir(), io.Discard); err == nil {
		t.Error("no checkpoint: no error")
	}
	empty := t.TempDir()
	os.MkdirAll(filepath.Join(empty, "checkpoint-5"), 0o755)
	if _, err := LatestCheckpoint(empty, io.Discard); err == nil || !strings.Contains(err.Error(), "no complete checkpoint") {
		t.Errorf("only an incomplete checkpoint: %v", err)
	}
}
