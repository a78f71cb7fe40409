package finetune

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/internal/atomicfile"
	"github.com/parrot-llm/parrot/runtime/dataset"
)

// File names inside the output directory and its checkpoints.
const (
	TrainerStateName = "trainer_state.json" // transformers' TrainerState
	OptimizerName    = "optimizer.bin"      // Trainer.SaveState: LoRA weights, optimizer moments, step, RNG
	RunStateName     = "run_state.json"     // data-loader position and the loss sums of the loop
	ManifestName     = "manifest.json"      // a checkpoint's files and sizes, written last
	checkpointPrefix = "checkpoint-"
	asideSuffix      = ".old" // .checkpoint-N.old: the previous checkpoint-N while a new one is renamed in
)

// LogEntry is one element of log_history: a logging step, or the final
// summary (Train* fields) as transformers writes it.
type LogEntry struct {
	Epoch        float64  `json:"epoch"`
	GradNorm     *float64 `json:"grad_norm,omitempty"`
	LearningRate *float64 `json:"learning_rate,omitempty"`
	Loss         *float64 `json:"loss,omitempty"`
	Step         int      `json:"step"`

	TotalFlos             *float64 `json:"total_flos,omitempty"`
	TrainLoss             *float64 `json:"train_loss,omitempty"`
	TrainRuntime          *float64 `json:"train_runtime,omitempty"`
	TrainSamplesPerSecond *float64 `json:"train_samples_per_second,omitempty"`
	TrainStepsPerSecond   *float64 `json:"train_steps_per_second,omitempty"`
	TrainTokensPerSecond  *float64 `json:"train_tokens_per_second,omitempty"`
}

// TrainerState is trainer_state.json in transformers' layout (keys sorted,
// as TrainerState.save_to_json writes them).
type TrainerState struct {
	BestGlobalStep      *int       `json:"best_global_step"`
	BestMetric          *float64   `json:"best_metric"`
	BestModelCheckpoint *string    `json:"best_model_checkpoint"`
	Epoch               float64    `json:"epoch"`
	EvalSteps           int        `json:"eval_steps"`
	GlobalStep          int        `json:"global_step"`
	IsHyperParamSearch  bool       `json:"is_hyper_param_search"`
	IsLocalProcessZero  bool       `json:"is_local_process_zero"`
	IsWorldProcessZero  bool       `json:"is_world_process_zero"`
	LogHistory          []LogEntry `json:"log_history"`
	LoggingSteps        int        `json:"logging_steps"`
	MaxSteps            int        `json:"max_steps"`
	NumInputTokensSeen  int64      `json:"num_input_tokens_seen"`
	NumTrainEpochs      int        `json:"num_train_epochs"`
	SaveSteps           int        `json:"save_steps"`
	TotalFlos           float64    `json:"total_flos"`
	TrainBatchSize      int        `json:"train_batch_size"`
	TrialName           *string    `json:"trial_name"`
	TrialParams         *string    `json:"trial_params"`
}

// runState is what the loop itself needs to continue bit for bit.
type runState struct {
	Loader       dataset.State `json:"loader"`
	PendingLoss  float64       `json:"pending_loss"`  // sum of step losses since the last log
	PendingSteps int           `json:"pending_steps"` // steps since the last log
	TotalLoss    float64       `json:"total_loss"`    // sum of all step losses
}

// writeJSON writes v indented, atomically (temporary file, fsync, rename).
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, append(data, '\n'))
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

var checkpointRe = regexp.MustCompile(`^` + checkpointPrefix + `(\d+)$`)

// CheckpointDir is the directory of the checkpoint at step.
func CheckpointDir(outputDir string, step int) string {
	return filepath.Join(outputDir, checkpointPrefix+strconv.Itoa(step))
}

// manifest lists a checkpoint's files with their sizes. It is written last,
// so a checkpoint is complete when its manifest exists and every file it
// names has the size it gives.
type manifest struct {
	Files map[string]int64 `json:"files"` // file name → size in bytes
}

// checkpointFiles must be in every checkpoint's manifest.
var checkpointFiles = []string{peft.ConfigName, peft.WeightsName, TrainerStateName, OptimizerName, RunStateName}

// writeManifest records the regular files of dir in dir/manifest.json.
func writeManifest(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	m := manifest{Files: map[string]int64{}}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == ManifestName {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		m.Files[e.Name()] = info.Size()
	}
	return writeJSON(filepath.Join(dir, ManifestName), &m)
}

// checkComplete returns nil if dir holds a complete checkpoint, else what is
// wrong with it.
func checkComplete(dir string) error {
	var m manifest
	if err := readJSON(filepath.Join(dir, ManifestName), &m); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s has no %s (a checkpoint that was not finished)", dir, ManifestName)
		}
		return err
	}
	for _, name := range checkpointFiles {
		if _, ok := m.Files[name]; !ok {
			return fmt.Errorf("%s: %s does not list %s", dir, ManifestName, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Files)) {
		size := m.Files[name]
		if name != filepath.Base(name) || strings.HasPrefix(name, ".") {
			return fmt.Errorf("%s: %s lists %q, not a file name", dir, ManifestName, name)
		}
		info, err := os.Stat(filepath.Join(dir, name))
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w", dir, err)
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s: %s is not a regular file", dir, name)
		case info.Size() != size:
			return fmt.Errorf("%s: %s has %d bytes, the manifest says %d", dir, name, info.Size(), size)
		}
	}
	return nil
}

// LatestCheckpoint returns the complete checkpoint of the highest step in
// outputDir (transformers' get_last_checkpoint), and reports on warn each
// incomplete one it skips.
func LatestCheckpoint(outputDir string, warn io.Writer) (string, error) {
	entries, err := os.ReadDir(outputDir)
	if err != nil {
		return "", fmt.Errorf("looking for a checkpoint: %w", err)
	}
	type candidate struct {
		dir  string
		step int
	}
	var found []candidate
	for _, e := range entries {
		m := checkpointRe.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		step, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		found = append(found, candidate{filepath.Join(outputDir, e.Name()), step})
	}
	slices.SortFunc(found, func(a, b candidate) int { return b.step - a.step })
	for _, c := range found {
		err := checkComplete(c.dir)
		if err == nil {
			return c.dir, nil
		}
		if warn != nil {
			fmt.Fprintf(warn, "Skipping incomplete checkpoint: %v\n", err)
		}
	}
	return "", errors.New("no complete checkpoint-N directory in " + outputDir + " to resume from")
}

// isStaging reports whether name is a checkpoint's staging directory
// (.checkpoint-*.tmp), or a staging sibling of one that peft.Save makes
// while it writes into it (..checkpoint-*.tmp.staging-*).
func isStaging(name string) bool {
	return (strings.HasPrefix(name, "."+checkpointPrefix) || strings.HasPrefix(name, ".."+checkpointPrefix)) &&
		strings.Contains(name, ".tmp")
}

// cleanStale removes what a killed run leaves in outputDir: staging
// directories (see isStaging), atomicfile's temporary files (.*.tmp), and
// old checkpoints renamed aside (.checkpoint-N.old). An aside checkpoint
// whose replacement never arrived complete is put back in place. It
// reports what it did on out.
func cleanStale(outputDir string, out io.Writer) error {
	entries, err := os.ReadDir(outputDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(outputDir, name)
		switch {
		case isStaging(name) && e.IsDir(),
			strings.HasPrefix(name, ".") && strings.HasSuffix(name, ".tmp") && e.Type().IsRegular():
			if err := os.RemoveAll(path); err != nil {
				return err
			}
			fmt.Fprintf(out, "Removed %s, left by an interrupted run\n", name)
		case strings.HasPrefix(name, "."+checkpointPrefix) && strings.HasSuffix(name, asideSuffix) && e.IsDir():
			final := filepath.Join(outputDir, strings.TrimSuffix(name[1:], asideSuffix))
			if !checkpointRe.MatchString(filepath.Base(final)) {
				continue
			}
			if checkComplete(final) != nil && checkComplete(path) == nil {
				if err := os.RemoveAll(final); err != nil {
					return err
				}
				if err := os.Rename(path, final); err != nil {
					return err
				}
				fmt.Fprintf(out, "Restored %s, which an interrupted run was replacing\n", filepath.Base(final))
				continue
			}
			if err := os.RemoveAll(path); err != nil {
				return err
			}
			fmt.Fprintf(out, "Removed %s, left by an interrupted run\n", name)
		}
	}
	return atomicfile.SyncDir(outputDir)
}
