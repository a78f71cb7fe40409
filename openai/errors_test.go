package openai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/parrot-llm/parrot/runtime/engine"
)

type errCase struct {
	name   string
	path   string
	body   string
	status int
	param  any // string, or nil for null
	code   any // string, or nil for null
}

// errorCases are requests of every error class with the expected status,
// param and code. Chat cases that need a chat template are in chat_test.go.
func errorCases() []errCase {
	long := strings.Repeat("the cat sat on the mat. ", 200) // far over 512 tokens
	return []errCase{
		{"malformed json", "/v1/completions", `{"model":"stories","prompt":"hi"`, 400, nil, nil},
		{"not an object", "/v1/completions", `[1,2,3]`, 400, nil, nil},
		{"empty body", "/v1/completions", ``, 400, nil, nil},
		{"trailing garbage", "/v1/completions", `{"prompt":"hi"} x`, 400, nil, nil},
		{"temperature type", "/v1/completions", `{"prompt":"hi","temperature":"hot"}`, 400, "temperature", nil},
		{"temperature range", "/v1/completions", `{"prompt":"hi","temperature":2.5}`, 400, "temperature", nil},
		{"top_p zero", "/v1/completions", `{"prompt":"hi","top_p":0}`, 400, "top_p", nil},
		{"top_p range", "/v1/completions", `{"prompt":"hi","top_p":1.5}`, 400, "top_p", nil},
		{"min_p range", "/v1/completions", `{"prompt":"hi","min_p":-0.1}`, 400, "min_p", nil},
		{"top_k range", "/v1/completions", `{"prompt":"hi","top_k":-5}`, 400, "top_k", nil},
		{"top_k type", "/v1/completions", `{"prompt":"hi","top_k":1.5}`, 400, "top_k", nil},
		{"presence range", "/v1/completions", `{"prompt":"hi","presence_penalty":3}`, 400, "presence_penalty", nil},
		{"frequency range", "/v1/completions", `{"prompt":"hi","frequency_penalty":-2.5}`, 400, "frequency_penalty", nil},
		{"repetition range", "/v1/completions", `{"prompt":"hi","repetition_penalty":0}`, 400, "repetition_penalty", nil},
		{"n zero", "/v1/completions", `{"prompt":"hi","n":0}`, 400, "n", nil},
		{"n huge", "/v1/completions", `{"prompt":"hi","n":1000}`, 400, "n", nil},
		{"n type", "/v1/completions", `{"prompt":"hi","n":"two"}`, 400, "n", nil},
		{"max_tokens zero", "/v1/completions", `{"prompt":"hi","max_tokens":0}`, 400, "max_tokens", nil},
		{"max_tokens type", "/v1/completions", `{"prompt":"hi","max_tokens":"ten"}`, 400, "max_tokens", nil},
		{"max_tokens too large", "/v1/completions", `{"prompt":"hi","max_tokens":100000}`, 400, "max_tokens", "context_length_exceeded"},
		{"prompt too long", "/v1/completions", `{"prompt":"` + long + `"}`, 400, "prompt", "context_length_exceeded"},
		{"prompt missing", "/v1/completions", `{"model":"stories"}`, 400, "prompt", nil},
		{"prompt type", "/v1/completions", `{"prompt":{"text":"hi"}}`, 400, "prompt", nil},
		{"prompt mixed list", "/v1/completions", `{"prompt":["hi",3]}`, 400, "prompt", nil},
		{"prompt token range", "/v1/completions", `{"prompt":[1,99999]}`, 400, "prompt", nil},
		{"logit_bias key", "/v1/completions", `{"prompt":"hi","logit_bias":{"abc":1}}`, 400, "logit_bias", nil},
		{"logit_bias value", "/v1/completions", `{"prompt":"hi","logit_bias":{"5":200}}`, 400, "logit_bias", nil},
		{"logit_bias token", "/v1/completions", `{"prompt":"hi","logit_bias":{"99999":1}}`, 400, "logit_bias", nil},
		{"logit_bias type", "/v1/completions", `{"prompt":"hi","logit_bias":{"5":"up"}}`, 400, "logit_bias", nil},
		{"logprobs range", "/v1/completions", `{"prompt":"hi","logprobs":30}`, 400, "logprobs", nil},
		{"stop type", "/v1/completions", `{"prompt":"hi","stop":5}`, 400, "stop", nil},
		{"stop empty", "/v1/completions", `{"prompt":"hi","stop":[""]}`, 400, "stop", nil},
		{"stream type", "/v1/completions", `{"prompt":"hi","stream":"yes"}`, 400, "stream", nil},
		{"stream_options without stream", "/v1/completions", `{"prompt":"hi","stream_options":{"include_usage":true}}`, 400, "stream_options", nil},
		{"seed type", "/v1/completions", `{"prompt":"hi","seed":"abc"}`, 400, "seed", nil},
		{"suffix", "/v1/completions", `{"prompt":"hi","suffix":"end"}`, 400, "suffix", nil},
		{"best_of", "/v1/completions", `{"prompt":"hi","best_of":3}`, 400, "best_of", nil},
		{"echo with logprobs", "/v1/completions", `{"prompt":"hi","echo":true,"logprobs":2}`, 400, "echo", nil},
		{"unknown model", "/v1/completions", `{"model":"gpt-4o","prompt":"hi"}`, 404, "model", "model_not_found"},
		{"chat without template", "/v1/chat/completions", `{"model":"stories","messages":[{"role":"user","content":"hi"}]}`, 400, "messages", nil},
		{"chat unknown model", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "model", "model_not_found"},
		{"chat malformed", "/v1/chat/completions", `{"messages":`, 400, nil, nil},
		{"chat messages type", "/v1/chat/completions", `{"messages":"hi"}`, 400, "messages", nil},
		{"chat tools", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"retrieval"}]}`, 400, "tools[0].type", nil},
		{"chat tool name", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"a b"}}]}`, 400, "tools[0].function.name", nil},
		{"chat tool_choice", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, 400, "tool_choice.function.name", nil},
		{"chat top_logprobs range", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"logprobs":true,"top_logprobs":21}`, 400, "top_logprobs", nil},
		{"chat top_logprobs alone", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"top_logprobs":2}`, 400, "logprobs", nil},
		{"chat max_completion_tokens", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":-1}`, 400, "max_completion_tokens", nil},
		{"chat response_format", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema"}}`, 400, "response_format.json_schema", nil},
		{"chat response_format type", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"yaml"}}`, 400, "response_format.type", nil},
		{"bad grammar", "/v1/completions", `{"prompt":"hi","guided_grammar":"rule: \"x\""}`, 400, "guided_grammar", nil},
		{"two constraints", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"},"guided_regex":"a+"}`, 400, "guided_regex", nil},
		{"tokenize nothing", "/tokenize", `{"model":"stories"}`, 400, "prompt", nil},
		{"tokenize unknown model", "/tokenize", `{"model":"x","prompt":"hi"}`, 404, "model", "model_not_found"},
		{"detokenize range", "/detokenize", `{"tokens":[1,-4]}`, 400, "tokens", nil},
		{"detokenize type", "/detokenize", `{"tokens":"abc"}`, 400, "tokens", nil},
		{"unknown path", "/v1/embeddings", `{}`, 404, nil, nil},
	}
}

func checkErrCase(t *testing.T, s *testServer, tc errCase) {
	t.Helper()
	status, _, body := s.post(tc.path, tc.body)
	if status != tc.status {
		t.Errorf("%s: status %d, want %d: %s", tc.name, status, tc.status, body)
		return
	}
	e := checkErrorBody(t, body)
	if e["param"] != tc.param {
		t.Errorf("%s: param %v, want %v: %s", tc.name, e["param"], tc.param, body)
	}
	if e["code"] != tc.code {
		t.Errorf("%s: code %v, want %v: %s", tc.name, e["code"], tc.code, body)
	}
	wantType := "invalid_request_error"
	if e["type"] != wantType {
		t.Errorf("%s: type %v, want %s", tc.name, e["type"], wantType)
	}
}

func TestErrorClasses(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	for _, tc := range errorCases() {
		checkErrCase(t, s, tc)
	}
	// Wrong method on a known path.
	status, _, body := s.get("/v1/completions")
	if status != http.StatusMethodNotAllowed {
		t.Errorf("GET /v1/completions: %d", status)
	}
	checkErrorBody(t, body)
}

// The official client surfaces the errors with their fields.
func TestErrorsThroughClient(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	c := s.client()
	p := completionParams(storyPrompt, 8)
	p.Model = "no-such-model"
	_, err := c.Completions.New(context.Background(), p)
	var apiErr *oai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
		t.Errorf("unknown model: %v", err)
	}
	p = completionParams(storyPrompt, 8)
	p.Temperature = oai.Float(5)
	_, err = c.Completions.New(context.Background(), p)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != "temperature" || apiErr.Type != "invalid_request_error" {
		t.Errorf("temperature 5: %v", err)
	}
	_, err = c.Models.Get(context.Background(), "nope")
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
		t.Errorf("models.get nope: %v", err)
	}
}

func TestAPIKeys(t *testing.T) {
	s := newTestServer(t, serverConfig{keys: []string{"key-one", "key-two"}})
	for _, tc := range []struct {
		header string
		status int
	}{
		{"", 401},
		{"Bearer wrong", 401},
		{"Basic key-one", 401},
		{"Bearer key-one", 200},
		{"Bearer key-two", 200},
	} {
		var h []string
		if tc.header != "" {
			h = []string{"Authorization", tc.header}
		}
		status, hdr, body := s.post("/v1/completions", `{"prompt":"hi","max_tokens":2}`, h...)
		if status != tc.status {
			t.Errorf("Authorization %q: status %d, want %d: %s", tc.header, status, tc.status, body)
			continue
		}
		if status == 401 {
			e := checkErrorBody(t, body)
			if e["code"] != "invalid_api_key" || hdr.Get("WWW-Authenticate") == "" {
				t.Errorf("401 body %s headers %v", body, hdr)
			}
		}
	}
	// The client with a good key works; with a bad one it gets 401.
	if _, err := s.client(option.WithAPIKey("key-two")).Models.List(context.Background()); err != nil {
		t.Errorf("good key: %v", err)
	}
	var apiErr *oai.Error
	if _, err := s.client(option.WithAPIKey("bad")).Models.List(context.Background()); !errors.As(err, &apiErr) || apiErr.StatusCode != 401 {
		t.Errorf("bad key: %v", err)
	}
	// /health and /metrics stay open.
	for _, path := range []string{"/health", "/metrics"} {
		if status, _, _ := s.get(path); status != 200 {
			t.Errorf("%s without key: %d", path, status)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	s := newTestServer(t, serverConfig{maxBody: 2048})
	status, _, body := s.post("/v1/completions", `{"prompt":"`+strings.Repeat("a", 4096)+`"}`)
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", status, body)
	}
	if e := checkErrorBody(t, body); e["code"] != "request_too_large" {
		t.Errorf("413 body %s", body)
	}
	if status, _, body := s.post("/v1/completions", `{"prompt":"hi","max_tokens":2}`); status != 200 {
		t.Errorf("small body after a large one: %d %s", status, body)
	}
}

// failingEngine wraps the engine with a Submit that fails as told.
type failingEngine struct {
	*engine.Engine
	submitErr error // returned by Submit
	eventErr  error // sent as the final event after two tokens
}

func (f *failingEngine) Submit(ctx context.Context, req engine.Request) (<-chan engine.Event, error) {
	if f.submitErr != nil {
		return nil, f.submitErr
	}
	ch := make(chan engine.Event, 3)
	ch <- engine.Event{Text: " one", Token: 5}
	ch <- engine.Event{Text: " two", Token: 6}
	ch <- engine.Event{Token: -1, Done: true, Err: f.eventErr}
	close(ch)
	return ch, nil
}

// 500s and mid-stream failures never show the internal error; overload and
// shutdown are 429/503 with Retry-After.
func TestServerErrors(t *testing.T) {
	secret := errors.New("secret internal detail /home/x/weights.go:12")
	for _, tc := range []struct {
		name       string
		submitErr  error
		status     int
		retryAfter bool
		typ        string
	}{
		{"internal", secret, 500, false, "server_error"},
		{"overloaded", engine.ErrOverloaded, 429, true, "requests"},
		{"closed", engine.ErrClosed, 503, true, "server_error"},
	} {
		s := newTestServer(t, serverConfig{wrap: func(e *engine.Engine) Generator {
			return &failingEngine{Engine: e, submitErr: tc.submitErr}
		}})
		status, hdr, body := s.post("/v1/completions", `{"prompt":"hi"}`)
		if status != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, status, tc.status)
		}
		e := checkErrorBody(t, body)
		if e["type"] != tc.typ || (hdr.Get("Retry-After") != "") != tc.retryAfter {
			t.Errorf("%s: body %s Retry-After %q", tc.name, body, hdr.Get("Retry-After"))
		}
		if strings.Contains(string(body), "secret") {
			t.Errorf("%s: internal error leaked: %s", tc.name, body)
		}
		if tc.name == "internal" && !strings.Contains(s.logs.String(), "secret internal detail") {
			t.Errorf("the internal error is not logged")
		}
	}

	s := newTestServer(t, serverConfig{wrap: func(e *engine.Engine) Generator {
		return &failingEngine{Engine: e, eventErr: secret}
	}})
	status, _, body := s.post("/v1/completions", `{"prompt":"hi","stream":true}`)
	events := sseEvents(t, body)
	if status != 200 || len(events) != 4 || events[3] != "[DONE]" {
		t.Fatalf("mid-stream failure: status %d events %q", status, events)
	}
	checkErrorBody(t, []byte(events[2]))
	if strings.Contains(events[2], "secret") {
		t.Errorf("mid-stream error leaked: %s", events[2])
	}
	// The official client reports it as an error.
	stream := s.client().Completions.NewStreaming(context.Background(), completionParams("hi", 8))
	for stream.Next() {
	}
	if stream.Err() == nil || !strings.Contains(stream.Err().Error(), "error") {
		t.Errorf("client did not see the stream error: %v", stream.Err())
	}
	// Non-streamed, the same failure is a 500.
	status, _, body = s.post("/v1/completions", `{"prompt":"hi"}`)
	if status != 500 || strings.Contains(string(body), "secret") {
		t.Errorf("non-stream failure: %d %s", status, body)
	}
}

// A real saturated engine answers 429 with Retry-After.
func TestOverloadRealEngine(t *testing.T) {
	s := newTestServer(t, serverConfig{engine: engine.Options{MaxRunning: 1, MaxWaiting: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := `{"prompt":"hi","max_tokens":400,"ignore_eos":true,"stream":true}`
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	got429 := false
	for i := 0; i < 6 && !got429; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.ts.URL+"/v1/completions", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 429 {
			got429 = true
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
			b := make([]byte, 4096)
			n, _ := resp.Body.Read(b)
			checkErrorBody(t, b[:n])
			resp.Body.Close()
			break
		}
		// Keep the stream open (it holds its slot) until the test ends.
		wg.Go(func() {
			defer resp.Body.Close()
			buf := make([]byte, 1024)
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					return
				}
			}
		})
	}
	if !got429 {
		t.Fatalf("no 429 with 1 running + 1 waiting slot and 6 long requests")
	}
}

// 100 malformed requests of varied kinds, sent concurrently with valid
// ones: each gets its status and the error shape, and the server keeps
// serving.
func TestMalformedFlood(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	cases := errorCases()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	for i := range 100 {
		tc := cases[i%len(cases)]
		tc.name = fmt.Sprintf("#%d %s", i, tc.name)
		wg.Go(func() {
			status, _, body := s.post(tc.path, tc.body)
			if status != tc.status {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %d, want %d", tc.name, status, tc.status))
				mu.Unlock()
			}
			if _, err := errorShape(body); err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("%s: %v", tc.name, err))
				mu.Unlock()
			}
		})
		if i%10 == 0 { // valid requests in between
			wg.Go(func() {
				if status, _, body := s.post("/v1/completions", `{"prompt":"hi","max_tokens":3}`); status != 200 {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("valid request: %d %s", status, body))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if status, _, body := s.post("/v1/completions", `{"prompt":"hi","max_tokens":3}`); status != 200 {
		t.Fatalf("server stopped serving: %d %s", status, body)
	}
}
