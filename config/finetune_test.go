package config

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var finetuneRequired = []string{"--model", "org/base", "--dataset", "org/data", "--output-dir", "out"}

// The defaults are the lab's (SFTConfig/LoraConfig values of the notebook).
func TestFinetuneDefaults(t *testing.T) {
	c, err := ParseFinetune(finetuneRequired, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Finetune{
		ModelConfig: ModelConfig{Model: "org/base", Quantize: "nf4", Backend: "cpu"}, Dataset: "org/data", OutputDir: "out",
		DatasetSplit: "train", DatasetTextField: "text", SystemPrompt: "You are an assistant",
		R: 16, LoraAlpha: 16, LoraDropout: 0, UseRSLoRA: false,
		TargetModules: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
		MaxSeqLength:  2048, PerDeviceTrainBatchSize: 2, GradientAccumulationSteps: 4, WarmupSteps: 5,
		MaxSteps: 1000, NumTrainEpochs: 3, LearningRate: 2e-4, LRSchedulerType: "linear", WeightDecay: 0.01,
		Optim: "adamw_8bit", MaxGradNorm: 1, Seed: 3407, LoggingSteps: 1, SaveSteps: 500,
		GradientCheckpointing: true, TrainOnResponsesOnly: true, ShowMasking: -1,
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

// Precedence flag > environment > file > default, with every kind of value.
func TestFinetunePrecedence(t *testing.T) {
	file := writeYAML(t, `model: from-file
dataset: data.jsonl
output-dir: out
r: 8
lora_alpha: 32
use-rslora: true
target-modules: [q_proj, v_proj]
learning-rate: 1e-4
optim: adamw_torch
max-steps: -1
num-train-epochs: 1.5
response-part: "<|start_header_id|>assistant<|end_header_id|>\n\n"
instruction-part: "<|start_header_id|>user<|end_header_id|>\n\n"
system-prompt: "  Be a pirate.  "
`)
	c, err := ParseFinetune([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Model != "from-file" || c.R != 8 || c.LoraAlpha != 32 || !c.UseRSLoRA || c.LearningRate != 1e-4 ||
		c.Optim != "adamw_torch" || c.MaxSteps != -1 || c.NumTrainEpochs != 1.5 ||
		!reflect.DeepEqual(c.TargetModules, []string{"q_proj", "v_proj"}) {
		t.Fatalf("file values not applied: %+v", c)
	}
	if c.ResponsePart != "<|start_header_id|>assistant<|end_header_id|>\n\n" || c.InstructionPart != "<|start_header_id|>user<|end_header_id|>\n\n" {
		t.Errorf("markers lost their newlines: %q %q", c.InstructionPart, c.ResponsePart)
	}
	if c.SystemPrompt != "  Be a pirate.  " {
		t.Errorf("system prompt %q was altered", c.SystemPrompt)
	}

	t.Setenv("PARROT_R", "4")
	t.Setenv("PARROT_USE_RSLORA", "false")
	t.Setenv("PARROT_LEARNING_RATE", "3e-4")
	t.Setenv("PARROT_TARGET_MODULES", "o_proj, down_proj")
	c, err = ParseFinetune([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.R != 4 || c.UseRSLoRA || c.LearningRate != 3e-4 || !reflect.DeepEqual(c.TargetModules, []string{"o_proj", "down_proj"}) {
		t.Fatalf("env should win over the file: %+v", c)
	}

	c, err = ParseFinetune([]string{"--config", file, "--r", "2", "--use-rslora", "--learning-rate=5e-5",
		"--response-part", `<|start_header_id|>assistant<|end_header_id|>\n\n`, "--instruction-part", `USER:\n`}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.R != 2 || !c.UseRSLoRA || c.LearningRate != 5e-5 {
		t.Fatalf("flags should win over env: %+v", c)
	}
	if c.ResponsePart != "<|start_header_id|>assistant<|end_header_id|>\n\n" || c.InstructionPart != "USER:\n" {
		t.Errorf(`\n in flags not unescaped: %q %q`, c.InstructionPart, c.ResponsePart)
	}
}

func TestFinetuneResume(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ arg, want string }{{"true", "true"}, {"TRUE", "true"}, {"false", ""}, {dir, dir}} {
		cfg, err := ParseFinetune(append(finetuneRequired, "--resume-from-checkpoint", c.arg), nil)
		if err != nil || cfg.ResumeFromCheckpoint != c.want {
			t.Errorf("--resume-from-checkpoint %s: %q %v, want %q", c.arg, cfg.ResumeFromCheckpoint, err, c.want)
		}
	}
	cfg, err := ParseFinetune(append(finetuneRequired, "--optim", "adamw_bnb_8bit"), nil)
	if err != nil || cfg.Optim != "adamw_8bit" {
		t.Errorf("adamw_bnb_8bit alias: %q %v", cfg.Optim, err)
	}
}

func TestFinetuneInvalid(t *testing.T) {
	req := finetuneRequired
	with := func(extra ...string) []string { return append(append([]string(nil), req...), extra...) }
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no model", []string{"--dataset", "d", "--output-dir", "o"}, nil, "--model is required"},
		{"no dataset", []string{"--model", "m", "--output-dir", "o"}, nil, "--dataset is required"},
		{"no output", []string{"--model", "m", "--dataset", "d"}, nil, "--output-dir is required"},
		{"rank", with("--r", "0"), nil, "--r 0"},
		{"alpha", with("--lora-alpha", "0"), nil, "--lora-alpha 0"},
		{"dropout", with("--lora-dropout", "1"), nil, "--lora-dropout 1"},
		{"target", with("--target-modules", "q_proj,lm_head"), nil, `--target-modules "lm_head"`},
		{"target twice", with("--target-modules", "q_proj,q_proj"), nil, "given twice"},
		{"seq len", with("--max-seq-length", "1"), nil, "--max-seq-length 1"},
		{"batch", with("--per-device-train-batch-size", "0"), nil, "--per-device-train-batch-size 0"},
		{"accumulation", with("--gradient-accumulation-steps", "0"), nil, "--gradient-accumulation-steps 0"},
		{"warmup", with("--warmup-steps", "-1"), nil, "--warmup-steps -1"},
		{"max steps", with("--max-steps", "0"), nil, "--max-steps 0"},
		{"epochs", with("--max-steps", "-1", "--num-train-epochs", "0"), nil, "--num-train-epochs 0"},
		{"lr", with("--learning-rate", "0"), nil, "--learning-rate 0"},
		{"lr not a number", with("--learning-rate", "fast"), nil, "invalid argument"},
		{"env lr", with(), map[string]string{"PARROT_LEARNING_RATE": "fast"}, "PARROT_LEARNING_RATE"},
		{"env bool", with(), map[string]string{"PARROT_USE_RSLORA": "maybe"}, "PARROT_USE_RSLORA"},
		{"scheduler", with("--lr-scheduler-type", "cosine"), nil, "only linear"},
		{"weight decay", with("--weight-decay", "-0.1"), nil, "--weight-decay -0.1"},
		{"optim", with("--optim", "sgd"), nil, `--optim "sgd"`},
		{"grad norm", with("--max-grad-norm", "-1"), nil, "--max-grad-norm -1"},
		{"seed", with("--seed", "-3"), nil, "--seed -3"},
		{"logging", with("--logging-steps", "0"), nil, "--logging-steps 0"},
		{"save", with("--save-steps", "-1"), nil, "--save-steps -1"},
		{"show masking", with("--show-masking", "-2"), nil, "--show-masking -2"},
		{"one marker", with("--response-part", "A:"), nil, "go together"},
		{"resume dir", with("--resume-from-checkpoint", "/nonexistent/checkpoint-5"), nil, "not a directory"},
		{"quantize", with("--quantize", "int8"), nil, `--quantize "int8"`},
		{"unknown flag", with("--lora-rank", "8"), nil, "unknown flag: --lora-rank"},
		{"positional", with("extra"), nil, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := ParseFinetune(tc.args, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestFinetuneHelp(t *testing.T) {
	var out bytes.Buffer
	if _, err := ParseFinetune([]string{"--help"}, &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("err = %v, want ErrHelp", err)
	}
	help := out.String()
	for _, flag := range []string{"model", "dataset", "dataset-split", "dataset-text-field", "system-prompt", "output-dir",
		"r", "lora-alpha", "lora-dropout", "target-modules", "use-rslora", "max-seq-length", "per-device-train-batch-size",
		"gradient-accumulation-steps", "warmup-steps", "max-steps", "num-train-epochs", "learning-rate", "lr-scheduler-type",
		"weight-decay", "optim", "seed", "logging-steps", "save-steps", "resume-from-checkpoint", "gradient-checkpointing",
		"train-on-responses-only", "instruction-part", "response-part", "show-masking", "threads", "quantize", "max-grad-norm"} {
		if !strings.Contains(help, "--"+flag+" ") {
			t.Errorf("help lacks --%s", flag)
		}
		if !strings.Contains(help, "[$"+envName(flag)+"]") {
			t.Errorf("help lacks $%s", envName(flag))
		}
	}
}
