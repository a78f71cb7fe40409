package dataset

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/testmodel"
	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

const m = IgnoreIndex

// The unsloth algorithm on synthetic ids, response marker [1 2], instruction
// marker [3 4]; each want was worked out by hand from
// unsloth_zoo.dataset_utils.train_on_responses_only (force_match=True).
func TestMaskResponsesAlgorithm(t *testing.T) {
	mk := &Markers{Response: []int32{1, 2}, Instruction: []int32{3, 4}}
	for _, c := range []struct {
		name string
		ids  []int32
		want []int32
	}{
		{"two turns, last reply runs to the end",
			[]int32{9, 3, 4, 5, 1, 2, 6, 7, 3, 4, 8, 1, 2, 6},
			[]int32{m, m, m, m, m, m, 6, 7, m, m, m, m, m, 6}},
		{"response marker last: nothing to learn", []int32{5, 1, 2}, []int32{m, m, m}},
		{"one token after the marker", []int32{5, 1, 2, 7}, []int32{m, m, m, 7}},
		{"a second response marker before any instruction is trained",
			[]int32{1, 2, 5, 1, 2, 6, 3, 4, 7},
			[]int32{m, m, 5, 1, 2, 6, m, m, m}},
		{"an instruction marker cut at the end is trained", []int32{1, 2, 5, 3}, []int32{m, m, 5, 3}},
		// After an instruction marker unsloth skips one more token, so a
		// response marker right after it is missed.
		{"marker right after an instruction is skipped",
			[]int32{1, 2, 5, 3, 4, 1, 2, 6},
			[]int32{m, m, 5, m, m, m, m, m}},
		{"no response marker", []int32{3, 4, 5, 6}, []int32{m, m, m, m}},
		{"empty", nil, []int32{}},
	} {
		got := MaskResponses(c.ids, mk)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %v\nwant %v", c.name, got, c.want)
		}
	}
}

// tinyModel writes the Tiny test model (byte-level BPE with the Llama 3
// special tokens and the official Llama 3.1 template) and returns its
// tokenizer and template.
func tinyModel(t *testing.T) (tokenizer.Tokenizer, *chat.Template) {
	t.Helper()
	dir := t.TempDir()
	if err := testmodel.Generate(dir, testmodel.Tiny()); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, ok, err := chat.FromTokenizerConfig(tc)
	if err != nil || !ok {
		t.Fatalf("template: ok=%v err=%v", ok, err)
	}
	return tok, tmpl
}

// referenceLabels is an independent, string-level statement of what
// train_on_responses_only trains: the characters from the end of each
// assistant header to the start of the next user header (or the end), mapped
// to tokens through each token's decoded span. A token is trained iff it
// lies wholly inside such a span.
func referenceLabels(t *testing.T, tok tokenizer.Tokenizer, ids []int32) []int32 {
	t.Helper()
	var text strings.Builder
	starts := make([]int, len(ids)+1)
	for i, id := range ids {
		starts[i] = text.Len()
		s, err := tok.Decode([]int32{id}, false)
		if err != nil {
			t.Fatal(err)
		}
		text.WriteString(s)
	}
	starts[len(ids)] = text.Len()
	full := text.String()
	trained := make([]bool, len(full)+1)
	for pos := 0; ; {
		a := strings.Index(full[pos:], Llama3ResponsePart)
		if a < 0 {
			break
		}
		from := pos + a + len(Llama3ResponsePart)
		to := len(full)
		if u := strings.Index(full[from:], Llama3InstructionPart); u >= 0 {
			to = from + u
		}
		for i := from; i < to; i++ {
			trained[i] = true
		}
		pos = to
		if pos >= len(full) {
			break
		}
	}
	labels := make([]int32, len(ids))
	for i, id := range ids {
		labels[i] = IgnoreIndex
		if starts[i] < starts[i+1] && trained[starts[i]] && trained[starts[i+1]-1] {
			labels[i] = id
		}
	}
	return labels
}

func TestMaskLlama31Conversations(t *testing.T) {
	tok, tmpl := tinyModel(t)
	id := func(s string) int32 {
		v, ok := tok.TokenID(s)
		if !ok {
			t.Fatalf("no token %s", s)
		}
		return v
	}
	eot, bos := id("<|eot_id|>"), id("<|begin_of_text|>")
	enc, err := NewEncoder(tok, tmpl, EncoderOptions{ResponsesOnly: true, EOS: -1})
	if err != nil {
		t.Fatal(err)
	}
	if enc.Markers() == nil {
		t.Fatal("Llama 3 markers not detected")
	}
	// The markers are the header tokens plus "\n\n".
	nl, err := tok.Encode("\n\n", false)
	if err != nil || len(nl) == 0 {
		t.Fatalf("\\n\\n = %v, %v", nl, err)
	}
	user, err := tok.Encode("user", false)
	if err != nil {
		t.Fatal(err)
	}
	wantQ := append(append([]int32{id("<|start_header_id|>")}, user...), id("<|end_header_id|>"))
	wantQ = append(wantQ, nl...)
	if !slices.Equal(enc.Markers().Instruction, wantQ) {
		t.Fatalf("instruction marker %v, want %v", enc.Markers().Instruction, wantQ)
	}

	sys := chat.Message{Role: "system", Content: "You are an assistant"}
	u := func(s string) chat.Message { return chat.Message{Role: "user", Content: s} }
	a := func(s string) chat.Message { return chat.Message{Role: "assistant", Content: s} }
	for _, c := range []struct {
		name    string
		msgs    []chat.Message
		trained string // the decoded trained tokens, in order
	}{
		{"system, user, assistant", []chat.Message{sys, u("What is the sea?"), a("A lot of water.")}, "A lot of water.<|eot_id|>"},
		{"no system message", []chat.Message{u("Hi"), a("Hello there!")}, "Hello there!<|eot_id|>"},
		{"multi-turn", []chat.Message{sys, u("One?"), a("First answer."), u("Two?"), a("Second answer.")},
			"First answer.<|eot_id|>Second answer.<|eot_id|>"},
		// A tool turn after an assistant turn runs until the next user
		// header, so it is trained too.
		{"tool turn after the assistant", []chat.Message{u("Weather?"), a("Let me check."),
			{Role: "ipython", Content: "sunny"}, u("And?"), a("It is sunny.")},
			"Let me check.<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"sunny\"<|eot_id|>It is sunny.<|eot_id|>"},
		{"no assistant turn", []chat.Message{sys, u("Anyone?")}, ""},
	} {
		s := Sample{Messages: c.msgs}
		ex, _, err := enc.Encode(s)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if ex.Input[0] != bos || slices.Contains(ex.Input[1:], bos) {
			t.Errorf("%s: want exactly one BOS, first: %v", c.name, ex.Input[:3])
		}
		ref := referenceLabels(t, tok, ex.Input)
		if !slices.Equal(ex.Labels, ref) {
			t.Errorf("%s: labels differ from the string-level reference\n got %v\nwant %v", c.name, ex.Labels, ref)
		}
		var got []int32
		for _, l := range ex.Labels {
			if l != IgnoreIndex {
				got = append(got, l)
			}
		}
		dec, _ := tok.Decode(got, false)
		if dec != c.trained {
			t.Errorf("%s: trained text %q, want %q", c.name, dec, c.trained)
		}
		if c.trained != "" && ex.Labels[len(ex.Labels)-1] != eot {
			t.Errorf("%s: the final <|eot_id|> is not trained", c.name)
		}
	}

	// Truncation happens before masking: a reply cut short is trained up to
	// the cut; a cut inside the assistant header leaves nothing to learn.
	full, _, err := enc.Encode(Sample{Messages: []chat.Message{u("Hi"), a("Hello there, matey!")}})
	if err != nil {
		t.Fatal(err)
	}
	aStart := -1
	for j := range full.Input {
		if hasAt(full.Input, j, enc.Markers().Response) {
			aStart = j
		}
	}
	short := EncoderOptions{ResponsesOnly: true, EOS: -1, MaxSeqLength: aStart + len(enc.Markers().Response) + 2}
	enc2, _ := NewEncoder(tok, tmpl, short)
	ex, truncated, err := enc2.Encode(Sample{Messages: []chat.Message{u("Hi"), a("Hello there, matey!")}})
	if err != nil || !truncated || len(ex.Input) != short.MaxSeqLength {
		t.Fatalf("truncation: %v %v len %d", err, truncated, len(ex.Input))
	}
	if !slices.Equal(ex.Labels, MaskResponses(ex.Input, enc.Markers())) || ex.LabelTokens() != 2 {
		t.Errorf("truncated reply: labels %v", ex.Labels)
	}
	enc3, _ := NewEncoder(tok, tmpl, EncoderOptions{ResponsesOnly: true, EOS: -1, MaxSeqLength: aStart + 2})
	ex, _, _ = enc3.Encode(Sample{Messages: []chat.Message{u("Hi"), a("Hello there, matey!")}})
	if ex.LabelTokens() != 0 {
		t.Errorf("cut inside the header: %d label tokens, want 0", ex.LabelTokens())
	}

	// Without responses-only, a conversation trains on every token.
	encAll, _ := NewEncoder(tok, tmpl, EncoderOptions{EOS: -1})
	ex, _, _ = encAll.Encode(Sample{Messages: []chat.Message{u("Hi"), a("Yo")}})
	if !slices.Equal(ex.Labels, ex.Input) {
		t.Error("responses-only off: labels should equal the input")
	}
}

func TestShowMasking(t *testing.T) {
	tok, tmpl := tinyModel(t)
	enc, _ := NewEncoder(tok, tmpl, EncoderOptions{ResponsesOnly: true, EOS: -1})
	ex, _, err := enc.Encode(Sample{Messages: []chat.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Ahoy!"}}})
	if err != nil {
		t.Fatal(err)
	}
	in, labels, err := ShowMasking(tok, ex)
	if err != nil {
		t.Fatal(err)
	}
	rendered, _ := tmpl.Render([]chat.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Ahoy!"}}, false)
	if in != rendered {
		t.Errorf("input %q, want the rendered conversation %q", in, rendered)
	}
	masked := 0
	for _, l := range ex.Labels {
		if l == IgnoreIndex {
			masked++
		}
	}
	// " " is one byte-level token, so each masked token prints as one space.
	if want := strings.Repeat(" ", masked) + "Ahoy!<|eot_id|>"; labels != want {
		t.Errorf("labels %q, want %q", labels, want)
	}
}
