package openai

import (
	"encoding/json"
	"strings"
	"testing"
)

type responseJSON struct {
	Object string `json:"object"`
	Status string `json:"status"`
	Output []struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Role    string `json:"role"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"output"`
	Usage struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func TestResponsesAPI(t *testing.T) {
	s := newTestServer(t, serverConfig{dir: randomModel(t)})
	post := func(body string) (int, responseJSON, []byte) {
		t.Helper()
		code, _, b := s.post("/v1/responses", body)
		var r responseJSON
		if code == 200 {
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
		}
		return code, r, b
	}

	// Text in, text out.
	code, r, body := post(`{"model": "stories", "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 12, "temperature": 0}`)
	if code != 200 || r.Object != "response" || r.Usage.OutputTokens != 12 || r.Usage.TotalTokens != r.Usage.InputTokens+12 || len(r.Output) != 1 || r.Output[0].Type != "message" || r.Output[0].Role != "assistant" ||
		len(r.Output[0].Content) != 1 || r.Output[0].Content[0].Type != "output_text" || r.Status != "incomplete" {
		t.Fatalf("text response: %d %s", code, body)
	}

	// text.format json_schema: the output parses.
	code, r, body = post(`{"model": "stories", "input": [{"role": "user", "content": [{"type": "input_text", "text": "A person"}]}],
		"text": {"format": {"type": "json_schema", "name": "person", "schema": ` + personSchema + `, "strict": true}}, "temperature": 1.1, "seed": 2, "max_output_tokens": 4000}`)
	if code != 200 || r.Status != "completed" || len(r.Output) != 1 {
		t.Fatalf("json_schema response: %d %s", code, body)
	}
	checkPerson(t, r.Output[0].Content[0].Text)

	// A required function call, then its output sent back.
	tools := `[{"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"type": "string", "maxLength": 10}}, "required": ["zone"], "additionalProperties": false}}]`
	code, r, body = post(`{"model": "stories", "input": "What time is it?", "tools": ` + tools + `, "tool_choice": "required", "temperature": 1, "seed": 3, "max_output_tokens": 400}`)
	if code != 200 || len(r.Output) != 1 || r.Output[0].Type != "function_call" || r.Output[0].Name != "get_time" ||
		!strings.HasPrefix(r.Output[0].CallID, "call_") || !json.Valid([]byte(r.Output[0].Arguments)) {
		t.Fatalf("function call response: %d %s", code, body)
	}
	call := r.Output[0]
	code, r, body = post(`{"model": "stories", "tools": ` + tools + `, "tool_choice": {"type": "function", "name": "get_time"}, "max_output_tokens": 400, "input": [
		{"role": "user", "content": "What time is it?"},
		{"type": "function_call", "call_id": "` + call.CallID + `", "name": "get_time", "arguments": ` + mustJSON(call.Arguments) + `},
		{"type": "function_call_output", "call_id": "` + call.CallID + `", "output": "12:00"}]}`)
	if code != 200 || r.Output[0].Type != "function_call" {
		t.Fatalf("after a function_call_output: %d %s", code, body)
	}

	// Streamed: the typed events in order, ending with response.completed.
	code, _, raw := s.post("/v1/responses", `{"model": "stories", "input": "Hi", "max_output_tokens": 5, "temperature": 0, "stream": true}`)
	var types []string
	for _, block := range strings.Split(strings.TrimSpace(string(raw)), "\n\n") {
		name, _, _ := strings.Cut(strings.TrimPrefix(block, "event: "), "\n")
		types = append(types, name)
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	if code != 200 || len(types) < 8 || strings.Join(types[:4], " ") != strings.Join(want, " ") ||
		types[len(types)-1] != "response.incomplete" || types[len(types)-2] != "response.output_item.done" {
		t.Errorf("stream events: %d %q", code, types)
	}

	// Stateless: previous_response_id is refused.
	code, _, body = post(`{"model": "stories", "input": "Hi", "previous_response_id": "resp_123"}`)
	if e := checkErrorBody(t, body); code != 400 || e["param"] != "previous_response_id" {
		t.Errorf("previous_response_id: %d %s", code, body)
	}
}

func mustJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
