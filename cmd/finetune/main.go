// Command finetune trains a LoRA adapter on a Llama-family model (QLoRA: the
// base stays frozen in 4-bit) and writes it in PEFT format, so that
// `serve --adapters-dir` can load it.
//
//	go run ./cmd/finetune --model unsloth/Llama-3.2-1B-Instruct-bnb-4bit \
//	    --dataset Peyton3995/dolly-15k-mistral-pirate --output-dir adapters/pirate-lora
//	go run ./cmd/finetune --model testdata/stories260K --quantize none \
//	    --dataset testdata/pirate_stories.jsonl --output-dir /tmp/pirate --max-steps 300
//
// See `finetune --help` for the flags (and their PARROT_* variables).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/parrot-llm/parrot/config"
	"github.com/parrot-llm/parrot/kernels/backends"
	"github.com/parrot-llm/parrot/runtime/finetune"
	"github.com/parrot-llm/parrot/runtime/hub"
	"github.com/parrot-llm/parrot/runtime/llama"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal (which stops after the current step),
		// restore the default: a second one kills.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run trains and returns the exit status: 0 on success, 1 on a failure, 2
// on bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := config.ParseFinetune(args, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "finetune: %v\n", err)
		return 2
	}
	if err := train(ctx, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "finetune: %v\n", err)
		if errors.Is(err, context.Canceled) && cfg.SaveSteps > 0 {
			fmt.Fprintf(stderr, "finetune: continue from the last checkpoint with --resume-from-checkpoint true\n")
		}
		return 1
	}
	return 0
}

// train loads the model and the data and runs the job.
func train(ctx context.Context, cfg config.Finetune, stdout, stderr io.Writer) error {
	client, err := hub.NewFromEnv()
	if err != nil {
		return err
	}
	if cfg.DownloadDir != "" {
		client.CacheDir = cfg.DownloadDir
	}
	dir, err := client.ResolveModel(ctx, cfg.Model, cfg.Revision, func(repoID, revision string) {
		fmt.Fprintf(stderr, "Fetching %s@%s from the Hub into %s\n", repoID, revision, client.CacheDir)
	})
	if err != nil {
		return err
	}
	backend, closeBackend, err := backends.New(cfg.Backend, cfg.Threads)
	if err != nil {
		return err
	}
	defer closeBackend()
	start := time.Now()
	fmt.Fprintf(stderr, "Loading %s (quantize %s, backend %s)\n", dir, cfg.Quantize, cfg.Backend)
	loaded, err := llama.Load(dir, llama.LoadOptions{Quantize: cfg.Quantize, Backend: backend, ChatTemplate: cfg.ChatTemplate})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Loaded in %.1f s (chat template: %v)\n", time.Since(start).Seconds(), loaded.Template != nil)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted while loading: %w", err)
	}
	_, err = finetune.Run(ctx, finetune.Job{Options: options(cfg), Model: loaded, Hub: client, Stdout: stdout, Stderr: stderr})
	return err
}

// options are the run's settings from the command's configuration.
func options(c config.Finetune) finetune.Options {
	return finetune.Options{
		Model:            c.Model,
		Dataset:          c.Dataset,
		DatasetSplit:     c.DatasetSplit,
		DatasetTextField: c.DatasetTextField,
		SystemPrompt:     c.SystemPrompt,
		OutputDir:        c.OutputDir,

		R:             c.R,
		LoraAlpha:     c.LoraAlpha,
		LoraDropout:   c.LoraDropout,
		TargetModules: c.TargetModules,
		UseRSLoRA:     c.UseRSLoRA,

		MaxSeqLength:              c.MaxSeqLength,
		PerDeviceTrainBatchSize:   c.PerDeviceTrainBatchSize,
		GradientAccumulationSteps: c.GradientAccumulationSteps,
		WarmupSteps:               c.WarmupSteps,
		MaxSteps:                  c.MaxSteps,
		NumTrainEpochs:            c.NumTrainEpochs,
		LearningRate:              c.LearningRate,
		WeightDecay:               c.WeightDecay,
		Optim:                     c.Optim,
		MaxGradNorm:               c.MaxGradNorm,
		Seed:                      c.Seed,
		LoggingSteps:              c.LoggingSteps,
		SaveSteps:                 c.SaveSteps,
		ResumeFromCheckpoint:      c.ResumeFromCheckpoint,
		GradientCheckpointing:     c.GradientCheckpointing,

		TrainOnResponsesOnly: c.TrainOnResponsesOnly,
		InstructionPart:      c.InstructionPart,
		ResponsePart:         c.ResponsePart,
		ShowMasking:          c.ShowMasking,
	}
}
