package openai

import (
	"context"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	oai "github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/shared"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/testmodel"
)

const personSchema = `{"type": "object", "properties": {
	"name": {"type": "string", "maxLength": 20},
	"age": {"type": "integer", "minimum": 0, "maximum": 120},
	"mood": {"enum": ["happy", "sad", "pirate"]},
	"tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}},
	"required": ["name", "age", "mood", "tags"], "additionalProperties": false}`

type person struct {
	Name string   `json:"name"`
	Age  int      `json:"age"`
	Mood string   `json:"mood"`
	Tags []string `json:"tags"`
}

// checkPerson parses a reply as personSchema demands.
func checkPerson(t *testing.T, text string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var p person
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("reply is not a person: %v: %q", err, text)
	}
	var all map[string]json.RawMessage
	json.Unmarshal([]byte(text), &all)
	if len(all) != 4 || len([]rune(p.Name)) > 20 || p.Age < 0 || p.Age > 120 ||
		!slices.Contains([]string{"happy", "sad", "pirate"}, p.Mood) || len(p.Tags) > 3 {
		t.Fatalf("reply breaks the schema: %q", text)
	}
}

// A model that knows nothing of JSON (stories260K, sampled hot) still
// answers in the schema, because the mask, not the model, decides.
func TestResponseFormatJSONSchema(t *testing.T) {
	s := newTestServer(t, serverConfig{tmpl: chat.BuiltinLlama31})
	var schema map[string]any
	if err := json.Unmarshal([]byte(personSchema), &schema); err != nil {
		t.Fatal(err)
	}
	resp, err := s.client().Chat.Completions.New(context.Background(), oai.ChatCompletionNewParams{
		Model:       "stories",
		Messages:    []oai.ChatCompletionMessageParamUnion{oai.UserMessage("Describe a person.")},
		Temperature: oai.Float(1.3), N: oai.Int(4), Seed: oai.Int(1), MaxTokens: oai.Int(300),
		ResponseFormat: oai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: schema, Strict: oai.Bool(true)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Choices {
		if c.FinishReason != "stop" {
			t.Errorf("choice %d finished with %s: %q", c.Index, c.FinishReason, c.Message.Content)
			continue
		}
		checkPerson(t, c.Message.Content)
	}

	// json_object: any JSON object, from a random-weight model with room
	// for the longest object the default bounds allow.
	r := newTestServer(t, serverConfig{dir: randomModel(t)})
	resp, err = r.client().Chat.Completions.New(context.Background(), oai.ChatCompletionNewParams{
		Model: "stories", Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("JSON please")},
		Temperature: oai.Float(1.0), Seed: oai.Int(3), MaxTokens: oai.Int(6000),
		ResponseFormat: oai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if c := resp.Choices[0]; c.FinishReason != "stop" || json.Unmarshal([]byte(c.Message.Content), &obj) != nil {
		t.Errorf("json_object reply (%s): %q", c.FinishReason, c.Message.Content)
	}

	// An unsupported keyword is refused, naming it.
	code, _, body := s.post("/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}],
		"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "patternProperties": {"a": {}}}}}}`)
	if e := checkErrorBody(t, body); code != 400 || !strings.Contains(e["message"].(string), "patternProperties") {
		t.Errorf("unsupported keyword: %d %s", code, body)
	}
}

// vLLM's guided_choice and guided_regex (and structured_outputs) on the
// completions endpoint.
func TestGuidedChoiceAndRegex(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	for _, tc := range []struct {
		body  string
		check func(string) bool
	}{
		{`{"prompt": "Once upon a time", "guided_choice": ["dragon", "princess", "robot"], "n": 3, "temperature": 1.5, "seed": 4}`,
			func(s string) bool { return slices.Contains([]string{"dragon", "princess", "robot"}, s) }},
		{`{"prompt": "Once upon a time", "structured_outputs": {"regex": "[A-Z][a-z]{2,6}-[0-9]{3}"}, "n": 3, "temperature": 1.5, "seed": 5}`,
			regexp.MustCompile(`^[A-Z][a-z]{2,6}-[0-9]{3}$`).MatchString},
		{`{"prompt": "Once upon a time", "guided_json": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 4}, "temperature": 1.2, "seed": 6, "max_tokens": 200}`,
			func(s string) bool {
				var a []int
				return json.Unmarshal([]byte(s), &a) == nil && len(a) >= 2 && len(a) <= 4
			}},
		{`{"prompt": "Once upon a time", "structured_outputs": {"grammar": "start: NUM (\"+\" NUM)~0..4\nNUM: /[1-9][0-9]?/\n"}, "n": 3, "temperature": 1.5, "seed": 7, "max_tokens": 200}`,
			regexp.MustCompile(`^[1-9][0-9]?(\+[1-9][0-9]?){0,4}$`).MatchString},
		{`{"prompt": "Once", "guided_grammar": "start: \"yes\" | \"no\"", "temperature": 1.5, "seed": 8}`,
			func(s string) bool { return s == "yes" || s == "no" }},
	} {
		code, _, body := s.post("/v1/completions", tc.body)
		var resp struct {
			Choices []struct {
				Text         string `json:"text"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		if code != 200 || json.Unmarshal(body, &resp) != nil || len(resp.Choices) == 0 {
			t.Fatalf("%s: %d %s", tc.body, code, body)
		}
		for _, c := range resp.Choices {
			if c.FinishReason != "stop" || !tc.check(c.Text) {
				t.Errorf("%s: choice %q (%s)", tc.body, c.Text, c.FinishReason)
			}
		}
	}
}

var weatherTools = []oai.ChatCompletionToolUnionParam{
	oai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_weather", Description: oai.String("Weather in a city"),
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{
			"city": map[string]any{"type": "string", "maxLength": 16}, "unit": map[string]any{"enum": []string{"C", "F"}}},
			"required": []string{"city", "unit"}, "additionalProperties": false}}),
	oai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{Name: "get_time",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"zone": map[string]any{"type": "string", "maxLength": 10}},
			"required": []string{"zone"}, "additionalProperties": false}}),
}

// With tool_choice required (or naming a tool) the reply is always a call
// that parses, streamed or not, and its result goes back into the
// conversation as the template expects.
func TestForcedToolCalls(t *testing.T) {
	s := newTestServer(t, serverConfig{dir: randomModel(t)})
	ctx := context.Background()
	msgs := []oai.ChatCompletionMessageParamUnion{oai.UserMessage("What's the weather in Paris?")}
	params := oai.ChatCompletionNewParams{Model: "stories", Messages: msgs, Tools: weatherTools, Temperature: oai.Float(1.2),
		Seed: oai.Int(7), MaxTokens: oai.Int(300),
		ToolChoice: oai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: oai.String("required")}}
	resp, err := s.client().Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.Choices[0]
	if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || c.Message.Content != "" {
		t.Fatalf("required: %+v", c)
	}
	call := c.Message.ToolCalls[0]
	var args map[string]any
	if !strings.HasPrefix(call.ID, "call_") || (call.Function.Name != "get_weather" && call.Function.Name != "get_time") ||
		json.Unmarshal([]byte(call.Function.Arguments), &args) != nil {
		t.Fatalf("call %+v", call)
	}

	// Streamed, the official client's accumulator rebuilds the same call.
	stream := s.client().Chat.Completions.NewStreaming(ctx, params)
	var acc oai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	sc := acc.Choices[0]
	if sc.FinishReason != "tool_calls" || len(sc.Message.ToolCalls) != 1 ||
		sc.Message.ToolCalls[0].Function.Name != call.Function.Name || sc.Message.ToolCalls[0].Function.Arguments != call.Function.Arguments {
		t.Errorf("streamed call %+v, want %+v", sc.Message.ToolCalls, call)
	}

	// A named tool.
	params.ToolChoice = oai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &oai.ChatCompletionNamedToolChoiceParam{
		Function: oai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_time"}}}
	resp, err = s.client().Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if tc := resp.Choices[0].Message.ToolCalls; len(tc) != 1 || tc[0].Function.Name != "get_time" {
		t.Errorf("named tool: %+v", resp.Choices[0].Message)
	}

	// The result round trip: the assistant's call and the tool's answer
	// are rendered into the next prompt.
	params.Messages = append(msgs, resp.Choices[0].Message.ToParam(),
		oai.ToolMessage(`{"time": "12:00"}`, resp.Choices[0].Message.ToolCalls[0].ID))
	params.ToolChoice = oai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: oai.String("none")}
	final, err := s.client().Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if final.Choices[0].Message.Content == "" || len(final.Choices[0].Message.ToolCalls) != 0 {
		t.Errorf("answer after the tool result: %+v", final.Choices[0].Message)
	}
	// The call and the tool's answer reach the prompt as the Llama 3.1
	// template writes them.
	code, _, body := s.post("/tokenize", `{"model": "stories", "messages": [{"role": "user", "content": "time?"},
		{"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{\"zone\": \"UTC\"}"}}]},
		{"role": "tool", "tool_call_id": "call_1", "content": "TOOL-ANSWER-42"}]}`)
	var tk struct{ Tokens []int32 }
	if code != 200 || json.Unmarshal(body, &tk) != nil {
		t.Fatalf("tokenize with a tool message: %d %s", code, body)
	}
	ids, _ := json.Marshal(tk.Tokens)
	_, _, body = s.post("/detokenize", `{"model": "stories", "tokens": `+string(ids)+`}`)
	var dt struct{ Prompt string }
	json.Unmarshal(body, &dt)
	for _, want := range []string{`{"name": "get_time", "parameters": {"zone": "UTC"}}`, "ipython", "TOOL-ANSWER-42"} {
		if !strings.Contains(dt.Prompt, want) {
			t.Errorf("the rendered conversation lacks %q: %q", want, dt.Prompt)
		}
	}
}

// randomModel writes a tiny random-weight Llama 3-style model (byte-level
// BPE, the Llama 3.1 chat template) with room for the tools' long prompt.
func randomModel(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	o := testmodel.Tiny()
	o.MaxPos = 8192
	if err := testmodel.Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

// scriptedEngine answers every request with the given text, token by
// token: the server's parsing of what a model writes.
type scriptedEngine struct {
	*engine.Engine
	pieces []string
}

func (e *scriptedEngine) Submit(ctx context.Context, req engine.Request) (<-chan engine.Event, error) {
	ch := make(chan engine.Event, len(e.pieces)+1)
	for i, p := range e.pieces {
		ch <- engine.Event{Text: p, Token: int32(10 + i)}
	}
	ch <- engine.Event{Token: -1, Done: true, FinishReason: engine.FinishStop, Usage: engine.Usage{CompletionTokens: len(e.pieces)}}
	close(ch)
	return ch, nil
}

// With tool_choice auto, a reply in Llama 3's JSON call format becomes
// tool_calls (with or without <|python_tag|>, one or several), and any
// other reply stays content, streamed as it comes.
func TestAutoToolCallParsing(t *testing.T) {
	dir := randomModel(t)
	for _, tc := range []struct {
		name   string
		pieces []string
		calls  []string // name(arguments)
		text   string
	}{
		{"one call", []string{`{"name": "get_weather", `, `"parameters": {"city": "Paris", `, `"unit": "C"}}`}, []string{`get_weather({"city":"Paris","unit":"C"})`}, ""},
		{"python tag", []string{"<|python_tag|>", `{"name": "get_time", "arguments": {"zone": "UTC"}}`}, []string{`get_time({"zone":"UTC"})`}, ""},
		{"two calls", []string{`{"name": "get_time", "parameters": {"zone": "A"}}; `, `{"name": "get_time", "parameters": {"zone": "B"}}`},
			[]string{`get_time({"zone":"A"})`, `get_time({"zone":"B"})`}, ""},
		{"plain text", []string{"It is ", "sunny."}, nil, "It is sunny."},
		{"unknown tool", []string{`{"name": "launch", "parameters": {}}`}, nil, `{"name": "launch", "parameters": {}}`},
		{"JSON that is no call", []string{`{"city": `, `"Paris"}`}, nil, `{"city": "Paris"}`},
	} {
		s := newTestServer(t, serverConfig{dir: dir, wrap: func(e *engine.Engine) Generator {
			return &scriptedEngine{Engine: e, pieces: tc.pieces}
		}})
		params := oai.ChatCompletionNewParams{Model: "stories", Messages: []oai.ChatCompletionMessageParamUnion{oai.UserMessage("hi")}, Tools: weatherTools}
		for _, streamed := range []bool{false, true} {
			var msg oai.ChatCompletionMessage
			var finish string
			if streamed {
				stream := s.client().Chat.Completions.NewStreaming(context.Background(), params)
				var acc oai.ChatCompletionAccumulator
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				msg, finish = acc.Choices[0].Message, acc.Choices[0].FinishReason
			} else {
				resp, err := s.client().Chat.Completions.New(context.Background(), params)
				if err != nil {
					t.Fatal(err)
				}
				msg, finish = resp.Choices[0].Message, resp.Choices[0].FinishReason
			}
			var calls []string
			for _, c := range msg.ToolCalls {
				calls = append(calls, c.Function.Name+"("+c.Function.Arguments+")")
			}
			wantFinish := "stop"
			if tc.calls != nil {
				wantFinish = "tool_calls"
			}
			if !slices.Equal(calls, tc.calls) || msg.Content != tc.text || finish != wantFinish {
				t.Errorf("%s (streamed %v): calls %q, content %q, finish %s", tc.name, streamed, calls, msg.Content, finish)
			}
		}
	}
}

// Logprobs of a constrained reply are the raw model's, finite even where
// the constraint allows fewer tokens than top_logprobs asks for.
func TestConstrainedLogprobs(t *testing.T) {
	s := newTestServer(t, serverConfig{})
	for _, stream := range []string{"false", "true"} {
		code, _, body := s.post("/v1/completions", `{"prompt": "Once", "guided_choice": ["dragon"], "logprobs": 5, "temperature": 0, "stream": `+stream+`}`)
		if code != 200 || !strings.Contains(string(body), `"top_logprobs"`) || strings.Contains(string(body), `"error"`) {
			t.Errorf("stream %s: %d %s", stream, code, body)
		}
	}
}
