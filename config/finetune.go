package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cast"
	"github.com/spf13/pflag"
)

// LoRATargets are the seven projections of a Llama layer, the lab's default
// target_modules.
var LoRATargets = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

// Finetune is the configuration of `parrot finetune`. Names follow TRL's
// SFTConfig and PEFT's LoraConfig (max_seq_length → MaxSeqLength).
type Finetune struct {
	ModelConfig

	Dataset          string // .jsonl/.json/.parquet file or directory, or Hub dataset id
	DatasetSplit     string
	DatasetTextField string // column of plain-text rows
	SystemPrompt     string // system message of Dolly rows; "" = none
	OutputDir        string

	// LoRA (PEFT LoraConfig).
	R             int
	LoraAlpha     float64
	LoraDropout   float64
	TargetModules []string
	UseRSLoRA     bool

	// Training (SFTConfig / TrainingArguments).
	MaxSeqLength              int
	PerDeviceTrainBatchSize   int
	GradientAccumulationSteps int
	WarmupSteps               int
	MaxSteps                  int     // -1 = NumTrainEpochs decides
	NumTrainEpochs            float64 // used when MaxSteps is -1
	LearningRate              float64
	LRSchedulerType           string // "linear"
	WeightDecay               float64
	Optim                     string // "adamw_8bit" or "adamw_torch"
	MaxGradNorm               float64
	Seed                      uint64
	LoggingSteps              int
	SaveSteps                 int    // 0 = no checkpoints
	ResumeFromCheckpoint      string // "" = start fresh; "true" = the latest checkpoint in OutputDir; else a checkpoint directory
	GradientCheckpointing     bool

	// Masking (unsloth train_on_responses_only).
	TrainOnResponsesOnly bool
	InstructionPart      string // "" = the Llama 3 user header
	ResponsePart         string // "" = the Llama 3 assistant header
	ShowMasking          int    // print this sample's masking before training; -1 = none

	ConfigFile string
}

func finetuneFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("finetune", pflag.ContinueOnError)
	fs.SortFlags = false
	commonFlags(fs, "learning-rate: 2e-4",
		"base model: a local Hugging Face model directory, or a Hub id org/name[@revision]",
		"base weights of the projections: nf4 (QLoRA) or none (float32)")

	fs.String("dataset", "", "training data: a .jsonl, .json or .parquet file, a directory of them, or a Hub dataset id org/name[@revision]")
	fs.String("dataset-split", "train", "split of the dataset to train on")
	fs.String("dataset-text-field", "text", "column of plain-text rows (trained on every token)")
	fs.String("system-prompt", "You are an assistant", "system message given to instruction/context/response rows; empty = none")
	fs.String("output-dir", "", "where the adapter, trainer_state.json and checkpoint-N/ directories are written")

	fs.Int("r", 16, "LoRA rank")
	fs.Float64("lora-alpha", 16, "LoRA alpha (scale = alpha/r, or alpha/sqrt(r) with --use-rslora)")
	fs.Float64("lora-dropout", 0, "dropout on the LoRA input, in [0, 1)")
	fs.StringSlice("target-modules", LoRATargets, "projections that get adapters")
	fs.Bool("use-rslora", false, "rank-stabilised LoRA scale alpha/sqrt(r)")

	fs.Int("max-seq-length", 2048, "longer samples are truncated")
	fs.Int("per-device-train-batch-size", 2, "sequences per micro-batch")
	fs.Int("gradient-accumulation-steps", 4, "micro-batches per optimizer step")
	fs.Int("warmup-steps", 5, "optimizer steps of linear learning-rate warmup")
	fs.Int("max-steps", 1000, "optimizer steps to train; -1 = --num-train-epochs decides")
	fs.Float64("num-train-epochs", 3, "epochs to train when --max-steps is -1 (may be fractional)")
	fs.Float64("learning-rate", 2e-4, "peak learning rate")
	fs.String("lr-scheduler-type", "linear", "learning-rate schedule: linear (warmup, then linear decay to 0)")
	fs.Float64("weight-decay", 0.01, "AdamW decoupled weight decay")
	fs.String("optim", "adamw_8bit", "optimizer: adamw_8bit (bitsandbytes 8-bit states) or adamw_torch")
	fs.Float64("max-grad-norm", 1.0, "clip the gradient to this global L2 norm; 0 = no clipping")
	fs.Int64("seed", 3407, "seed of LoRA initialisation, dropout and data order")
	fs.Int("logging-steps", 1, "log loss, learning rate and grad norm every N optimizer steps")
	fs.Int("save-steps", 500, "write a checkpoint every N optimizer steps; 0 = none")
	fs.String("resume-from-checkpoint", "", "continue a run: a checkpoint directory, or true for the latest in --output-dir")
	fs.Bool("gradient-checkpointing", true, "recompute each layer's activations in the backward pass to save memory")

	fs.Bool("train-on-responses-only", true, "train conversations on the assistant replies only")
	fs.String("instruction-part", "", `token text that opens a user turn (\n allowed); default the Llama 3 user header`)
	fs.String("response-part", "", `token text that opens an assistant reply (\n allowed); default the Llama 3 assistant header`)
	fs.Int("show-masking", -1, "print sample N decoded as input and as labels (masked tokens as spaces) before training")
	envFlags(fs)
	return fs
}

// FinetuneUsage writes the --help text.
func FinetuneUsage(w io.Writer) {
	fmt.Fprintf(w, `Usage: finetune --model MODEL --dataset DATA --output-dir DIR [flags]

Fine-tunes a LoRA adapter on MODEL (QLoRA: the base stays frozen in 4-bit)
and writes it to DIR in PEFT format (adapter_config.json and
adapter_model.safetensors), loadable by serve --adapters-dir.
%s`, flagsHelp(finetuneFlags()))
}

// ParseFinetune reads the finetune configuration from args (without the
// program name), the environment and the --config file. --help prints the
// usage to out and returns ErrHelp.
func ParseFinetune(args []string, out io.Writer) (Finetune, error) {
	g, err := parseArgs(finetuneFlags(), args, out, FinetuneUsage, "every setting is a flag")
	if err != nil {
		return Finetune{}, err
	}
	c := Finetune{
		ConfigFile:  g.str("config"),
		ModelConfig: g.modelConfig(),

		Dataset:          g.str("dataset"),
		DatasetSplit:     g.str("dataset-split"),
		DatasetTextField: g.str("dataset-text-field"),
		SystemPrompt:     g.raw("system-prompt"),
		OutputDir:        g.str("output-dir"),

		R:             g.int("r"),
		LoraAlpha:     g.float("lora-alpha"),
		LoraDropout:   g.float("lora-dropout"),
		TargetModules: g.list("target-modules"),
		UseRSLoRA:     g.bool("use-rslora"),

		MaxSeqLength:              g.int("max-seq-length"),
		PerDeviceTrainBatchSize:   g.int("per-device-train-batch-size"),
		GradientAccumulationSteps: g.int("gradient-accumulation-steps"),
		WarmupSteps:               g.int("warmup-steps"),
		MaxSteps:                  g.int("max-steps"),
		NumTrainEpochs:            g.float("num-train-epochs"),
		LearningRate:              g.float("learning-rate"),
		LRSchedulerType:           strings.ToLower(g.str("lr-scheduler-type")),
		WeightDecay:               g.float("weight-decay"),
		Optim:                     strings.ToLower(g.str("optim")),
		MaxGradNorm:               g.float("max-grad-norm"),
		LoggingSteps:              g.int("logging-steps"),
		SaveSteps:                 g.int("save-steps"),
		ResumeFromCheckpoint:      g.str("resume-from-checkpoint"),
		GradientCheckpointing:     g.bool("gradient-checkpointing"),

		TrainOnResponsesOnly: g.bool("train-on-responses-only"),
		InstructionPart:      unescape(g.raw("instruction-part")),
		ResponsePart:         unescape(g.raw("response-part")),
		ShowMasking:          g.int("show-masking"),
	}
	seed := g.int64("seed")
	if g.err != nil {
		return Finetune{}, g.err
	}
	if seed < 0 {
		return Finetune{}, fmt.Errorf("--seed %d: must not be negative", seed)
	}
	c.Seed = uint64(seed)
	switch strings.ToLower(c.ResumeFromCheckpoint) {
	case "false":
		c.ResumeFromCheckpoint = ""
	case "true":
		c.ResumeFromCheckpoint = "true"
	}
	if c.Optim == "adamw_bnb_8bit" { // transformers' other name for it
		c.Optim = "adamw_8bit"
	}
	if err := c.Validate(); err != nil {
		return Finetune{}, err
	}
	return c, nil
}

// raw reads a string without trimming (markers end in newlines).
func (g *getter) raw(key string) string {
	val := g.v.Get(key)
	s, err := cast.ToStringE(val)
	if err != nil {
		g.fail(key, val, "a string")
	}
	return s
}

func (g *getter) float(key string) float64 {
	val := g.v.Get(key)
	f, err := cast.ToFloat64E(val)
	if s, ok := val.(string); ok {
		f, err = strconv.ParseFloat(strings.TrimSpace(s), 64)
	}
	if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
		err = errors.New("not finite")
	}
	if err != nil {
		g.fail(key, val, "a number")
	}
	return f
}

// unescape turns the escapes \n, \t and \\ into their characters, so the
// turn markers can be written on a command line or in an env variable.
func unescape(s string) string {
	return strings.NewReplacer(`\\`, `\`, `\n`, "\n", `\t`, "\t").Replace(s)
}

// Validate checks ranges and choices, with messages that name the flag.
func (c *Finetune) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.ModelConfig.validate(bad)
	if c.Dataset == "" {
		bad("--dataset is required: a .jsonl, .json or .parquet file, a directory, or a Hub dataset id such as org/name")
	}
	if c.OutputDir == "" {
		bad("--output-dir is required: where the adapter is written")
	}
	if c.DatasetSplit == "" {
		bad("--dataset-split must not be empty")
	}
	if c.DatasetTextField == "" {
		bad("--dataset-text-field must not be empty")
	}
	if c.R < 1 {
		bad("--r %d: the LoRA rank must be at least 1", c.R)
	}
	if !(c.LoraAlpha > 0) {
		bad("--lora-alpha %g: must be positive", c.LoraAlpha)
	}
	if c.LoraDropout < 0 || c.LoraDropout >= 1 {
		bad("--lora-dropout %g: must be in [0, 1)", c.LoraDropout)
	}
	if len(c.TargetModules) == 0 {
		bad("--target-modules: name at least one of %s", strings.Join(LoRATargets, ", "))
	}
	seen := map[string]bool{}
	for _, m := range c.TargetModules {
		if !slices.Contains(LoRATargets, m) {
			bad("--target-modules %q: not a Llama projection (want some of %s)", m, strings.Join(LoRATargets, ", "))
		}
		if seen[m] {
			bad("--target-modules %q is given twice", m)
		}
		seen[m] = true
	}
	if c.MaxSeqLength < 2 {
		bad("--max-seq-length %d: must be at least 2", c.MaxSeqLength)
	}
	if c.PerDeviceTrainBatchSize < 1 {
		bad("--per-device-train-batch-size %d: must be at least 1", c.PerDeviceTrainBatchSize)
	}
	if c.GradientAccumulationSteps < 1 {
		bad("--gradient-accumulation-steps %d: must be at least 1", c.GradientAccumulationSteps)
	}
	if c.WarmupSteps < 0 {
		bad("--warmup-steps %d: must not be negative", c.WarmupSteps)
	}
	switch {
	case c.MaxSteps == -1:
		if !(c.NumTrainEpochs > 0) {
			bad("--num-train-epochs %g: must be positive when --max-steps is -1", c.NumTrainEpochs)
		}
	case c.MaxSteps < 1:
		bad("--max-steps %d: must be positive, or -1 to train for --num-train-epochs", c.MaxSteps)
	}
	if !(c.LearningRate > 0) {
		bad("--learning-rate %g: must be positive", c.LearningRate)
	}
	if c.LRSchedulerType != "linear" {
		bad("--lr-scheduler-type %q: only linear is supported", c.LRSchedulerType)
	}
	if c.WeightDecay < 0 {
		bad("--weight-decay %g: must not be negative", c.WeightDecay)
	}
	if !slices.Contains([]string{"adamw_8bit", "adamw_torch"}, c.Optim) {
		bad("--optim %q: must be adamw_8bit or adamw_torch", c.Optim)
	}
	if c.MaxGradNorm < 0 {
		bad("--max-grad-norm %g: must be 0 (no clipping) or positive", c.MaxGradNorm)
	}
	if c.LoggingSteps < 1 {
		bad("--logging-steps %d: must be at least 1", c.LoggingSteps)
	}
	if c.SaveSteps < 0 {
		bad("--save-steps %d: must be 0 (no checkpoints) or positive", c.SaveSteps)
	}
	if c.ShowMasking < -1 {
		bad("--show-masking %d: must be a sample index, or -1 for none", c.ShowMasking)
	}
	if (c.InstructionPart == "") != (c.ResponsePart == "") {
		bad("--instruction-part and --response-part go together: give both, or neither for the Llama 3 headers")
	}
	if c.ResumeFromCheckpoint != "" && c.ResumeFromCheckpoint != "true" {
		if st, err := os.Stat(c.ResumeFromCheckpoint); err != nil || !st.IsDir() {
			bad("--resume-from-checkpoint %q: not a directory (give a checkpoint-N directory, or true for the latest in --output-dir)", c.ResumeFromCheckpoint)
		}
	}
	return errors.Join(errs...)
}
