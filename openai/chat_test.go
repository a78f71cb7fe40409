package openai

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	oai "github.com/openai/openai-go/v3"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/sampler"
	"github.com/parrot-llm/parrot/runtime/testmodel"
)

// newChatServer serves a tiny random Llama 3-style model (byte-level BPE,
// special tokens, the official Llama 3.1 chat template) as "stories".
func newChatServer(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	cfg.dir = filepath.Join(t.TempDir(), "tiny-chat")
	if err := testmodel.Generate(cfg.dir, testmodel.Tiny()); err != nil {
		t.Fatal(err)
	}
	return newTestServer(t, cfg)
}

var chatMessages = []chat.Message{
	{Role: "system", Content: "You tell short stories."},
	{Role: "user", Content: "Tell me about a cat."},
}

func chatParams(maxTokens int64) oai.ChatCompletionNewParams {
	return oai.ChatCompletionNewParams{
		Model: "stories",
		Messages: []oai.ChatCompletionMessageParamUnion{
			oai.SystemMessage("You tell short stories."),
			oai.UserMessage("Tell me about a cat."),
		},
		MaxTokens:   oai.Int(maxTokens),
		Temperature: oai.Float(0),
	}
}

// The chat reply is the engine's reply to the rendered messages, with
// OpenAI's shape.
func TestChatMatchesEngine(t *testing.T) {
	s := newChatServer(t, serverConfig{})
	want := s.reference(engine.Request{Messages: chatMessages, Sampling: greedy(), MaxTokens: 20})
	rendered, err := s.engine.Loaded().Template.Render(chatMessages, true)
	if err != nil {
		t.Fatal(err)
	}
	promptIDs, err := s.engine.Loaded().Tokenizer.Encode(rendered, false)
	if err != nil {
		t.Fatal(err)
	}

	resp, err := s.client().Chat.Completions.New(context.Background(), chatParams(20))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Object != "chat.completion" || resp.Model != "stories" {
		t.Errorf("envelope: %q %q %q", resp.ID, resp.Object, resp.Model)
	}
	c := resp.Choices[0]
	if c.Message.Content != want.text || c.Message.Role != "assistant" || string(c.FinishReason) != want.finish {
		t.Errorf("reply %q (%s), want %q (%s)", c.Message.Content, c.FinishReason, want.text, want.finish)
	}
	if resp.Usage.PromptTokens != int64(len(promptIDs)) || resp.Usage.CompletionTokens != int64(len(want.tokens)) ||
		resp.Usage.TotalTokens != resp.Usage.PromptTokens+resp.Usage.CompletionTokens {
		t.Errorf("usage %+v, want prompt %d completion %d", resp.Usage, len(promptIDs), len(want.tokens))
	}
	var raw struct {
		Choices []map[string]json.RawMessage `json:"choices"`
	}
	if err := json.Unmarshal([]byte(resp.RawJSON()), &raw); err != nil {
		t.Fatal(err)
	}
	if string(raw.Choices[0]["logprobs"]) != "null" || !strings.Contains(string(raw.Choices[0]["message"]), `"refusal":null`) {
		t.Errorf("choice must have logprobs null and message.refusal null: %s", resp.RawJSON())
	}

	// /tokenize with messages counts the same prompt.
	status, _, body := s.post("/tokenize", `{"model":"stories","messages":[{"role":"system","content":"You tell short stories."},{"role":"user","content":[{"type":"text","text":"Tell me about a cat."}]}]}`)
	var tr tokenizeResponse
	if status != 200 || json.Unmarshal(body, &tr) != nil || !reflect.DeepEqual(tr.Tokens, promptIDs) {
		t.Errorf("tokenize messages: %d %s, want %v", status, body, promptIDs)
	}
}

// The chat stream: for each choice a first chunk with the role and empty
// content, content chunks with finish_reason null, a last chunk with an
// empty delta and the finish reason; then the usage chunk and [DONE].
func TestChatStreamSSE(t *testing.T) {
	s := newChatServer(t, serverConfig{})
	want := s.reference(engine.Request{Messages: chatMessages, Sampling: greedy(), MaxTokens: 12})
	status, _, body := s.post("/v1/chat/completions", `{"model":"stories","messages":[{"role":"system","content":"You tell short stories."},{"role":"user","content":"Tell me about a cat."}],
		"max_completion_tokens":12,"temperature":0,"n":2,"stream":true,"stream_options":{"include_usage":true}}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	events := sseEvents(t, body)
	if events[len(events)-1] != "[DONE]" {
		t.Fatalf("no [DONE]: %q", events)
	}
	type state struct {
		chunks   int
		text     strings.Builder
		finished string
	}
	states := map[int]*state{0: {}, 1: {}}
	var u *usage
	for i, ev := range events[:len(events)-1] {
		var ch struct {
			Object  string `json:"object"`
			Choices []struct {
				Index        int                        `json:"index"`
				Delta        map[string]json.RawMessage `json:"delta"`
				FinishReason *string                    `json:"finish_reason"`
			} `json:"choices"`
			Usage *usage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev), &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Object != "chat.completion.chunk" {
			t.Fatalf("event %d object %q", i, ch.Object)
		}
		if len(ch.Choices) == 0 {
			if i != len(events)-2 || ch.Usage == nil {
				t.Fatalf("event %d: a chunk without choices must be the last, with usage: %s", i, ev)
			}
			u = ch.Usage
			continue
		}
		c := ch.Choices[0]
		st := states[c.Index]
		if st.finished != "" {
			t.Fatalf("choice %d: chunk after its finish: %s", c.Index, ev)
		}
		if st.chunks == 0 {
			if string(c.Delta["role"]) != `"assistant"` || string(c.Delta["content"]) != `""` || c.FinishReason != nil {
				t.Fatalf("choice %d: first chunk must carry the role and empty content: %s", c.Index, ev)
			}
		} else if _, hasRole := c.Delta["role"]; hasRole {
			t.Errorf("choice %d: role repeated: %s", c.Index, ev)
		}
		st.chunks++
		if c.FinishReason != nil {
			st.finished = *c.FinishReason
			if len(c.Delta) != 0 {
				t.Errorf("finish chunk must have an empty delta: %s", ev)
			}
			continue
		}
		var text string
		_ = json.Unmarshal(c.Delta["content"], &text)
		st.text.WriteString(text)
	}
	for i, st := range states {
		if st.text.String() != want.text || st.finished != want.finish {
			t.Errorf("choice %d: %q (%s), want %q (%s)", i, st.text.String(), st.finished, want.text, want.finish)
		}
	}
	if u == nil || u.PromptTokens != want.prompt || u.CompletionTokens != 2*len(want.tokens) || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
		t.Errorf("usage %+v, want prompt %d completion %d", u, want.prompt, 2*len(want.tokens))
	}
}

// The official client's stream accumulator rebuilds the non-streamed reply.
func TestChatStreamClient(t *testing.T) {
	s := newChatServer(t, serverConfig{})
	c := s.client()
	full, err := c.Chat.Completions.New(context.Background(), chatParams(16))
	if err != nil {
		t.Fatal(err)
	}
	p := chatParams(16)
	p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
	stream := c.Chat.Completions.NewStreaming(context.Background(), p)
	acc := oai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != full.Choices[0].Message.Content ||
		acc.Choices[0].FinishReason != full.Choices[0].FinishReason {
		t.Errorf("accumulated %+v, want %q (%s)", acc.Choices, full.Choices[0].Message.Content, full.Choices[0].FinishReason)
	}
	if acc.Usage.PromptTokens != full.Usage.PromptTokens || acc.Usage.CompletionTokens != full.Usage.CompletionTokens {
		t.Errorf("stream usage %+v, non-stream %+v", acc.Usage, full.Usage)
	}
}

// Chat logprobs: tokens spell the reply, bytes are the token's UTF-8, the
// greedy token is the most probable, values are the engine's.
func TestChatLogprobs(t *testing.T) {
	s := newChatServer(t, serverConfig{})
	gp := greedy()
	gp.Logprobs, gp.TopLogprobs = true, 2
	want := s.reference(engine.Request{Messages: chatMessages, Sampling: gp, MaxTokens: 10})
	p := chatParams(10)
	p.Logprobs = oai.Bool(true)
	p.TopLogprobs = oai.Int(2)
	resp, err := s.client().Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	lp := resp.Choices[0].Logprobs.Content
	if len(lp) != len(want.tokens) {
		t.Fatalf("%d logprobs for %d tokens", len(lp), len(want.tokens))
	}
	var joined strings.Builder
	for i, e := range lp {
		joined.WriteString(e.Token)
		b := make([]int64, len(e.Token))
		for j := range len(e.Token) {
			b[j] = int64(e.Token[j])
		}
		if !reflect.DeepEqual(e.Bytes, b) {
			t.Errorf("token %d %q: bytes %v", i, e.Token, e.Bytes)
		}
		if math.Abs(e.Logprob-float64(want.logprobs[i])) > 1e-6 {
			t.Errorf("token %d: logprob %v, engine %v", i, e.Logprob, want.logprobs[i])
		}
		if len(e.TopLogprobs) != 2 || math.Abs(e.TopLogprobs[0].Logprob-e.Logprob) > 1e-6 || e.TopLogprobs[1].Logprob > e.TopLogprobs[0].Logprob {
			t.Errorf("token %d: top_logprobs %+v for greedy logprob %v", i, e.TopLogprobs, e.Logprob)
		}
	}
	if strings.TrimPrefix(joined.String(), " ") != strings.TrimPrefix(resp.Choices[0].Message.Content, " ") {
		t.Errorf("tokens spell %q, reply %q", joined.String(), resp.Choices[0].Message.Content)
	}
}

// Chat stop strings, seeds and max_completion_tokens. The random model's
// greedy reply is monotonous, so this samples with a seed.
func TestChatStopSeed(t *testing.T) {
	s := newChatServer(t, serverConfig{})
	seed := uint64(1234)
	sampling := sampler.Params{Temperature: 1, TopP: 1, RepetitionPenalty: 1, Seed: &seed}
	full := s.reference(engine.Request{Messages: chatMessages, Sampling: sampling, MaxTokens: 40}).text
	runes := []rune(full)
	if len(runes) < 20 {
		t.Fatalf("reference too short: %q", full)
	}
	stop := string(runes[len(runes)/2 : len(runes)/2+3])
	want := full[:strings.Index(full, stop)]

	c := s.client()
	p := chatParams(40)
	p.Temperature, p.TopP, p.Seed = oai.Float(1), oai.Float(1), oai.Int(1234)
	p.Stop = oai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{stop, "never-appears"}}
	resp, err := c.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0]; got.Message.Content != want || got.FinishReason != "stop" {
		t.Errorf("stop %q: %q (%s), want %q (stop)", stop, got.Message.Content, got.FinishReason, want)
	}

	// max_completion_tokens bounds the reply; the seed reproduces it.
	p = chatParams(0)
	p.MaxTokens = oai.ChatCompletionNewParams{}.MaxTokens // unset
	p.MaxCompletionTokens = oai.Int(7)
	p.Temperature, p.TopP, p.Seed = oai.Float(1), oai.Float(1), oai.Int(1234)
	a, err := c.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	ref := s.reference(engine.Request{Messages: chatMessages, Sampling: sampling, MaxTokens: 7})
	if a.Choices[0].Message.Content != ref.text || b.Choices[0].Message.Content != ref.text || a.Usage.CompletionTokens != int64(len(ref.tokens)) {
		t.Errorf("seeded replies %q / %q (%d tokens), engine %q (%d)", a.Choices[0].Message.Content, b.Choices[0].Message.Content,
			a.Usage.CompletionTokens, ref.text, len(ref.tokens))
	}
	if ref.finish == "length" && len(ref.tokens) != 7 {
		t.Errorf("max_completion_tokens 7: %d tokens", len(ref.tokens))
	}
}

func TestChatErrors(t *testing.T) {
	s := newChatServer(t, serverConfig{})
	long := strings.Repeat("the cat sat on the mat. ", 1000) // over the 2048-token context
	for _, tc := range []errCase{
		{"no messages", "/v1/chat/completions", `{"messages":[]}`, 400, "messages", nil},
		{"bad role", "/v1/chat/completions", `{"messages":[{"role":"wizard","content":"hi"}]}`, 400, "messages[0].role", nil},
		{"missing role", "/v1/chat/completions", `{"messages":[{"content":"hi"}]}`, 400, "messages[0].role", nil},
		{"image part", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[0].type", nil},
		{"content type", "/v1/chat/completions", `{"messages":[{"role":"user","content":42}]}`, 400, "messages[0].content", nil},
		{"tool calls", "/v1/chat/completions", `{"messages":[{"role":"assistant","tool_calls":[{"id":"1"}]}]}`, 400, "messages[0].tool_calls", nil},
		{"too long", "/v1/chat/completions", `{"messages":[{"role":"user","content":"` + long + `"}]}`, 400, "messages", "context_length_exceeded"},
		{"max_completion_tokens too large", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":100000}`, 400, "max_completion_tokens", "context_length_exceeded"},
		{"temperature", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"temperature":-1}`, 400, "temperature", nil},
	} {
		checkErrCase(t, s, tc)
	}
}

// With a SentencePiece tokenizer the template's trailing "\n\n" is two
// byte-fallback tokens of the prompt: the reply must not start with them,
// so that the logprob tokens spell the reply exactly.
func TestChatPromptTextNotEchoed(t *testing.T) {
	s := newTestServer(t, serverConfig{tmpl: chat.BuiltinLlama31})
	p := chatParams(10)
	p.Logprobs = oai.Bool(true)
	resp, err := s.client().Chat.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var joined strings.Builder
	for _, e := range resp.Choices[0].Logprobs.Content {
		joined.WriteString(e.Token)
	}
	if reply := resp.Choices[0].Message.Content; joined.String() != reply {
		t.Errorf("the generated tokens spell %q, the reply is %q", joined.String(), reply)
	}
}
