package testmodel

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/parrot-llm/parrot/internal/pyjson"
)

//go:embed corpus.txt
var corpus string // English text the BPE merges are learned from

//go:embed llama31_official.jinja
var llama31Template string // the official Llama 3.1 chat template (meta-llama tokenizer_config.json chat_template), verbatim

// llama3Split is the Llama 3 pre-tokenizer regex (tokenizer.json "Split").
const llama3Split = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// byteRunes is GPT-2's bytes_to_unicode: each byte maps to a printable
// rune, itself for printable Latin-1 and 256+n for the others in byte order.
func byteRunes() [256]rune {
	var m [256]rune
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			m[b] = rune(b)
		} else {
			m[b] = rune(256 + n)
			n++
		}
	}
	return m
}

// SpecialTokens are the 256 Llama 3 special tokens in id order (transformers
// convert_llama_weights_to_hf.py), the first being <|begin_of_text|>.
func SpecialTokens() []string {
	names := []string{"<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
		"<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
		"<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"}
	for i := 3; len(names) < NumSpecialTokens; i++ {
		names = append(names, fmt.Sprintf("<|reserved_special_token_%d|>", i))
	}
	return names
}

// preTokenize splits text roughly as the Llama 3 regex does, enough for
// learning merges from plain English: contractions, an optional
// non-letter followed by letters, 1-3 digits, an optional space followed
// by punctuation, and runs of whitespace.
func preTokenize(text string) []string {
	rs := []rune(text)
	isL := unicode.IsLetter
	isN := unicode.IsNumber
	isSpace := unicode.IsSpace
	isNL := func(r rune) bool { return r == '\r' || r == '\n' }
	isPunct := func(r rune) bool { return !isSpace(r) && !isL(r) && !isN(r) }
	var out []string
	for i := 0; i < len(rs); {
		j := i
		switch c := rs[i]; {
		case c == '\'' && contraction(rs[i+1:]) > 0:
			j = i + 1 + contraction(rs[i+1:])
		case isL(c) || (!isNL(c) && !isN(c) && i+1 < len(rs) && isL(rs[i+1])):
			for j = i + 1; j < len(rs) && isL(rs[j]); j++ {
			}
		case isN(c):
			for j = i + 1; j < len(rs) && j < i+3 && isN(rs[j]); j++ {
			}
		case isPunct(c) || (c == ' ' && i+1 < len(rs) && isPunct(rs[i+1])):
			for j = i + 1; j < len(rs) && isPunct(rs[j]); j++ {
			}
			for ; j < len(rs) && isNL(rs[j]); j++ {
			}
		default: // whitespace
			end := i
			for end < len(rs) && isSpace(rs[end]) {
				end++
			}
			lastNL := -1
			for k := i; k < end; k++ {
				if isNL(rs[k]) {
					lastNL = k
				}
			}
			switch {
			case lastNL >= 0: // \s*[\r\n]+
				j = lastNL + 1
			case end == len(rs) || end-i == 1: // \s+(?!\S) at the end, or \s+
				j = end
			default: // \s+(?!\S): leave the last space to the next token
				j = end - 1
			}
		}
		out = append(out, string(rs[i:j]))
		i = j
	}
	return out
}

// contraction returns the length of 's 't 're 've 'm 'll 'd after the
// apostrophe (case-insensitive), or 0.
func contraction(rs []rune) int {
	s := strings.ToLower(string(rs[:min(2, len(rs))]))
	for _, c := range []string{"re", "ve", "ll", "s", "t", "m", "d"} {
		if strings.HasPrefix(s, c) {
			return len(c)
		}
	}
	return 0
}

// bpeVocab learns byte-level BPE merges from the corpus until the vocabulary
// has size tokens: ids 0..255 are the 256 byte tokens in byte order; each
// merge adds a+b. At each step the most frequent adjacent pair wins, ties
// broken by the smaller (a, b). When the corpus has no pairs left, merges
// of an existing token with a byte token fill the rest, in id order.
func bpeVocab(size int) (tokens []string, merges [][2]string) {
	br := byteRunes()
	ids := map[string]int{}
	add := func(t string) {
		if _, ok := ids[t]; !ok {
			ids[t] = len(tokens)
			tokens = append(tokens, t)
		}
	}
	for b := 0; b < 256; b++ {
		add(string(br[b]))
	}
	// The corpus as distinct pre-tokens with counts, each a list of symbols.
	counts := map[string]int{}
	var order []string
	for _, w := range preTokenize(corpus) {
		if counts[w] == 0 {
			order = append(order, w)
		}
		counts[w]++
	}
	words := make([][]string, len(order))
	for i, w := range order {
		for _, b := range []byte(w) {
			words[i] = append(words[i], string(br[b]))
		}
	}
	for len(tokens) < size {
		pairs := map[[2]string]int{}
		for i, w := range words {
			for k := 0; k+1 < len(w); k++ {
				pairs[[2]string{w[k], w[k+1]}] += counts[order[i]]
			}
		}
		var best [2]string
		bestN := 0
		for p, n := range pairs {
			if n > bestN || (n == bestN && (p[0] < best[0] || (p[0] == best[0] && p[1] < best[1]))) {
				best, bestN = p, n
			}
		}
		if bestN == 0 {
			break
		}
		merges = append(merges, best)
		add(best[0] + best[1])
		for i, w := range words {
			var nw []string
			for k := 0; k < len(w); k++ {
				if k+1 < len(w) && w[k] == best[0] && w[k+1] == best[1] {
					nw = append(nw, best[0]+best[1])
					k++
				} else {
					nw = append(nw, w[k])
				}
			}
			words[i] = nw
		}
	}
	for a := 0; len(tokens) < size; a++ {
		for b := 0; b < 256 && len(tokens) < size; b++ {
			t := tokens[a] + tokens[b]
			if _, ok := ids[t]; !ok {
				merges = append(merges, [2]string{tokens[a], tokens[b]})
				add(t)
			}
		}
	}
	return tokens, merges
}

// object is a tokenizer.json object: its members in the order
// tokenizers writes them.
type object = pyjson.Object

// kv is one member of an object.
func kv(key string, value any) pyjson.Member { return pyjson.Member{Key: key, Value: value} }

func addedToken(id int, content string) object {
	return object{kv("id", id), kv("content", content), kv("single_word", false), kv("lstrip", false),
		kv("rstrip", false), kv("normalized", false), kv("special", true)}
}

// tokenizerJSON builds tokenizer.json in the Llama 3 layout: byte-level BPE
// with ignore_merges, the Llama 3 Split pre-tokenizer, a ByteLevel decoder,
// and a post-processor that prepends <|begin_of_text|>.
func tokenizerJSON(o Options) object {
	tokens, merges := bpeVocab(o.Vocab - NumSpecialTokens)
	var added []any
	for i, s := range SpecialTokens() {
		added = append(added, addedToken(o.BOS()+i, s))
	}
	vocab := make(object, len(tokens))
	for i, t := range tokens {
		vocab[i] = kv(t, i)
	}
	ms := make([]string, len(merges))
	for i, m := range merges {
		ms[i] = m[0] + " " + m[1]
	}
	bos := SpecialTokens()[0]
	byteLevel := func(prefix, trim, regex bool) object {
		return object{kv("type", "ByteLevel"), kv("add_prefix_space", prefix), kv("trim_offsets", trim), kv("use_regex", regex)}
	}
	special := func(typeID int) object {
		return object{kv("SpecialToken", object{kv("id", bos), kv("type_id", typeID)})}
	}
	seq := func(id string, typeID int) object {
		return object{kv("Sequence", object{kv("id", id), kv("type_id", typeID)})}
	}
	return object{
		kv("version", "1.0"),
		kv("truncation", nil),
		kv("padding", nil),
		kv("added_tokens", added),
		kv("normalizer", nil),
		kv("pre_tokenizer", object{kv("type", "Sequence"), kv("pretokenizers", []any{
			object{kv("type", "Split"), kv("pattern", object{kv("Regex", llama3Split)}), kv("behavior", "Isolated"), kv("invert", false)},
			byteLevel(false, true, false),
		})}),
		kv("post_processor", object{kv("type", "Sequence"), kv("processors", []any{
			byteLevel(true, false, true),
			object{kv("type", "TemplateProcessing"),
				kv("single", []any{special(0), seq("A", 0)}),
				kv("pair", []any{special(0), seq("A", 0), special(1), seq("B", 1)}),
				kv("special_tokens", object{kv(bos, object{kv("id", bos), kv("ids", []int{o.BOS()}), kv("tokens", []string{bos})})}),
			},
		})}),
		kv("decoder", byteLevel(true, true, true)),
		kv("model", object{kv("type", "BPE"), kv("dropout", nil), kv("unk_token", nil), kv("continuing_subword_prefix", nil),
			kv("end_of_word_suffix", nil), kv("fuse_unk", false), kv("byte_fallback", false), kv("ignore_merges", true),
			kv("vocab", vocab), kv("merges", ms)}),
	}
}

// tokenizerConfig is tokenizer_config.json as transformers saves it for Llama 3.1.
func tokenizerConfig(o Options) map[string]any {
	dec := map[string]any{}
	for i, s := range SpecialTokens() {
		dec[strconv.Itoa(o.BOS()+i)] = map[string]any{"content": s, "lstrip": false, "normalized": false,
			"rstrip": false, "single_word": false, "special": true}
	}
	return map[string]any{
		"added_tokens_decoder":         dec,
		"bos_token":                    SpecialTokens()[0],
		"chat_template":                llama31Template,
		"clean_up_tokenization_spaces": true,
		"eos_token":                    "<|eot_id|>",
		"model_input_names":            []string{"input_ids", "attention_mask"},
		"model_max_length":             o.MaxPos,
		"tokenizer_class":              "PreTrainedTokenizerFast",
	}
}

func specialTokensMap() map[string]any {
	tok := func(s string) map[string]any {
		return map[string]any{"content": s, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false}
	}
	return map[string]any{"bos_token": tok("<|begin_of_text|>"), "eos_token": tok("<|eot_id|>")}
}
