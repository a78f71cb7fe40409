// Command genmodel writes a random-weight Llama checkpoint in the Hugging
// Face layout (see runtime/testmodel):
//
//	genmodel --preset llama32-1b --quantize --out /tmp/llama1b-nf4
//	genmodel --preset tiny --layers 4 --dtype float32 --out /tmp/tiny
//
// A preset sets every option; flags given explicitly override it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/parrot-llm/parrot/runtime/testmodel"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("genmodel", flag.ContinueOnError)
	fs.SetOutput(stderr)
	preset := fs.String("preset", "tiny", "base options: tiny or llama32-1b")
	out := fs.String("out", "", "output directory (required)")
	var o testmodel.Options
	fs.IntVar(&o.Hidden, "hidden", 0, "hidden_size")
	fs.IntVar(&o.Layers, "layers", 0, "num_hidden_layers")
	fs.IntVar(&o.Heads, "heads", 0, "num_attention_heads")
	fs.IntVar(&o.KVHeads, "kv-heads", 0, "num_key_value_heads")
	fs.IntVar(&o.HeadDim, "head-dim", 0, "head_dim")
	fs.IntVar(&o.Intermediate, "intermediate", 0, "intermediate_size")
	fs.IntVar(&o.Vocab, "vocab", 0, "vocab_size (>= 512; the top 256 ids are special tokens)")
	fs.IntVar(&o.MaxPos, "max-pos", 0, "max_position_embeddings")
	fs.Float64Var(&o.RopeTheta, "rope-theta", 0, "rope_theta")
	fs.BoolVar(&o.Llama3Rope, "llama3-rope", false, "llama3 rope_scaling (factor 32, low 1, high 4, original 8192)")
	fs.BoolVar(&o.Tied, "tied", false, "tie_word_embeddings (no lm_head.weight)")
	fs.StringVar(&o.DType, "dtype", "", "float32 or bfloat16")
	fs.BoolVar(&o.Quantize, "quantize", false, "store the projections as bitsandbytes NF4 with double quantization")
	fs.Uint64Var(&o.Seed, "seed", 0, "PRNG seed of the weights")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: genmodel --out DIR [--preset tiny|llama32-1b] [options]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "genmodel: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "genmodel: --out DIR is required")
		return 2
	}
	var base testmodel.Options
	switch *preset {
	case "tiny":
		base = testmodel.Tiny()
	case "llama32-1b":
		base = testmodel.Llama32_1B()
	default:
		fmt.Fprintf(stderr, "genmodel: unknown preset %q (want tiny or llama32-1b)\n", *preset)
		return 2
	}
	// Flags given on the command line override the preset.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "hidden":
			base.Hidden = o.Hidden
		case "layers":
			base.Layers = o.Layers
		case "heads":
			base.Heads = o.Heads
		case "kv-heads":
			base.KVHeads = o.KVHeads
		case "head-dim":
			base.HeadDim = o.HeadDim
		case "intermediate":
			base.Intermediate = o.Intermediate
		case "vocab":
			base.Vocab = o.Vocab
		case "max-pos":
			base.MaxPos = o.MaxPos
		case "rope-theta":
			base.RopeTheta = o.RopeTheta
		case "llama3-rope":
			base.Llama3Rope = o.Llama3Rope
		case "tied":
			base.Tied = o.Tied
		case "dtype":
			base.DType = o.DType
		case "quantize":
			base.Quantize = o.Quantize
		case "seed":
			base.Seed = o.Seed
		}
	})
	if err := base.Validate(); err != nil {
		fmt.Fprintf(stderr, "genmodel: %v\n", err)
		return 2
	}
	start := time.Now()
	if err := testmodel.Generate(*out, base); err != nil {
		fmt.Fprintf(stderr, "genmodel: %v\n", err)
		return 1
	}
	var size int64
	if st, err := os.Stat(filepath.Join(*out, "model.safetensors")); err == nil {
		size = st.Size()
	}
	fmt.Fprintf(stdout, "wrote %s: %d layers, hidden %d, vocab %d, %s%s, model.safetensors %.1f MB in %s\n",
		*out, base.Layers, base.Hidden, base.Vocab, base.DType, map[bool]string{true: " + NF4", false: ""}[base.Quantize],
		float64(size)/1e6, time.Since(start).Round(time.Millisecond))
	return 0
}
