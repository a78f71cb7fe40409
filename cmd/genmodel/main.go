// Command genmodel writes a random-weight Llama checkpoint in the Hugging
// Face layout (see runtime/testmodel):
//
//	genmodel --preset llama32-1b --quantize --out /tmp/llama1b-nf4
//	genmodel --preset tiny --layers 4 --dtype float32 --out /tmp/tiny
//
// A preset sets every option; flags given explicitly override it.
//
// With --gguf it also writes the same weights as a llama.cpp GGUF, so that
// llama.cpp can serve the very model parrot serves (an NF4 projection is
// dequantized as parrot does, then encoded as the GGUF type):
//
//	genmodel --preset llama32-1b --quantize --out /tmp/m1b --gguf q4_0 --gguf-out /tmp/m1b-q4_0.gguf
//	genmodel --gguf-from /tmp/m1b --gguf f16 --gguf-out /tmp/m1b-f16.gguf
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
	ggufType := fs.String("gguf", "", "also write a llama.cpp GGUF of the same weights with the projections in this type: q4_0, q8_0, f16 or f32")
	ggufEmbd := fs.String("gguf-embd", "", "GGUF type of token_embd (the output matrix too when tied) and an untied output (default: the --gguf type)")
	ggufOut := fs.String("gguf-out", "", "GGUF file to write (default: DIR/model-TYPE.gguf)")
	ggufFrom := fs.String("gguf-from", "", "convert this existing model directory to GGUF instead of generating one (needs --gguf)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: genmodel --out DIR [--preset tiny|llama32-1b] [options] [--gguf TYPE [--gguf-out FILE]]\n")
		fmt.Fprintf(stderr, "       genmodel --gguf-from DIR --gguf TYPE [--gguf-out FILE]\n\n")
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
	var gopt ggufOptions
	if *ggufType != "" {
		var err error
		if gopt.Type, err = parseGGMLType(*ggufType); err != nil {
			fmt.Fprintf(stderr, "genmodel: --gguf: %v\n", err)
			return 2
		}
		gopt.EmbedType = gopt.Type
		if *ggufEmbd != "" {
			if gopt.EmbedType, err = parseGGMLType(*ggufEmbd); err != nil {
				fmt.Fprintf(stderr, "genmodel: --gguf-embd: %v\n", err)
				return 2
			}
		}
	} else if *ggufEmbd != "" || *ggufOut != "" || *ggufFrom != "" {
		fmt.Fprintln(stderr, "genmodel: --gguf-embd, --gguf-out and --gguf-from need --gguf TYPE")
		return 2
	}
	if *ggufFrom != "" {
		if *out != "" {
			fmt.Fprintln(stderr, "genmodel: --gguf-from converts an existing directory: give no --out")
			return 2
		}
		return writeGGUFFile(*ggufFrom, *ggufOut, *ggufType, gopt, stdout, stderr)
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
	if *ggufType != "" {
		return writeGGUFFile(*out, *ggufOut, *ggufType, gopt, stdout, stderr)
	}
	return 0
}

// writeGGUFFile converts dir to a GGUF at path (default dir/model-TYPE.gguf)
// and reports it in one line, which scripts/peer_llamacpp.py reads
// (per_token_bytes: what a decode step streams).
func writeGGUFFile(dir, path, typeName string, o ggufOptions, stdout, stderr io.Writer) int {
	if path == "" {
		path = filepath.Join(dir, "model-"+typeName+".gguf")
	}
	start := time.Now()
	sum, err := convertToGGUF(dir, path, o)
	if err != nil {
		fmt.Fprintf(stderr, "genmodel: gguf: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: %d tensors, projections %s, token_embd %s, %.1f MB of tensor data, per_token_bytes %d, %d F16 fallbacks, in %s\n",
		path, sum.Tensors, o.Type, o.EmbedType, float64(sum.Bytes)/1e6, sum.PerToken, sum.Fallback, time.Since(start).Round(time.Millisecond))
	return 0
}
