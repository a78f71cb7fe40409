package tokenizer

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// streamAll feeds ids one at a time and returns every chunk and the flush.
func streamAll(t *testing.T, d *StreamDecoder, ids []int32) (chunks []string, flush string) {
	t.Helper()
	for _, id := range ids {
		s, err := d.Add(id)
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, s)
	}
	return chunks, d.Flush()
}

// checkStream checks, for random id sequences, that the streamed text equals
// Decode of all ids, that no chunk splits a UTF-8 character, and that a
// decoder primed with a prefix emits exactly Decode(all) less Decode(prefix)
// (when the prefix's text is not merged with what follows).
func checkStream(t *testing.T, tk Tokenizer, draw func(r *rand.Rand) int32, seqs int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed+1))
	for n := 0; n < seqs; n++ {
		ids := make([]int32, r.IntN(40))
		for i := range ids {
			ids[i] = draw(r)
		}
		for _, skip := range []bool{false, true} {
			want, err := tk.Decode(ids, skip)
			if err != nil {
				t.Fatal(err)
			}
			chunks, flush := streamAll(t, NewStreamDecoder(tk, skip), ids)
			got := strings.Join(chunks, "") + flush
			if got != want {
				t.Fatalf("ids %v skip %v: streamed %q, Decode %q", ids, skip, got, want)
			}
			for _, c := range chunks {
				if strings.ContainsRune(c, '\uFFFD') && !strings.ContainsRune(want, '\uFFFD') {
					t.Fatalf("ids %v: chunk %q has U+FFFD that Decode does not", ids, c)
				}
			}
			// Prime with a prefix of k ids.
			k := r.IntN(len(ids) + 1)
			prefix, err := tk.Decode(ids[:k], skip)
			if err != nil {
				t.Fatal(err)
			}
			d := NewStreamDecoder(tk, skip)
			if err := d.Prime(ids[:k]); err != nil {
				t.Fatal(err)
			}
			rest, flush2 := streamAll(t, d, ids[k:])
			got = strings.Join(rest, "") + flush2
			if strings.HasPrefix(want, prefix) && prefix+got != want || !strings.HasSuffix(want, got) {
				t.Fatalf("ids %v skip %v primed with %d: emitted %q after prefix %q, Decode %q", ids, skip, k, got, prefix, want)
			}
		}
	}
}

func TestStreamStories(t *testing.T) {
	tk := loadStories(t)
	checkStream(t, tk, func(r *rand.Rand) int32 { return int32(r.IntN(tk.VocabSize())) }, 3000, 7)
}

func TestStreamLlama3(t *testing.T) {
	tk, _ := loadLlama3(t)
	// Half the ids are single-byte tokens, so characters split across tokens
	// and ill-formed sequences are common.
	var byteIDs []int32
	table := newByteLevelTable()
	for b := 0; b < 256; b++ {
		id, ok := tk.TokenID(string(table.byteToRune[b]))
		if !ok {
			t.Fatalf("no token for byte %d", b)
		}
		byteIDs = append(byteIDs, id)
	}
	checkStream(t, tk, func(r *rand.Rand) int32 {
		switch x := r.IntN(10); {
		case x < 5:
			return byteIDs[r.IntN(256)]
		case x < 9:
			return int32(r.IntN(128000))
		default:
			return int32(128000 + r.IntN(256))
		}
	}, 2000, 9)
}

// A streamed SentencePiece generation keeps the space of its first token when
// the decoder was primed with the prompt.
func TestStreamPrimeLeadingSpace(t *testing.T) {
	tk := loadStories(t)
	prompt, _ := tk.Encode("Once upon", true)
	gen := []int32{261, 378} // "▁a", "▁time"
	d := NewStreamDecoder(tk, true)
	if err := d.Prime(prompt); err != nil {
		t.Fatal(err)
	}
	chunks, flush := streamAll(t, d, gen)
	if got := strings.Join(chunks, "") + flush; got != " a time" {
		t.Errorf("primed stream = %q, want %q", got, " a time")
	}
	// Without the prompt the first leading space is stripped.
	chunks, flush = streamAll(t, NewStreamDecoder(tk, true), gen)
	if got := strings.Join(chunks, "") + flush; got != "a time" {
		t.Errorf("unprimed stream = %q, want %q", got, "a time")
	}
	// Bytes of one character are held until the character is complete.
	d = NewStreamDecoder(tk, false)
	var out []string
	for _, id := range []int32{0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x8A + 3, 317} {
		s, err := d.Add(id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if strings.Join(out[:4], "") != "" || out[4] != "😊 Lily" {
		t.Errorf("byte run chunks = %q", out)
	}
}

// synthJSON builds a small SentencePiece-like tokenizer.json with the given
// decoder, to run the decoder pipeline in shapes the real files do not use.
func synthJSON(decoder string) []byte {
	vocab := map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}
	for b := 0; b < 256; b++ {
		vocab[fmt.Sprintf("<0x%02X>", b)] = 3 + b
	}
	for _, s := range []string{"▁", "a", "b", "▁a", "ab", "ba", "▁▁", "a▁", " ", "x", "é", "Ġ", "ĠaĠ"} {
		vocab[s] = len(vocab)
	}
	v, _ := json.Marshal(vocab)
	return []byte(fmt.Sprintf(`{
		"added_tokens": [
			{"id": 0, "content": "<unk>", "special": true},
			{"id": 1, "content": "<s>", "special": true},
			{"id": 2, "content": "</s>", "special": true}],
		"normalizer": null, "pre_tokenizer": null, "post_processor": null,
		"decoder": %s,
		"model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": true, "vocab": %s, "merges": []}}`, decoder, v))
}

var synthDecoders = map[string]string{
	"none":      `null`,
	"llama2":    `{"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}`,
	"metaspace": `{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}`,
	"bf-meta":   `{"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}]}`,
	"fused":     `{"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "Replace", "pattern": {"String": "ab"}, "content": "Z"}, {"type": "Strip", "content": "b", "start": 2, "stop": 1}, {"type": "Replace", "pattern": {"String": "▁▁"}, "content": "_"}]}`,
	"fuse-bf":   `{"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never"}]}`,
	"regex":     `{"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Replace", "pattern": {"Regex": "a+▁"}, "content": "-"}, {"type": "Strip", "content": "▁", "start": 3, "stop": 2}]}`,
	"bytelevel": `{"type": "Sequence", "decoders": [{"type": "ByteLevel"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}`,
}

func TestStreamDecoderShapes(t *testing.T) {
	for name, dec := range synthDecoders {
		t.Run(name, func(t *testing.T) {
			tk, err := FromJSON(synthJSON(dec), nil)
			if err != nil {
				t.Fatal(err)
			}
			checkStream(t, tk, func(r *rand.Rand) int32 {
				if r.IntN(3) == 0 {
					return int32(3 + 0x80 + r.IntN(0x80)) // a byte token of a multibyte character
				}
				return int32(r.IntN(tk.VocabSize()))
			}, 1500, 11)
		})
	}
}

// Hand-worked decodes of the synthetic pipelines, following tokenizers'
// decode_chain of each step.
func TestDecodePipelines(t *testing.T) {
	ids := func(toks ...string) []int32 {
		tk, _ := FromJSON(synthJSON("null"), nil)
		var out []int32
		for _, s := range toks {
			id, ok := tk.TokenID(s)
			if !ok {
				t.Fatalf("no token %q", s)
			}
			out = append(out, id)
		}
		return out
	}
	cases := []struct {
		decoder string
		toks    []string
		want    string
	}{
		{"none", []string{"<s>", "▁a", "b"}, "<s> ▁a b"},
		// Metaspace drops every ▁ of the first token, maps the others to spaces.
		{"metaspace", []string{"▁▁", "▁a", "a▁"}, " aa "},
		// <0xC3><0xA9> is "é"; the lone <0xC3> before "a" is one U+FFFD.
		{"llama2", []string{"▁a", "<0xC3>", "<0xA9>", "▁▁", "<0xC3>", "a"}, "aé  \uFFFDa"},
		{"llama2", []string{"<0xC3>", "<0xA9>", "<0xC3>"}, "\uFFFD\uFFFD\uFFFD"},
		// Fuse, then "ab" -> Z, strip up to 2 leading and 1 trailing b.
		{"fused", []string{"b", "ba", "b", "▁▁", "ab"}, "Z_Z"},
		{"fused", []string{"a", "b", "b"}, "Z"},
		{"fused", []string{"b", "b", "b"}, ""},
		// After a Fuse, ByteFallback sees one token: "<0x41>" stays text.
		{"fuse-bf", []string{"<0x41>", "▁a"}, "<0x41> a"},
		{"bytelevel", []string{"Ġ", "ĠaĠ", "<s>"}, " a <s>"},
	}
	for _, c := range cases {
		tk, err := FromJSON(synthJSON(synthDecoders[c.decoder]), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := tk.Decode(ids(c.toks...), false)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s: Decode(%q) = %q, want %q", c.decoder, c.toks, got, c.want)
		}
	}
}

// A Tokenizer from outside this package gets the re-decoding stream decoder.
type foreignTokenizer struct{ Tokenizer }

func TestStreamGenericFallback(t *testing.T) {
	tk := foreignTokenizer{loadStories(t)}
	ids, _ := tk.Encode("Once upon a time 😊 Lily", true)
	chunks, flush := streamAll(t, NewStreamDecoder(tk, true), ids)
	want, _ := tk.Decode(ids, true)
	if got := strings.Join(chunks, "") + flush; got != want {
		t.Errorf("generic stream = %q, want %q", got, want)
	}
}
