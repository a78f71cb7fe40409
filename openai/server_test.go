package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

func TestModels(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	c := s.client()
	page, err := c.Models.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
		if m.Object != "model" || m.OwnedBy != "parrot" || m.Created == 0 {
			t.Errorf("model card %+v", m)
		}
	}
	if !reflect.DeepEqual(ids, []string{"stories", "stories-alias"}) {
		t.Errorf("models %q", ids)
	}
	m, err := c.Models.Get(context.Background(), "stories-alias")
	if err != nil || m.ID != "stories-alias" {
		t.Errorf("get alias: %+v %v", m, err)
	}
	_, _, body := s.get("/v1/models")
	var raw struct {
		Object string `json:"object"`
		Data   []struct {
			Root        string `json:"root"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || raw.Object != "list" || raw.Data[1].Root != "stories" || raw.Data[1].MaxModelLen != 512 {
		t.Errorf("models list body %s", body)
	}
}

// /health is 503 (OpenAI error, Retry-After) until the model is set, 200
// after, 503 again while draining; the API answers 503 meanwhile.
func TestHealthLifecycle(t *testing.T) {
	ready := newTestServer(t, serverConfig{})
	srv := New(Options{})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	check := func(path string, want int) {
		t.Helper()
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d, want %d", path, resp.StatusCode, want)
		}
		if want == 503 {
			var b [2048]byte
			n, _ := resp.Body.Read(b[:])
			checkErrorBody(t, b[:n])
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("%s: 503 without Retry-After", path)
			}
		}
	}
	check("/health", 503)
	check("/v1/models", 503)
	res, err := NewStaticResolver(ready.engine, "m")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetModels(res)
	check("/health", 200)
	check("/v1/models", 200)
	srv.SetDraining()
	check("/health", 503)
	check("/v1/models", 503)
}

func TestTokenizeDetokenize(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	tok := s.engine.Loaded().Tokenizer
	want, err := tok.Encode(storyPrompt, true)
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := s.post("/tokenize", `{"model":"stories","prompt":"`+storyPrompt+`"}`)
	var r tokenizeResponse
	if status != 200 || json.Unmarshal(body, &r) != nil {
		t.Fatalf("tokenize: %d %s", status, body)
	}
	if !reflect.DeepEqual(r.Tokens, want) || r.Count != len(want) || r.MaxModelLen != 512 {
		t.Errorf("tokenize = %+v, want tokens %v", r, want)
	}
	if want[0] != 1 {
		t.Fatalf("stories260K should add BOS (1): %v", want)
	}
	_, _, body = s.post("/tokenize", `{"prompt":"`+storyPrompt+`","add_special_tokens":false}`)
	if err := json.Unmarshal(body, &r); err != nil || !reflect.DeepEqual(r.Tokens, want[1:]) {
		t.Errorf("without special tokens: %s, want %v", body, want[1:])
	}
	ids, _ := json.Marshal(want)
	status, _, body = s.post("/detokenize", `{"model":"stories","tokens":`+string(ids)+`}`)
	var d detokenizeResponse
	if status != 200 || json.Unmarshal(body, &d) != nil || d.Prompt != storyPrompt {
		t.Errorf("detokenize: %d %s, want %q", status, body, storyPrompt)
	}
}

func TestRequestIDs(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	_, hdr, _ := s.post("/v1/completions", `{"prompt":"hi","max_tokens":2}`, "X-Request-Id", "my-trace-123")
	if hdr.Get("X-Request-Id") != "my-trace-123" {
		t.Errorf("X-Request-Id not echoed: %q", hdr.Get("X-Request-Id"))
	}
	_, hdr, _ = s.post("/v1/completions", `{"prompt":"hi","max_tokens":2}`)
	gen := hdr.Get("X-Request-Id")
	if len(gen) < 16 {
		t.Errorf("generated request id %q", gen)
	}
	logs := s.logs.String()
	for _, id := range []string{"my-trace-123", gen} {
		if !strings.Contains(logs, `"request_id":"`+id+`"`) {
			t.Errorf("request id %s not in the logs:\n%s", id, logs)
		}
	}
	if !strings.Contains(logs, `"path":"/v1/completions"`) || !strings.Contains(logs, `"status":200`) {
		t.Errorf("request log lacks path/status:\n%s", logs)
	}
}

// Closing a streaming client cancels its generation: the running gauge
// drops to 0, the request counts as aborted, and it stops generating far
// before max_tokens.
func TestCancelMidStream(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	running := func() float64 {
		return s.metric("parrot:num_requests_running", map[string]string{"model_name": "stories"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := completionParams("hi", 400)
	stream := s.client().Completions.NewStreaming(ctx, p, option.WithJSONSet("ignore_eos", true))
	for i := 0; i < 3; i++ {
		if !stream.Next() {
			t.Fatalf("stream ended early: %v", stream.Err())
		}
	}
	if running() != 1 {
		t.Errorf("running gauge %v while streaming, want 1", running())
	}
	cancel()
	stream.Close()
	waitFor(t, "the running gauge to drop to 0", func() bool { return running() == 0 })
	waitFor(t, "the request to count as aborted", func() bool {
		return s.metric("parrot:request_success_total", map[string]string{"model_name": "stories", "finished_reason": "abort"}) == 1
	})
	if n := s.metric("parrot:generation_tokens_total", map[string]string{"model_name": "stories"}); n >= 400 {
		t.Errorf("generated %v tokens: the cancel did not stop the generation", n)
	}
	// The server still serves.
	if _, err := s.client().Completions.New(context.Background(), completionParams("hi", 2)); err != nil {
		t.Fatal(err)
	}
}

// 32 concurrent streaming clients all finish with the right usage.
func TestConcurrentStreams(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	tok := s.engine.Loaded().Tokenizer
	c := s.client()
	const clients = 32
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Go(func() {
			prompt := fmt.Sprintf("Tim had %d red balls and", i)
			maxTokens := int64(6 + i%7)
			ids, err := tok.Encode(prompt, true)
			if err != nil {
				errs <- err
				return
			}
			p := completionParams(prompt, maxTokens)
			p.Temperature = oai.Float(0.8)
			p.Seed = oai.Int(int64(i))
			p.StreamOptions = oai.ChatCompletionStreamOptionsParam{IncludeUsage: oai.Bool(true)}
			stream := c.Completions.NewStreaming(context.Background(), p, option.WithJSONSet("ignore_eos", true))
			var u *oai.CompletionUsage
			finish := ""
			for stream.Next() {
				ch := stream.Current()
				if len(ch.Choices) == 0 {
					u = &ch.Usage
				}
				for _, cc := range ch.Choices {
					if cc.FinishReason != "" {
						finish = string(cc.FinishReason)
					}
				}
			}
			switch {
			case stream.Err() != nil:
				errs <- fmt.Errorf("client %d: %v", i, stream.Err())
			case u == nil:
				errs <- fmt.Errorf("client %d: no usage chunk", i)
			case u.PromptTokens != int64(len(ids)) || u.CompletionTokens != maxTokens || u.TotalTokens != int64(len(ids))+maxTokens:
				errs <- fmt.Errorf("client %d: usage %+v, want prompt %d completion %d", i, *u, len(ids), maxTokens)
			case finish != "length":
				errs <- fmt.Errorf("client %d: finish %q", i, finish)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The engine reports a request to the metrics just after its last event.
	waitFor(t, "32 successes, TTFT and queue-time observations, and no running request, in the metrics", func() bool {
		return s.metric("parrot:request_success_total", map[string]string{"model_name": "stories", "finished_reason": "length"}) == clients &&
			s.metric("parrot:time_to_first_token_seconds", map[string]string{"model_name": "stories"}) == clients &&
			s.metric("parrot:request_queue_time_seconds", map[string]string{"model_name": "stories"}) == clients &&
			s.metric("parrot:num_requests_running", map[string]string{"model_name": "stories"}) == 0
	})
}
