package dataset

import (
	"reflect"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/runtime/chat"
)

func TestToSample(t *testing.T) {
	sys := chat.Message{Role: "system", Content: DefaultSystemPrompt}
	f := Format{SystemPrompt: DefaultSystemPrompt}
	for _, c := range []struct {
		name string
		rec  Record
		f    Format
		want Sample
		err  string
	}{
		{"dolly with context", Record{"instruction": "Who sails?", "context": "Ships sail.", "response": "Pirates.", "category": "qa"}, f,
			Sample{Messages: []chat.Message{sys, {Role: "user", Content: "Ships sail.\n\nWho sails?"}, {Role: "assistant", Content: "Pirates."}}}, ""},
		{"dolly without context", Record{"instruction": "Say arr.", "context": "", "response": "Arr!"}, f,
			Sample{Messages: []chat.Message{sys, {Role: "user", Content: "Say arr."}, {Role: "assistant", Content: "Arr!"}}}, ""},
		{"empty response dropped", Record{"instruction": "Say arr.", "response": ""}, f,
			Sample{Messages: []chat.Message{sys, {Role: "user", Content: "Say arr."}}}, ""},
		{"no system prompt", Record{"instruction": "Q", "response": "A"}, Format{},
			Sample{Messages: []chat.Message{{Role: "user", Content: "Q"}, {Role: "assistant", Content: "A"}}}, ""},
		{"alpaca", Record{"instruction": "Q", "input": "In", "output": "A"}, Format{},
			Sample{Messages: []chat.Message{{Role: "user", Content: "In\n\nQ"}, {Role: "assistant", Content: "A"}}}, ""},
		{"messages as they are", Record{"messages": []any{
			map[string]any{"role": "user", "content": "Hi"}, map[string]any{"role": "assistant", "content": ""}}}, f,
			Sample{Messages: []chat.Message{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: ""}}}, ""},
		{"sharegpt", Record{"conversations": []any{
			map[string]any{"from": "system", "value": "S"}, map[string]any{"from": "human", "value": "Hi"}, map[string]any{"from": "gpt", "value": "Yo"}}}, f,
			Sample{Messages: []chat.Message{{Role: "system", Content: "S"}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Yo"}}}, ""},
		{"text", Record{"text": "Once upon a time"}, f, Sample{Text: "Once upon a time"}, ""},
		{"custom text field", Record{"story": "Arr", "text": 3.0}, Format{TextField: "story"}, Sample{Text: "Arr"}, ""},
		{"text not a string", Record{"text": 3.0}, f, Sample{}, "text is a number, not a string"},
		{"empty text", Record{"text": ""}, f, Sample{}, "text is empty"},
		{"nothing usable", Record{"foo": "bar", "baz": 1.0}, f, Sample{}, "no usable columns (have baz, foo;"},
		{"instruction without response", Record{"instruction": "Q"}, f, Sample{}, "without a response"},
		{"response not a string", Record{"instruction": "Q", "response": []any{"x"}}, f, Sample{}, "response is a list"},
		{"message without role", Record{"messages": []any{map[string]any{"content": "x"}}}, f, Sample{}, `messages: [0]: no "role" string`},
		{"unknown sharegpt speaker", Record{"conversations": []any{map[string]any{"from": "parrot", "value": "x"}}}, f, Sample{}, "unknown ShareGPT speaker"},
		{"messages not a list", Record{"messages": "hi"}, f, Sample{}, "messages: is a string, not a list"},
	} {
		got, err := ToSample(c.rec, c.f)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

func TestPrepareCountsBadRows(t *testing.T) {
	tok, tmpl := tinyModel(t)
	enc, err := NewEncoder(tok, tmpl, EncoderOptions{ResponsesOnly: true, EOS: -1, MaxSeqLength: 128})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("Arr, the sea be wide. ", 40)
	rows := []Row{
		{Record: Record{"instruction": "Say arr.", "response": "Arr!"}, Where: "a:1"},
		{Where: "a:2", Err: errString("not JSON")},
		{Record: Record{"foo": 1.0}, Where: "a:3"},
		{Record: Record{"instruction": "Say nothing.", "response": ""}, Where: "a:4"}, // no assistant turn: nothing to learn
		{Record: Record{"instruction": "Talk.", "response": long}, Where: "a:5"},      // truncated, still has labels
		{Record: Record{"text": "Once upon a time"}, Where: "a:6"},
	}
	ex, st, err := Prepare(rows, Format{SystemPrompt: DefaultSystemPrompt}, enc)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{Rows: 6, Chats: 3, Texts: 1, Bad: 2, Truncated: 1, NoLabels: 1, Examples: 3}
	got := st
	got.BadExamples, got.Tokens, got.LabelTokens, got.MaxLen = nil, 0, 0, 0
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
	if len(st.BadExamples) != 2 || !strings.HasPrefix(st.BadExamples[0], "a:2: not JSON") || !strings.HasPrefix(st.BadExamples[1], "a:3: no usable columns") {
		t.Errorf("bad examples %q", st.BadExamples)
	}
	if len(ex) != 3 || st.MaxLen != 128 || len(ex[1].Input) != 128 {
		t.Errorf("examples: %d, max len %d", len(ex), st.MaxLen)
	}
	tokens, labels := 0, 0
	for _, e := range ex {
		tokens += len(e.Input)
		labels += e.LabelTokens()
	}
	if st.Tokens != tokens || st.LabelTokens != labels {
		t.Errorf("token counts %d/%d, want %d/%d", st.Tokens, st.LabelTokens, tokens, labels)
	}
	// The text row is BOS + text, trained on every token.
	text := ex[2]
	if ids, _ := tok.Encode("Once upon a time", true); !reflect.DeepEqual(text.Input, ids) || !reflect.DeepEqual(text.Labels, ids) {
		t.Errorf("text example %v / %v, want %v", text.Input, text.Labels, ids)
	}

	// A base model cannot render conversations: that is fatal, not a bad row.
	encBase, _ := NewEncoder(tok, nil, EncoderOptions{ResponsesOnly: true, EOS: -1})
	if _, _, err := Prepare(rows[:1], Format{}, encBase); err == nil || !strings.Contains(err.Error(), "no chat template") {
		t.Errorf("base model with chat rows: %v", err)
	}
	// Nothing usable at all is an error that says why.
	if _, _, err := Prepare(rows[1:4], Format{}, enc); err == nil || !strings.Contains(err.Error(), "2 bad") {
		t.Errorf("no examples: %v", err)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestTextEOS(t *testing.T) {
	tok, _ := tinyModel(t)
	eos, _ := tok.TokenID("<|end_of_text|>")
	enc, _ := NewEncoder(tok, nil, EncoderOptions{EOS: eos})
	ex, _, err := enc.Encode(Sample{Text: "Arr matey"})
	if err != nil {
		t.Fatal(err)
	}
	ids, _ := tok.Encode("Arr matey", true)
	want := append(ids, eos)
	if !reflect.DeepEqual(ex.Input, want) || !reflect.DeepEqual(ex.Labels, want) {
		t.Errorf("text with EOS: %v, want %v", ex.Input, want)
	}
	// Not doubled when the text already ends with it.
	ex, _, _ = enc.Encode(Sample{Text: "Arr matey<|end_of_text|>"})
	if !reflect.DeepEqual(ex.Input, want) {
		t.Errorf("EOS doubled: %v", ex.Input)
	}
}
