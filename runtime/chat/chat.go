// Package chat renders Hugging Face chat templates (the Jinja "chat_template"
// of tokenizer_config.json) the way transformers' apply_chat_template does
// (utils/chat_template_utils.py): trim_blocks and lstrip_blocks, loop
// controls, raise_exception, strftime_now, {% generation %}, and a tojson
// filter that is Python's json.dumps.
//
// The Jinja engine is github.com/nikolalohinski/gonja/v2. This package
// replaces the parts of it that differ from Python (tojson, str methods,
// several filters and tests), bounds macro recursion, and turns engine
// panics into errors. testdata/probes.json (Jinja2 outputs, see
// gen_probes.py) pins the behaviour. Known differences from Jinja2 remain
// in corners chat templates rarely touch:
//   - None prints as "" (Jinja2: "None"), also inside lists and after ~;
//     None and undefined are one value, so "x is defined" is false for
//     x = None (transformers passes tools=None, making "tools is defined"
//     true there even without tools);
//   - tuples print as lists, and an empty dict literal written in the
//     template is truthy;
//   - s[i] on a non-ASCII string indexes bytes, not characters (slices
//     s[a:b] are correct);
//   - 2**3 gives 8.0, 1/0 gives +Inf instead of an error, "not 5" gives 0;
//   - "{% set a, b = ... %}" does not parse; include/import/extends are
//     not available (they cannot work in transformers either).
package chat

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// Message is one chat turn as the template sees it: a dict with "role" and
// "content", plus "tool_calls", "name" and "tool_call_id" when set.
type Message struct {
	Role    string
	Content string
	// ToolCalls are calls as Hugging Face templates expect them, e.g.
	// {"type": "function", "function": {"name": "f", "arguments": {...}}}
	// with arguments an object, not OpenAI's JSON string. Map keys reach
	// the template sorted and integral float64s become ints; a
	// json.RawMessage value (e.g. "arguments": json.RawMessage(argsJSON))
	// keeps its JSON key order and number spelling.
	ToolCalls  []map[string]any
	Name       string
	ToolCallID string
}

// Template is a compiled chat template. It is safe for concurrent use.
type Template struct {
	tpl      *exec.Template
	specials map[string]string
}

// TemplateError is returned by Render when the template calls
// raise_exception(message).
type TemplateError struct{ Message string }

func (e *TemplateError) Error() string { return "chat template raised: " + e.Message }

// New compiles a template. specials are variables every render gets, such
// as "bos_token" -> "<|begin_of_text|>" and "eos_token" -> "<|eot_id|>".
func New(source string, specials map[string]string) (t *Template, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("chat: compiling template: engine panic: %v", r)
		}
	}()
	tpl, err := exec.NewTemplate(rootName, newEngineConfig(), sourceLoader{source}, newEnvironment())
	if err != nil {
		return nil, fmt.Errorf("chat: compiling template: %w", err)
	}
	return &Template{tpl: tpl, specials: maps.Clone(specials)}, nil
}

// Option adjusts one Render call.
type Option func(*renderOptions)

type renderOptions struct {
	now        time.Time
	noStrftime bool
	vars       []namedVar
}

type namedVar struct {
	name  string
	value any
}

// WithNow sets the clock strftime_now reads (default time.Now()).
func WithNow(t time.Time) Option { return func(o *renderOptions) { o.now = t } }

// WithoutStrftimeNow leaves strftime_now undefined, as transformers did
// before it added the global (templates then fall back to a fixed date).
func WithoutStrftimeNow() Option { return func(o *renderOptions) { o.noStrftime = true } }

// WithVar sets a template variable such as "tools", "documents",
// "date_string" or "builtin_tools"; it is applied last, so it can override
// "messages" too. Values may be nil, bool, numbers, strings, slices, maps,
// structs (through encoding/json) or json.RawMessage, which keeps the key
// order and number spelling of the JSON text. Go maps are seen in sorted
// key order, and integral float64s as ints (Go's encoding/json turns JSON
// integers into float64; Python's json.loads keeps them int).
func WithVar(name string, value any) Option {
	return func(o *renderOptions) { o.vars = append(o.vars, namedVar{name, value}) }
}

// Render returns the prompt text for messages. The rendered text already
// holds the BOS token when the template prints bos_token, so it must be
// tokenized without adding special tokens.
func (t *Template) Render(messages []Message, addGenerationPrompt bool, opts ...Option) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("chat: rendering template: engine panic: %v", r)
		}
	}()
	o := renderOptions{now: time.Now()}
	for _, opt := range opts {
		opt(&o)
	}
	msgs, err := messagesToEngine(messages)
	if err != nil {
		return "", err
	}
	var raised *TemplateError
	data := map[string]any{
		"messages":              msgs,
		"add_generation_prompt": addGenerationPrompt,
		"raise_exception": func(va *exec.VarArgs) (any, error) {
			msg := ""
			if len(va.Args) > 0 {
				msg = va.Args[0].String()
			}
			raised = &TemplateError{Message: msg}
			return nil, raised
		},
	}
	if !o.noStrftime {
		now := o.now
		data["strftime_now"] = func(va *exec.VarArgs) (any, error) {
			a, err := args("strftime_now", va, "format")
			if err != nil {
				return nil, err
			}
			if !given(a[0]) || !a[0].IsString() {
				return nil, errors.New("strftime_now() takes a format string")
			}
			return strftime(a[0].String(), now), nil
		}
	}
	for k, v := range t.specials {
		data[k] = v
	}
	for _, v := range o.vars {
		ev, err := toEngine(v.value)
		if err != nil {
			return "", fmt.Errorf("chat: variable %q: %w", v.name, err)
		}
		data[v.name] = ev
	}
	out, err = t.tpl.ExecuteToString(exec.NewContext(data))
	if err != nil {
		if raised != nil {
			return "", raised
		}
		return "", fmt.Errorf("chat: rendering template: %s", shorten(err.Error()))
	}
	return out, nil
}

// shorten keeps both ends of a long engine error: gonja wraps an error once
// per nesting level, and the cause is at the end.
func shorten(msg string) string {
	const keep = 500
	if len(msg) <= 2*keep+20 {
		return msg
	}
	head, tail := msg[:keep], msg[len(msg)-keep:]
	return strings.ToValidUTF8(head, "") + " ... " + strings.ToValidUTF8(tail, "")
}

func messagesToEngine(messages []Message) ([]any, error) {
	out := make([]any, len(messages))
	for i, m := range messages {
		d := newDict()
		add := func(k string, v any) {
			d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(v)})
		}
		add("role", m.Role)
		add("content", m.Content)
		if len(m.ToolCalls) > 0 {
			calls, err := toEngine(m.ToolCalls)
			if err != nil {
				return nil, fmt.Errorf("chat: message %d tool_calls: %w", i, err)
			}
			add("tool_calls", calls)
		}
		if m.Name != "" {
			add("name", m.Name)
		}
		if m.ToolCallID != "" {
			add("tool_call_id", m.ToolCallID)
		}
		out[i] = d
	}
	return out, nil
}

// FromTokenizerConfig compiles the chat_template of a tokenizer_config.json.
// chat_template may be a string or a list of {"name", "template"} entries,
// of which "default" is used. Special tokens may be strings or AddedToken
// objects ({"content": ...}). ok is false when the config has no template.
func FromTokenizerConfig(tokenizerConfigJSON []byte) (t *Template, ok bool, err error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(tokenizerConfigJSON, &cfg); err != nil {
		return nil, false, fmt.Errorf("chat: parsing tokenizer_config.json: %w", err)
	}
	source, ok, err := chatTemplateSource(cfg["chat_template"])
	if err != nil || !ok {
		return nil, false, err
	}
	specials, err := SpecialTokens(tokenizerConfigJSON)
	if err != nil {
		return nil, false, err
	}
	t, err = New(source, specials)
	if err != nil {
		return nil, false, err
	}
	return t, true, nil
}

// SpecialTokens returns the special-token strings of a tokenizer_config.json
// (bos_token, eos_token, ...), as templates see them.
func SpecialTokens(tokenizerConfigJSON []byte) (map[string]string, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(tokenizerConfigJSON, &cfg); err != nil {
		return nil, fmt.Errorf("chat: parsing tokenizer_config.json: %w", err)
	}
	specials := map[string]string{}
	// The entries of transformers' special_tokens_map that are strings.
	for _, name := range []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"} {
		tok, set, err := tokenContent(cfg[name])
		if err != nil {
			return nil, fmt.Errorf("chat: tokenizer_config.json %s: %w", name, err)
		}
		if set {
			specials[name] = tok
		}
	}
	return specials, nil
}

func chatTemplateSource(raw json.RawMessage) (string, bool, error) {
	if isNull(raw) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true, nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return "", false, fmt.Errorf("chat: chat_template must be a string or a list of {name, template}: %w", err)
	}
	var names []string
	for _, e := range list {
		if e.Name == "default" {
			return e.Template, true, nil
		}
		names = append(names, e.Name)
	}
	return "", false, fmt.Errorf("chat: chat_template lists templates [%s] but none named \"default\"", strings.Join(names, ", "))
}

// tokenContent reads a special token written as "text" or {"content": "text", ...}.
func tokenContent(raw json.RawMessage) (string, bool, error) {
	if isNull(raw) {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, true, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", false, errors.New(`want a string or an object with "content"`)
	}
	return *obj.Content, true, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || strings.TrimSpace(string(raw)) == "null"
}

// BuiltinLlama31 names the official Llama 3.1 Instruct template, for
// checkpoints whose tokenizer_config.json lacks a chat_template.
const BuiltinLlama31 = "llama-3.1"

//go:embed templates/llama31_official.jinja
var llama31Official string

// Builtin returns the source of a built-in template by name.
func Builtin(name string) (string, bool) {
	switch name {
	case BuiltinLlama31:
		return llama31Official, true
	}
	return "", false
}

// BuiltinNames lists the names Builtin knows.
func BuiltinNames() []string { return []string{BuiltinLlama31} }

// IsJinja reports whether s holds a Jinja expression or statement tag. A
// chat template without one renders every conversation as the same fixed
// text, which is never what is meant.
func IsJinja(s string) bool { return strings.Contains(s, "{{") || strings.Contains(s, "{%") }

// ResolveSource turns a template given by the user into Jinja source: the
// name of a built-in template, the path of a file holding one (e.g. a .jinja
// file, as transformers' chat_template.jinja), or the source itself. Any
// other value (a misspelt name, a missing file) is refused; the error
// lists the built-in names.
func ResolveSource(value string) (string, error) {
	if src, ok := Builtin(value); ok {
		return src, nil
	}
	if IsJinja(value) {
		return value, nil
	}
	info, err := os.Stat(value)
	if err != nil {
		return "", fmt.Errorf("chat template %q is not a built-in template (%s), a file, or Jinja source",
			value, strings.Join(BuiltinNames(), ", "))
	}
	if info.IsDir() {
		return "", fmt.Errorf("chat template %q is a directory, not a template file", value)
	}
	data, err := os.ReadFile(value)
	if err != nil {
		return "", fmt.Errorf("chat template: %w", err)
	}
	if !IsJinja(string(data)) {
		return "", fmt.Errorf("chat template file %s holds no Jinja tags ({{ or {%%})", value)
	}
	return string(data), nil
}
