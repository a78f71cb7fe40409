package openai

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

const storyPrompt = "Once upon a time, there was a little girl"

// greedy are the sampling parameters the server uses for temperature 0.
func greedy() sampler.Params {
	return sampler.Params{Temperature: 0, TopP: 1, RepetitionPenalty: 1}
}

func completionParams(prompt string, maxTokens int64) oai.CompletionNewParams {
	return oai.CompletionNewParams{
		Model:       "stories",
		Prompt:      oai.CompletionNewParamsPromptUnion{OfString: oai.String(prompt)},
		MaxTokens:   oai.Int(maxTokens),
		Temperature: oai.Float(0),
	}
}

// The server's greedy completion is the engine's, with OpenAI's shape and
// the tokenizer's prompt count.
func TestCompletionMatchesEngine(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	want := s.reference(engine.Request{Prompt: storyPrompt, Sampling: greedy(), MaxTokens: 24})
	promptIDs, err := s.engine.Loaded().Tokenizer.Encode(storyPrompt, true)
	if err != nil {
		t.Fatal(err)
	}
	if want.text == "" || want.finish != "length" {
		t.Fatalf("reference run is degenerate: %+v", want)
	}

	c := s.client()
	resp, err := c.Completions.New(context.Background(), completionParams(storyPrompt, 24))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.ID, "cmpl-") || resp.Object != "text_completion" || resp.Model != "stories" || resp.Created == 0 {
		t.Errorf("envelope: id %q object %q model %q created %d", resp.ID, resp.Object, resp.Model, resp.Created)
	}
	if len(resp.Choices) != 1 {
		t.Fatalf("%d choices, want 1", len(resp.Choices))
	}
	ch := resp.Choices[0]
	if ch.Text != want.text || string(ch.FinishReason) != "length" || ch.Index != 0 {
		t.Errorf("choice = %q (%s), want %q (length)", ch.Text, ch.FinishReason, want.text)
	}
	if resp.Usage.PromptTokens != int64(len(promptIDs)) || resp.Usage.CompletionTokens != 24 || resp.Usage.TotalTokens != int64(len(promptIDs))+24 {
		t.Errorf("usage = %+v, want prompt %d completion 24", resp.Usage, len(promptIDs))
	}

	// An alias serves the same model and is reported back.
	p := completionParams(storyPrompt, 24)
	p.Model = "stories-alias"
	resp2, err := c.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if resp2.Model != "stories-alias" || resp2.Choices[0].Text != want.text {
		t.Errorf("alias: model %q text %q", resp2.Model, resp2.Choices[0].Text)
	}
}

// A streamed completion has OpenAI's SSE framing: chunks with
// finish_reason null until the choice's last, a usage chunk with no
// choices when asked, then [DONE]; its text is the non-streamed text.
func TestCompletionStreamSSE(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	want := s.reference(engine.Request{Prompt: storyPrompt, Sampling: greedy(), MaxTokens: 16})

	status, hdr, body := s.post("/v1/completions", `{"model":"stories","prompt":"`+storyPrompt+`","max_tokens":16,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}`)
	if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d content-type %q: %s", status, hdr.Get("Content-Type"), body)
	}
	events := sseEvents(t, body)
	if events[len(events)-1] != "[DONE]" {
		t.Fatalf("last event %q, want [DONE]", events[len(events)-1])
	}
	var text strings.Builder
	var id string
	for i, ev := range events[:len(events)-1] {
		var chunk map[string]json.RawMessage
		if err := json.Unmarshal([]byte(ev), &chunk); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, ev)
		}
		var c struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Choices []struct {
				Text         string  `json:"text"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *usage `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatal(err)
		}
		if _, ok := chunk["usage"]; !ok {
			t.Errorf("event %d: no usage member (null expected with include_usage): %s", i, ev)
		}
		if id == "" {
			id = c.ID
		}
		if c.ID != id || c.Object != "text_completion" {
			t.Errorf("event %d: id %q object %q", i, c.ID, c.Object)
		}
		last := i == len(events)-2
		if last {
			if len(c.Choices) != 0 || c.Usage == nil {
				t.Fatalf("usage chunk must have choices [] and usage: %s", ev)
			}
			if c.Usage.PromptTokens != want.prompt || c.Usage.CompletionTokens != 16 || c.Usage.TotalTokens != want.prompt+16 {
				t.Errorf("usage %+v, want prompt %d completion 16", *c.Usage, want.prompt)
			}
			continue
		}
		if c.Usage != nil || len(c.Choices) != 1 {
			t.Fatalf("event %d: usage must be null and one choice: %s", i, ev)
		}
		finishing := i == len(events)-3
		if fr := c.Choices[0].FinishReason; (fr != nil) != finishing || (finishing && *fr != "length") {
			t.Errorf("event %d: finish_reason %v (the last choice chunk has length, the others null)", i, fr)
		}
		text.WriteString(c.Choices[0].Text)
	}
	if text.String() != want.text {
		t.Errorf("streamed text %q, want %q", text.String(), want.text)
	}
}

// The official client reads the stream, and without include_usage the
// chunks carry no usage member.
func TestCompletionStreamClient(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	want := s.reference(engine.Request{Prompt: storyPrompt, Sampling: greedy(), MaxTokens: 16})
	stream := s.client().Completions.NewStreaming(context.Background(), completionParams(storyPrompt, 16))
	var text strings.Builder
	finish := ""
	for stream.Next() {
		c := stream.Current()
		if c.JSON.Usage.Valid() {
			t.Errorf("usage sent without include_usage: %s", c.RawJSON())
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != want.text || finish != "length" {
		t.Errorf("got %q (%s), want %q (length)", text.String(), finish, want.text)
	}
}

// Stop strings end the text before their first occurrence, with
// finish_reason stop, streamed or not.
func TestCompletionStop(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	full := s.reference(engine.Request{Prompt: storyPrompt, Sampling: greedy(), MaxTokens: 40}).text
	words := strings.Fields(full)
	if len(words) < 6 {
		t.Fatalf("reference too short: %q", full)
	}
	stop := " " + words[4] // a word in the middle of the text
	want := full[:strings.Index(full, stop)]

	p := completionParams(storyPrompt, 40)
	p.Stop = oai.CompletionNewParamsStopUnion{OfStringArray: []string{"qqqq", stop}}
	resp, err := s.client().Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0]; got.Text != want || got.FinishReason != "stop" {
		t.Errorf("stop %q: got %q (%s), want %q (stop)", stop, got.Text, got.FinishReason, want)
	}
	if resp.Usage.CompletionTokens >= 40 {
		t.Errorf("generation did not end at the stop string: %d tokens", resp.Usage.CompletionTokens)
	}

	p.Stop = oai.CompletionNewParamsStopUnion{OfString: oai.String(stop)}
	stream := s.client().Completions.NewStreaming(context.Background(), p)
	var text strings.Builder
	finish := ""
	for stream.Next() {
		for _, ch := range stream.Current().Choices {
			text.WriteString(ch.Text)
			if ch.FinishReason != "" {
				finish = string(ch.FinishReason)
			}
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != want || finish != "stop" {
		t.Errorf("streamed stop: got %q (%s), want %q (stop)", text.String(), finish, want)
	}
}

// The same seed gives the same sampled text; n choices with a seed differ
// from each other and are each reproducible.
func TestCompletionSeed(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	c := s.client()
	run := func(seed int64, n int64) []string {
		p := completionParams(storyPrompt, 30)
		p.Temperature = oai.Float(1)
		p.Seed = oai.Int(seed)
		p.N = oai.Int(n)
		resp, err := c.Completions.New(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(resp.Choices))
		for _, ch := range resp.Choices {
			out[ch.Index] = ch.Text
		}
		return out
	}
	a, b := run(42, 1), run(42, 1)
	if a[0] != b[0] {
		t.Errorf("seed 42 twice: %q vs %q", a[0], b[0])
	}
	// Seed 42 with the engine directly gives the same text.
	seed := uint64(42)
	p := sampler.Params{Temperature: 1, TopP: 1, RepetitionPenalty: 1, Seed: &seed}
	if ref := s.reference(engine.Request{Prompt: storyPrompt, Sampling: p, MaxTokens: 30}); ref.text != a[0] {
		t.Errorf("seed 42: server %q, engine %q", a[0], ref.text)
	}
	differ := false
	for _, sd := range []int64{43, 44, 45} {
		if run(sd, 1)[0] != a[0] {
			differ = true
		}
	}
	if !differ {
		t.Errorf("seeds 42..45 all gave %q: the seed is not used", a[0])
	}
	three := run(7, 3)
	if len(three) != 3 || three[0] == three[1] && three[1] == three[2] {
		t.Errorf("n=3 with a seed: %q", three)
	}
	if again := run(7, 3); strings.Join(again, "|") != strings.Join(three, "|") {
		t.Errorf("n=3 seed 7 not reproducible: %q vs %q", three, again)
	}
}

// logprobs: the sampled token of a greedy run is the most probable, the
// tokens spell the text, and the values are the engine's.
func TestCompletionLogprobs(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	gp := greedy()
	gp.Logprobs, gp.TopLogprobs = true, 3
	want := s.reference(engine.Request{Prompt: storyPrompt, Sampling: gp, MaxTokens: 12})

	p := completionParams(storyPrompt, 12)
	p.Logprobs = oai.Int(3)
	resp, err := s.client().Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.Choices[0]
	lp := ch.Logprobs
	if len(lp.Tokens) != 12 || len(lp.TokenLogprobs) != 12 || len(lp.TopLogprobs) != 12 || len(lp.TextOffset) != 12 {
		t.Fatalf("logprobs lengths: %d %d %d %d", len(lp.Tokens), len(lp.TokenLogprobs), len(lp.TopLogprobs), len(lp.TextOffset))
	}
	if joined := strings.Join(lp.Tokens, ""); strings.TrimPrefix(joined, " ") != strings.TrimPrefix(ch.Text, " ") {
		t.Errorf("tokens %q do not spell the text %q", lp.Tokens, ch.Text)
	}
	for i := range lp.Tokens {
		if math.Abs(lp.TokenLogprobs[i]-float64(want.logprobs[i])) > 1e-6 {
			t.Errorf("token %d: logprob %v, engine %v", i, lp.TokenLogprobs[i], want.logprobs[i])
		}
		best := math.Inf(-1)
		for _, v := range lp.TopLogprobs[i] {
			best = max(best, v)
		}
		if lp.TokenLogprobs[i] > 0 || math.Abs(best-lp.TokenLogprobs[i]) > 1e-6 {
			t.Errorf("token %d: greedy logprob %v is not the top one %v", i, lp.TokenLogprobs[i], best)
		}
		if len(lp.TopLogprobs[i]) == 0 || len(lp.TopLogprobs[i]) > 3 {
			t.Errorf("token %d: %d alternatives, want 1..3", i, len(lp.TopLogprobs[i]))
		}
		if i > 0 && lp.TextOffset[i] <= lp.TextOffset[i-1] {
			t.Errorf("text_offset not increasing: %v", lp.TextOffset)
		}
	}
}

// logit_bias with string keys: -100 bans the greedy first token, +100 on a
// token makes it the only one generated.
func TestCompletionLogitBias(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	ref := s.reference(engine.Request{Prompt: storyPrompt, Sampling: greedy(), MaxTokens: 4})
	first := ref.tokens[0]
	c := s.client()

	p := completionParams(storyPrompt, 4)
	p.LogitBias = map[string]int64{itoa(first): -100}
	p.Logprobs = oai.Int(0)
	resp, err := c.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	piece, _ := tokenText{s.engine.Loaded()}.piece(first)
	if got := resp.Choices[0].Logprobs.Tokens[0]; got == piece {
		t.Errorf("banned token %d (%q) was still generated first", first, piece)
	}

	forced := int32(100)
	fp, _ := tokenText{s.engine.Loaded()}.piece(forced)
	p.LogitBias = map[string]int64{itoa(forced): 100}
	resp, err = c.Completions.New(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	for i, tok := range resp.Choices[0].Logprobs.Tokens {
		if tok != fp {
			t.Errorf("token %d = %q, want the forced %q", i, tok, fp)
		}
	}
}

func itoa(id int32) string {
	b, _ := json.Marshal(id)
	return string(b)
}

// Several prompts (text and token ids) and echo.
func TestCompletionPromptsAndEcho(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	tok := s.engine.Loaded().Tokenizer
	ids, err := tok.Encode("The dog", true)
	if err != nil {
		t.Fatal(err)
	}
	refA := s.reference(engine.Request{Prompt: storyPrompt, Sampling: greedy(), MaxTokens: 8})
	refB := s.reference(engine.Request{PromptTokens: ids, Sampling: greedy(), MaxTokens: 8})

	status, _, body := s.post("/v1/completions", `{"model":"stories","prompt":["`+storyPrompt+`"],"max_tokens":8,"temperature":0,"n":2}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var r oai.Completion
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Choices) != 2 || r.Choices[1].Index != 1 || r.Choices[0].Text != refA.text || r.Choices[1].Text != refA.text {
		t.Errorf("n=2 greedy: %s", body)
	}
	if r.Usage.PromptTokens != int64(refA.prompt) || r.Usage.CompletionTokens != 16 {
		t.Errorf("usage %+v: prompt counted once, completions summed", r.Usage)
	}

	idsJSON, _ := json.Marshal([][]int32{ids})
	status, _, body = s.post("/v1/completions", `{"model":"stories","prompt":`+string(idsJSON)+`,"max_tokens":8,"temperature":0,"echo":true}`)
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	echoed, _ := tokenText{s.engine.Loaded()}.decode(ids)
	if r.Choices[0].Text != echoed+refB.text {
		t.Errorf("echo: %q, want %q + %q", r.Choices[0].Text, echoed, refB.text)
	}

	// Extra vLLM fields are accepted (and used): top_k 1 is greedy.
	p := completionParams(storyPrompt, 8)
	p.Temperature = oai.Float(1)
	resp, err := s.client().Completions.New(context.Background(), p, option.WithJSONSet("top_k", 1), option.WithJSONSet("min_p", 0.5), option.WithJSONSet("repetition_penalty", 1.0))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Text != refA.text {
		t.Errorf("top_k=1: %q, want greedy %q", resp.Choices[0].Text, refA.text)
	}
}

// Every sampling field reaches the sampler: with all of them set, the
// server's text is the engine's for the same sampler.Params.
func TestSamplingParamsForwarded(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	seed := uint64(5)
	ref := s.reference(engine.Request{Prompt: storyPrompt, MaxTokens: 30, Stop: []string{"zzz"}, Sampling: sampler.Params{
		Temperature: 0.7, TopP: 0.9, TopK: 20, MinP: 0.05, PresencePenalty: 1.5, FrequencyPenalty: 0.5,
		RepetitionPenalty: 1.3, LogitBias: map[int32]float32{300: 5, 13: -100}, Seed: &seed,
	}})
	status, _, body := s.post("/v1/completions", `{"prompt":"`+storyPrompt+`","max_tokens":30,"stop":"zzz","temperature":0.7,"top_p":0.9,
		"top_k":20,"min_p":0.05,"presence_penalty":1.5,"frequency_penalty":0.5,"repetition_penalty":1.3,"logit_bias":{"300":5,"13":-100},"seed":5}`)
	var r oai.Completion
	if status != 200 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("status %d: %s", status, body)
	}
	if r.Choices[0].Text != ref.text {
		t.Errorf("server %q, engine %q", r.Choices[0].Text, ref.text)
	}
	// Changing any one of them changes the text (so the comparison above
	// can fail when a field is dropped). The change is appended as a
	// duplicate key: encoding/json keeps the last one.
	for _, change := range []string{`"temperature":1.9`, `"presence_penalty":-2`, `"frequency_penalty":2`, `"repetition_penalty":3`, `"logit_bias":{"300":100}`, `"seed":6`} {
		_, _, body := s.post("/v1/completions", `{"prompt":"`+storyPrompt+`","max_tokens":30,"temperature":0.7,"top_p":0.9,
		"top_k":20,"min_p":0.05,"presence_penalty":1.5,"frequency_penalty":0.5,"repetition_penalty":1.3,"logit_bias":{"300":5,"13":-100},"seed":5,`+change+`}`)
		var r2 oai.Completion
		if err := json.Unmarshal(body, &r2); err != nil || len(r2.Choices) == 0 {
			t.Fatalf("%s: %s", change, body)
		}
		if r2.Choices[0].Text == ref.text {
			t.Errorf("%s did not change the text", change)
		}
	}
}
