// Command grammarbench runs MaskBench-format schema files through the
// constrained-decoding matcher (runtime/grammar) on a model's tokenizer:
//
//	grammarbench --tokenizer DIR --data DIR
//
// DIR of --tokenizer holds tokenizer.json (and generation_config.json or
// config.json for the EOS ids); --data holds *.json files
// {"schema": ..., "tests": [{"description", "valid", "data"}]}. Each
// instance is serialised as Python's json.dumps(data, ensure_ascii=False),
// tokenized without special tokens and walked token by token: a valid one
// must have every token allowed and end accepting, an invalid one must be
// stopped. One JSON line per file, then a summary line. Timings are taken
// with GOMAXPROCS(1) on a locked OS thread: ttfm is compile plus the first
// mask, tbm one FillMask plus Consume.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"time"

	"github.com/parrot-llm/parrot/runtime/grammar"
	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type fileLine struct {
	File   string  `json:"file"`
	Status string  `json:"status"`
	Error  string  `json:"error,omitempty"`
	TTFMus float64 `json:"ttfm_us"`
	Tokens int     `json:"tokens"`
}

type summary struct {
	Schemas           int     `json:"schemas"`
	Passing           int     `json:"passing"`
	CompileError      int     `json:"compile_error"`
	ValidationError   int     `json:"validation_error"`
	InvalidationError int     `json:"invalidation_error"`
	TTFMp50           float64 `json:"ttfm_us_p50"`
	TTFMp99           float64 `json:"ttfm_us_p99"`
	TBMp50            float64 `json:"tbm_us_p50"`
	TBMp90            float64 `json:"tbm_us_p90"`
	TBMp99            float64 `json:"tbm_us_p99"`
	TBMmax            float64 `json:"tbm_us_max"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grammarbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tokDir := fs.String("tokenizer", "", "model directory holding tokenizer.json (required)")
	dataDir := fs.String("data", "", "directory of MaskBench *.json files (required)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *tokDir == "" || *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: grammarbench --tokenizer DIR --data DIR")
		return 2
	}
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	vocab, err := grammar.LoadVocab(*tokDir)
	if err != nil {
		fmt.Fprintln(stderr, "grammarbench:", err)
		return 1
	}
	tok, err := tokenizer.Load(*tokDir)
	if err != nil {
		fmt.Fprintln(stderr, "grammarbench:", err)
		return 1
	}
	files, err := filepath.Glob(filepath.Join(*dataDir, "*.json"))
	if err != nil || len(files) == 0 {
		fmt.Fprintf(stderr, "grammarbench: no *.json files in %s\n", *dataDir)
		return 1
	}
	sort.Strings(files)
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	var sum summary
	var ttfm []float64
	var tbm []time.Duration
	compile := grammar.SchemaCompiler(vocab, grammar.Options{})
	for _, path := range files {
		raw, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(stderr, "grammarbench:", err)
			return 1
		}
		var f grammar.BenchFile
		if err := json.Unmarshal(raw, &f); err != nil {
			fmt.Fprintf(stderr, "grammarbench: %s: %v\n", path, err)
			return 1
		}
		r := grammar.RunBench(&f, vocab, tok, compile)
		line := fileLine{File: filepath.Base(path), Status: r.Status, Error: r.Error, Tokens: r.Tokens,
			TTFMus: us(r.TTFM)}
		if err := enc.Encode(line); err != nil {
			return 1
		}
		sum.Schemas++
		switch r.Status {
		case grammar.StatusPassing:
			sum.Passing++
		case grammar.StatusCompileError:
			sum.CompileError++
		case grammar.StatusValidationError:
			sum.ValidationError++
		case grammar.StatusInvalidationError:
			sum.InvalidationError++
		}
		if r.Status != grammar.StatusCompileError {
			ttfm = append(ttfm, us(r.TTFM))
		}
		tbm = append(tbm, r.TBM...)
	}
	slices.Sort(ttfm)
	slices.Sort(tbm)
	sum.TTFMp50, sum.TTFMp99 = pct(ttfm, 50), pct(ttfm, 99)
	tb := make([]float64, len(tbm))
	for i, d := range tbm {
		tb[i] = us(d)
	}
	sum.TBMp50, sum.TBMp90, sum.TBMp99, sum.TBMmax = pct(tb, 50), pct(tb, 90), pct(tb, 99), pct(tb, 100)
	if err := enc.Encode(sum); err != nil {
		return 1
	}
	return 0
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// pct is the p-th percentile (nearest rank) of sorted xs.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	i := int(p/100*float64(len(xs))+0.5) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
