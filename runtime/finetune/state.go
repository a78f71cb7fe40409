package finetune

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/parrot-llm/parrot/internal/atomicfile"
	"github.com/parrot-llm/parrot/runtime/dataset"
)

// File names inside the output directory and its checkpoints.
const (
	TrainerStateName = "trainer_state.json" // transformers' TrainerState
	OptimizerName    = "optimizer.bin"      // Trainer.SaveState: LoRA weights, optimizer moments, step, RNG
	RunStateName     = "run_state.json"     // data-loader position and the loss sums of the loop
	checkpointPrefix = "checkpoint-"
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

// LatestCheckpoint returns the complete checkpoint of the highest step in
// outputDir (transformers' get_last_checkpoint).
func LatestCheckpoint(outputDir string) (string, error) {
	entries, err := os.ReadDir(outputDir)
	if err != nil {
		return "", fmt.Errorf("looking for a checkpoint: %w", err)
	}
	best, bestStep := "", -1
	for _, e := range entries {
		m := checkpointRe.FindStringSubmatch(e.Name())
		if m == nil || !e.IsDir() {
			continue
		}
		step, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		dir := filepath.Join(outputDir, e.Name())
		if _, err := os.Stat(filepath.Join(dir, RunStateName)); err != nil {
			continue // incomplete
		}
		if step > bestStep {
			best, bestStep = dir, step
		}
	}
	if best == "" {
		return "", errors.New("no checkpoint-N directory in " + outputDir + " to resume from")
	}
	return best, nil
}
