package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/adapters/peft"
	"github.com/parrot-llm/parrot/config"
)

const storiesDir = "../../testdata/stories260K"

func TestRunFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "--gradient-accumulation-steps") {
		t.Errorf("--help: exit %d, output %q", code, out.String())
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--model", storiesDir, "--output-dir", "o"}, 2, "--dataset is required"},
		{[]string{"--model", storiesDir, "--dataset", "d.jsonl", "--output-dir", "o", "--optim", "sgd"}, 2, `--optim "sgd"`},
		{[]string{"--model", storiesDir, "--dataset", "d.jsonl", "--output-dir", "o", "--r", "many"}, 2, "invalid argument"},
		{[]string{"--model", "/nonexistent/model", "--dataset", "d.jsonl", "--output-dir", t.TempDir()}, 1, "--model /nonexistent/model: no such directory"},
		{[]string{"--model", storiesDir, "--dataset", "/nonexistent/d.jsonl", "--output-dir", t.TempDir(), "--quantize", "none"}, 1,
			"dataset /nonexistent/d.jsonl: no such file"},
		// A misspelt built-in name is refused, not used as the template text.
		{[]string{"--model", storiesDir, "--dataset", "d.jsonl", "--output-dir", t.TempDir(), "--quantize", "none", "--chat-template", "llama3.1"}, 1,
			`chat template "llama3.1" is not a built-in template (llama-3.1), a file, or Jinja source`},
	} {
		errOut.Reset()
		code := run(context.Background(), c.args, &out, &errOut)
		if code != c.code || !strings.Contains(errOut.String(), c.want) || !strings.Contains(errOut.String(), "finetune: "+c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", c.args, code, errOut.String(), c.code, c.want)
		}
	}
}

// Every option of the run is the setting of the same name, none left at
// its zero value.
func TestOptionsFromConfig(t *testing.T) {
	cfg, err := config.ParseFinetune([]string{"--model", "org/base", "--dataset", "d.jsonl", "--output-dir", "o",
		"--system-prompt", "S", "--lora-dropout", "0.1", "--use-rslora", "--instruction-part", "U", "--response-part", "A",
		"--resume-from-checkpoint", t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := reflect.ValueOf(options(cfg))
	c := reflect.ValueOf(cfg)
	for i := range opts.NumField() {
		name := opts.Type().Field(i).Name
		got, want := opts.Field(i), c.FieldByName(name)
		if !want.IsValid() || !reflect.DeepEqual(got.Interface(), want.Interface()) || got.IsZero() {
			t.Errorf("option %s = %v, want the setting's %v", name, got, want)
		}
	}
}

// A base model with conversation rows cannot train: the error says why.
func TestRunChatRowsOnBaseModel(t *testing.T) {
	data := filepath.Join(t.TempDir(), "dolly.jsonl")
	os.WriteFile(data, []byte(`{"instruction": "Say arr.", "context": "", "response": "Arr!"}`+"\n"), 0o644)
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"--model", storiesDir, "--dataset", data, "--output-dir", t.TempDir(), "--quantize", "none"}, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "no chat template") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}

// The whole command on stories260K: a few steps write a PEFT adapter.
func TestRunTrainsAnAdapter(t *testing.T) {
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"--model", storiesDir, "--dataset", "../../testdata/pirate_stories.jsonl", "--output-dir", out,
		"--max-steps", "2", "--max-seq-length", "64", "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "1",
		"--r", "4", "--lora-alpha", "8", "--save-steps", "0", "--threads", "2", "--show-masking", "0"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
	a, err := peft.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if a.Config.R != 4 || a.Config.LoraAlpha != 8 || len(a.Modules) != 5*7 {
		t.Errorf("adapter: r %d alpha %v, %d modules", a.Config.R, a.Config.LoraAlpha, len(a.Modules))
	}
	for _, want := range []string{"Sample 0 input:", "Num examples = 100", "{'loss': ", "minutes used for training."} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	if _, err := os.Stat(filepath.Join(out, "trainer_state.json")); err != nil {
		t.Error(err)
	}
}

// --resume-from-checkpoint continues a run from its checkpoint directory to
// the same adapter bytes.
func TestRunResume(t *testing.T) {
	outA, outB := t.TempDir(), t.TempDir()
	common := []string{"--model", storiesDir, "--dataset", "../../testdata/pirate_stories.jsonl", "--max-steps", "4", "--save-steps", "2",
		"--max-seq-length", "48", "--per-device-train-batch-size", "2", "--gradient-accumulation-steps", "1", "--r", "4", "--threads", "1"}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), append(common, "--output-dir", outA), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	ckpt := filepath.Join(outA, "checkpoint-2")
	if code := run(context.Background(), append(common, "--output-dir", outB, "--resume-from-checkpoint", ckpt), &stdout, &stderr); code != 0 {
		t.Fatalf("resume: exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "Resumed from "+ckpt+" at step 2") {
		t.Errorf("no resume notice in:\n%s", stdout.String())
	}
	a, _ := os.ReadFile(filepath.Join(outA, peft.WeightsName))
	b, _ := os.ReadFile(filepath.Join(outB, peft.WeightsName))
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Error("the resumed run's adapter differs from the uninterrupted run's")
	}
}
