package openai

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parrot-llm/parrot/runtime/engine"
)

// FuzzRequest sends arbitrary bodies to the inference and token routes of a
// server whose engine refuses every submission (so nothing is generated):
// decoding, validation, chat templating and tokenization all run on the
// real stories260K model, and every answer must be a 4xx in the OpenAI error
// shape, or 429 from the refusing engine, or a 200 from /tokenize and
// /detokenize, never a 5xx or a panic.
func FuzzRequest(f *testing.F) {
	for _, seed := range []struct {
		route byte
		body  string
	}{
		{0, `{"model": "stories", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5}`},
		{0, `{"messages": [{"role": "system", "content": [{"type": "text", "text": "x"}]}, {"role": "tool", "content": null}], "n": 3, "stop": ["a", "b"], "logit_bias": {"5": 2}}`},
		{0, `{"messages": [{"role": "assistant", "tool_calls": []}], "stream": true, "stream_options": {"include_usage": true}, "top_k": -1, "seed": -1}`},
		{1, `{"model": "stories", "prompt": "Once upon a time", "max_tokens": 8, "logprobs": 2, "echo": false}`},
		{1, `{"prompt": [[1, 2, 3], [4]], "n": 2, "best_of": 2, "temperature": 0}`},
		{1, `{"prompt": ["a", "b"], "min_p": 0.1, "top_p": 0.5, "repetition_penalty": 1.2}`},
		{1, `{"prompt": [1, null]}`},
		{2, `{"model": "stories", "prompt": "Hello", "add_special_tokens": false}`},
		{2, `{"messages": [{"role": "user", "content": "hi"}], "add_generation_prompt": true}`},
		{3, `{"model": "stories", "tokens": [1, 2, 3, 400]}`},
		{3, `{"tokens": [-1]}`},
		{0, `[]`},
		{1, `{"prompt": "x", "max_tokens": 99999999999}`},
	} {
		f.Add(seed.route, []byte(seed.body))
	}
	s := newTestServer(f, serverConfig{wrap: func(e *engine.Engine) Generator {
		return &failingEngine{Engine: e, submitErr: engine.ErrOverloaded}
	}})
	h := s.srv.Handler()
	routes := []string{"/v1/chat/completions", "/v1/completions", "/tokenize", "/detokenize"}
	f.Fuzz(func(t *testing.T, route byte, body []byte) {
		path := routes[int(route)%len(routes)]
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch code := rec.Code; {
		case code == 200 && (path == "/tokenize" || path == "/detokenize"):
		case code == 429:
		case code >= 400 && code < 500:
			if _, err := errorShape(rec.Body.Bytes()); err != nil {
				t.Fatalf("%s %q: %d with a body not in the OpenAI error shape (%v): %s", path, body, code, err, rec.Body)
			}
		default:
			t.Fatalf("%s %q: status %d: %s", path, body, code, rec.Body)
		}
	})
}
