package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/parrot-llm/parrot/runtime/chat"
)

// tool is a function the client offers (OpenAI's {"type": "function",
// "function": {"name", "description", "parameters", "strict"}}).
type tool struct {
	Name       string
	Parameters json.RawMessage // a JSON Schema; {} when absent
}

// toolChoice modes.
const (
	toolsNone     = "none"
	toolsAuto     = "auto"
	toolsRequired = "required"
	toolsNamed    = "named" // {"type": "function", "function": {"name"}}
)

// toolRequest is what a request's tools and tool_choice ask for.
type toolRequest struct {
	tools    []tool
	raw      json.RawMessage // the tools array as sent, for the chat template
	mode     string
	name     string // the tool, in named mode
	parallel bool
}

// parseTools reads tools, tool_choice and parallel_tool_calls; nil when no
// tools are offered.
func parseTools(rawTools, rawChoice json.RawMessage, parallel *bool) (*toolRequest, error) {
	if isNull(rawTools) || bytes.Equal(bytes.TrimSpace(rawTools), []byte("[]")) {
		if !isNull(rawChoice) {
			var s string
			if json.Unmarshal(rawChoice, &s) != nil || (s != toolsNone && s != toolsAuto) {
				return nil, perr("tool_choice", "'tool_choice' names a tool but 'tools' is empty.")
			}
		}
		return nil, nil
	}
	var defs []struct {
		Type     string `json:"type"`
		Function *struct {
			Name        string          `json:"name"`
			Description string          `json:"description"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	}
	if err := json.Unmarshal(rawTools, &defs); err != nil {
		return nil, perr("tools", "'tools' must be an array of {\"type\": \"function\", \"function\": {...}} objects.")
	}
	tr := &toolRequest{raw: rawTools, mode: toolsAuto, parallel: parallel == nil || *parallel}
	seen := map[string]bool{}
	for i, d := range defs {
		if d.Type != "function" || d.Function == nil {
			return nil, perr(fmt.Sprintf("tools[%d].type", i), "Only function tools are supported ('tools[%d]' has type %q).", i, d.Type)
		}
		if !validToolName(d.Function.Name) {
			return nil, perr(fmt.Sprintf("tools[%d].function.name", i), "'tools[%d].function.name' must be 1 to 64 letters, digits, '_' or '-', got %q.", i, d.Function.Name)
		}
		if seen[d.Function.Name] {
			return nil, perr(fmt.Sprintf("tools[%d].function.name", i), "Tool %q is defined twice.", d.Function.Name)
		}
		seen[d.Function.Name] = true
		params := d.Function.Parameters
		if isNull(params) {
			params = json.RawMessage(`{"type": "object"}`)
		}
		tr.tools = append(tr.tools, tool{Name: d.Function.Name, Parameters: params})
	}
	if isNull(rawChoice) {
		return tr, nil
	}
	var mode string
	if json.Unmarshal(rawChoice, &mode) == nil {
		switch mode {
		case toolsNone, toolsAuto, toolsRequired:
			tr.mode = mode
			return tr, nil
		}
		return nil, perr("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}, got %q.", mode)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(rawChoice, &named); err != nil || named.Type != "function" {
		return nil, perr("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}.")
	}
	if !seen[named.Function.Name] {
		return nil, perr("tool_choice.function.name", "'tool_choice' names %q, which is not in 'tools'.", named.Function.Name)
	}
	tr.mode, tr.name = toolsNamed, named.Function.Name
	return tr, nil
}

func validToolName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// offered reports whether the model sees the tools (tool_choice none hides
// them, so the model answers in text).
func (tr *toolRequest) offered() bool { return tr != nil && tr.mode != toolsNone }

// forced reports whether the output must be a tool call.
func (tr *toolRequest) forced() bool {
	return tr != nil && (tr.mode == toolsRequired || tr.mode == toolsNamed)
}

// callSchema is the JSON Schema of a call in the Llama 3.x JSON format,
// {"name": ..., "parameters": {...}}, of the named tool or of any tool:
// with tool_choice required or named the output is constrained to it, so it
// always parses.
func (tr *toolRequest) callSchema() []byte {
	var alts []string
	for _, t := range tr.tools {
		if tr.mode == toolsNamed && t.Name != tr.name {
			continue
		}
		name, _ := json.Marshal(t.Name)
		alts = append(alts, `{"type": "object", "properties": {"name": {"const": `+string(name)+`}, "parameters": `+
			string(t.Parameters)+`}, "required": ["name", "parameters"], "additionalProperties": false}`)
	}
	if len(alts) == 1 {
		return []byte(alts[0])
	}
	return []byte(`{"anyOf": [` + strings.Join(alts, ", ") + `]}`)
}

// pythonTag starts a Llama 3.1 tool call (it is a special token, so the
// decoder usually drops it; a template may also print it as text).
const pythonTag = "<|python_tag|>"

// toolCall is a call the model made, in OpenAI's shape.
type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"` // a JSON object, as a string
}

// parseToolCalls reads the model's text as tool calls in the Llama 3.x
// JSON format: {"name": ..., "parameters": {...}} ("arguments" also
// accepted), several separated by ';' or given as an array, optionally
// after <|python_tag|> (vLLM's llama3_json parser reads the same). ok is
// false when the text is not entirely calls of offered tools: it is then
// the reply's content.
func (tr *toolRequest) parseToolCalls(text string) (calls []toolCall, ok bool) {
	s := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(text), pythonTag))
	if s == "" || (s[0] != '{' && s[0] != '[') {
		return nil, false
	}
	var items []json.RawMessage
	if s[0] == '[' {
		if json.Unmarshal([]byte(s), &items) != nil {
			return nil, false
		}
	} else {
		dec := json.NewDecoder(strings.NewReader(s))
		for {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return nil, false
			}
			items = append(items, raw)
			rest := strings.TrimSpace(s[dec.InputOffset():])
			if rest == "" {
				break
			}
			if rest[0] != ';' {
				return nil, false
			}
			s = strings.TrimSpace(rest[1:])
			dec = json.NewDecoder(strings.NewReader(s))
		}
	}
	known := map[string]bool{}
	for _, t := range tr.tools {
		known[t.Name] = true
	}
	for _, it := range items {
		var c struct {
			Name       string          `json:"name"`
			Parameters json.RawMessage `json:"parameters"`
			Arguments  json.RawMessage `json:"arguments"`
		}
		if json.Unmarshal(it, &c) != nil || !known[c.Name] {
			return nil, false
		}
		args := c.Parameters
		if isNull(args) {
			args = c.Arguments
		}
		if isNull(args) {
			args = json.RawMessage(`{}`)
		}
		var buf bytes.Buffer
		if json.Compact(&buf, args) != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
			return nil, false
		}
		calls = append(calls, toolCall{ID: newID("call_"), Type: "function", Function: toolFunction{Name: c.Name, Arguments: buf.String()}})
	}
	if len(calls) > 1 && !tr.parallel {
		calls = calls[:1]
	}
	return calls, len(calls) > 0
}

// toolCallsIn converts an assistant message's OpenAI tool_calls to what
// Hugging Face chat templates expect: arguments as an object, not a string.
func toolCallsIn(raw json.RawMessage, param string) ([]map[string]any, error) {
	var calls []struct {
		ID       string `json:"id"`
		Type     string `json:"type"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &calls); err != nil {
		return nil, perr(param, "'%s' must be an array of {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}} objects.", param)
	}
	out := make([]map[string]any, len(calls))
	for i, c := range calls {
		if c.Type != "function" || c.Function.Name == "" {
			return nil, perr(param, "'%s[%d]' must be {\"id\", \"type\": \"function\", \"function\": {\"name\", \"arguments\"}}.", param, i)
		}
		args := strings.TrimSpace(c.Function.Arguments)
		if args == "" {
			args = "{}"
		}
		if !json.Valid([]byte(args)) {
			return nil, perr(fmt.Sprintf("%s[%d].function.arguments", param, i), "'%s[%d].function.arguments' must be a JSON object encoded as a string.", param, i)
		}
		out[i] = map[string]any{"id": c.ID, "type": "function",
			"function": map[string]any{"name": c.Function.Name, "arguments": json.RawMessage(args)}}
	}
	return out, nil
}

// templateTools is the tools variable of the chat template, as
// transformers passes it (apply_chat_template(tools=...)): the OpenAI tool
// objects, with their JSON key order kept.
func (tr *toolRequest) templateOption() chat.Option {
	return chat.WithVar("tools", tr.raw)
}
