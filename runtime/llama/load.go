package llama

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/safetensors"
	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

// LoadOptions control how a model directory is loaded.
type LoadOptions struct {
	Quantize string          // QuantNF4 (default) or QuantNone
	Backend  kernels.Backend // required
	// LMHead8Bit stores the lm_head in 8 bits (Q8) for faster decoding.
	LMHead8Bit bool
	// LMHead4Bit stores it in NF4 (and a tied embedding table with it).
	LMHead4Bit bool
	// ChatTemplate overrides the checkpoint's template: a built-in name
	// (e.g. "llama-3.1"), the path of a template file, or Jinja source (see
	// chat.ResolveSource; anything else is refused). Empty = the
	// checkpoint's own, else llama-3.1 if the tokenizer has Llama 3 header
	// tokens.
	ChatTemplate string
}

// Loaded is everything needed to run a checkpoint.
type Loaded struct {
	Dir       string
	Model     *Model
	Tokenizer tokenizer.Tokenizer
	Template  *chat.Template // nil for base models without a chat template
	GenConfig *GenerationConfig
}

// Load reads a Hugging Face Llama model directory: config.json,
// generation_config.json, model.safetensors (or a sharded index),
// tokenizer.json and tokenizer_config.json.
func Load(dir string, opts LoadOptions) (*Loaded, error) {
	if opts.Backend == nil {
		return nil, errors.New("load: no backend")
	}
	if opts.Quantize == "" {
		opts.Quantize = QuantNF4
	}
	cfg, gen, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, err
	}
	// Weights are copied out of the mapping (converted or quantized), so the
	// files can be closed once loaded.
	defer set.Close()
	w, err := loadWeights(set, cfg, opts.Quantize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	switch {
	case opts.LMHead8Bit && opts.LMHead4Bit:
		return nil, errors.New("the lm_head is stored in 8 bits or in 4, not both")
	case opts.LMHead8Bit:
		if err := w.QuantizeLMHead(); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	case opts.LMHead4Bit:
		if err := w.QuantizeLMHeadNF4(); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > cfg.Vocab {
		return nil, fmt.Errorf("%s: tokenizer has %d tokens but the model only %d", dir, tok.VocabSize(), cfg.Vocab)
	}
	tmpl, err := loadTemplate(dir, opts.ChatTemplate, tok)
	if err != nil {
		return nil, err
	}
	m, err := NewModel(cfg, w, opts.Backend)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &Loaded{Dir: dir, Model: m, Tokenizer: tok, Template: tmpl, GenConfig: gen}, nil
}

func loadTemplate(dir, override string, tok tokenizer.Tokenizer) (*chat.Template, error) {
	tcData, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	specials := map[string]string{}
	var tmpl *chat.Template
	if len(tcData) > 0 {
		t, ok, err := chat.FromTokenizerConfig(tcData)
		if err != nil {
			return nil, fmt.Errorf("%s: chat template: %w", dir, err)
		}
		if ok {
			tmpl = t
		}
		if specials, err = chat.SpecialTokens(tcData); err != nil {
			return nil, err
		}
	}
	src := ""
	switch {
	case override != "":
		if src, err = chat.ResolveSource(override); err != nil {
			return nil, err
		}
	case tmpl == nil:
		// A checkpoint without a template but with Llama 3 header tokens gets
		// the built-in llama-3.1 template; a base model gets none.
		if _, ok := tok.TokenID("<|start_header_id|>"); ok {
			src, _ = chat.Builtin("llama-3.1")
			if _, ok := specials["bos_token"]; !ok {
				specials["bos_token"] = "<|begin_of_text|>"
			}
		}
	}
	if src != "" {
		t, err := chat.New(src, specials)
		if err != nil {
			return nil, fmt.Errorf("chat template: %w", err)
		}
		tmpl = t
	}
	return tmpl, nil
}
