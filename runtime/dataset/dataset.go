// Package dataset turns supervised fine-tuning data into training examples:
// it reads rows from JSON Lines, JSON or Parquet files (local, or a Hugging
// Face Hub dataset), converts each row into a conversation or a plain text
// (Dolly, Alpaca, messages / ShareGPT conversations, or a text field),
// renders conversations with the model's chat template, tokenizes, masks the
// labels as unsloth's train_on_responses_only does (unsloth_zoo
// dataset_utils.py), truncates, and batches by length with right padding
// (transformers DataCollatorForSeq2Seq) in a deterministic, resumable order.
package dataset

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/parrot-llm/parrot/runtime/chat"
)

// IgnoreIndex is the label of tokens that carry no loss (PyTorch's
// cross_entropy ignore_index).
const IgnoreIndex = -100

// DefaultSystemPrompt is the system message the lab gives Dolly rows.
const DefaultSystemPrompt = "You are an assistant"

// Record is one row as read from a file: column name → value (string,
// float64/int64, bool, nil, []any, map[string]any).
type Record map[string]any

// Row is a record and where it came from; Err is set when the row could not
// be read at all (e.g. a line of a .jsonl file that is not JSON).
type Row struct {
	Record Record
	Where  string // "file.jsonl:12", "data/train.parquet row 7"
	Err    error
}

// Sample is a row in the form training uses: a conversation rendered with the
// chat template, or a plain text trained on every token.
type Sample struct {
	Messages []chat.Message // nil for a text sample
	Text     string
}

// Format says how rows become samples.
type Format struct {
	// TextField is the column of plain-text rows (TRL's dataset_text_field);
	// "" means "text".
	TextField string
	// SystemPrompt is the system message of Dolly/Alpaca rows; "" adds none.
	SystemPrompt string
}

// ToSample converts a record, trying in order: a conversation ("messages" or
// "conversations": role/content or ShareGPT from/value), an instruction row
// (Dolly: instruction, context, response; Alpaca: instruction, input,
// output), and the text field.
func ToSample(r Record, f Format) (Sample, error) {
	textField := f.TextField
	if textField == "" {
		textField = "text"
	}
	for _, key := range []string{"messages", "conversations"} {
		if v, ok := r[key]; ok && v != nil {
			msgs, err := toMessages(v)
			if err != nil {
				return Sample{}, fmt.Errorf("%s: %w", key, err)
			}
			return Sample{Messages: msgs}, nil
		}
	}
	if _, ok := r["instruction"]; ok {
		return instructionSample(r, f.SystemPrompt)
	}
	if v, ok := r[textField]; ok {
		s, ok := v.(string)
		if !ok {
			return Sample{}, fmt.Errorf("%s is %s, not a string", textField, typeName(v))
		}
		if s == "" {
			return Sample{}, fmt.Errorf("%s is empty", textField)
		}
		return Sample{Text: s}, nil
	}
	return Sample{}, fmt.Errorf("no usable columns (have %s; want messages, conversations, instruction+response or %s)",
		columns(r), textField)
}

// instructionSample builds the lab's conversation from a Dolly or Alpaca row:
// system prompt, user = context + "\n\n" + instruction (the instruction alone
// without context), assistant = response; empty messages are dropped.
func instructionSample(r Record, system string) (Sample, error) {
	get := func(keys ...string) (string, error) {
		for _, k := range keys {
			v, ok := r[k]
			if !ok || v == nil {
				continue
			}
			s, ok := v.(string)
			if !ok {
				return "", fmt.Errorf("%s is %s, not a string", k, typeName(v))
			}
			return s, nil
		}
		return "", nil
	}
	instruction, err := get("instruction")
	if err != nil {
		return Sample{}, err
	}
	context, err := get("context", "input")
	if err != nil {
		return Sample{}, err
	}
	response, err := get("response", "output")
	if err != nil {
		return Sample{}, err
	}
	if _, ok := r["response"]; !ok {
		if _, ok := r["output"]; !ok {
			return Sample{}, fmt.Errorf("instruction row without a response (or output) column")
		}
	}
	user := instruction
	if context != "" {
		user = context + "\n\n" + instruction
	}
	var msgs []chat.Message
	for _, m := range []chat.Message{{Role: "system", Content: system}, {Role: "user", Content: user}, {Role: "assistant", Content: response}} {
		if m.Content != "" {
			msgs = append(msgs, m)
		}
	}
	return Sample{Messages: msgs}, nil
}

// shareGPTRoles maps ShareGPT speaker names to chat roles, as unsloth's
// standardize_sharegpt does.
var shareGPTRoles = map[string]string{
	"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
	"tool": "tool", "ipython": "ipython", "function": "tool", "observation": "tool",
}

func toMessages(v any) ([]chat.Message, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("is %s, not a list", typeName(v))
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("is empty")
	}
	msgs := make([]chat.Message, 0, len(list))
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("[%d] is %s, not an object", i, typeName(item))
		}
		role, content, err := roleContent(m)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		msgs = append(msgs, chat.Message{Role: role, Content: content})
	}
	return msgs, nil
}

// roleContent reads {role, content} or ShareGPT's {from, value}.
func roleContent(m map[string]any) (role, content string, err error) {
	rk, ck, shareGPT := "role", "content", false
	if _, ok := m["role"]; !ok {
		if _, ok := m["from"]; ok {
			rk, ck, shareGPT = "from", "value", true
		}
	}
	rv, ok := m[rk].(string)
	if !ok || rv == "" {
		return "", "", fmt.Errorf("no %q string", rk)
	}
	if shareGPT {
		mapped, ok := shareGPTRoles[strings.ToLower(rv)]
		if !ok {
			return "", "", fmt.Errorf("unknown ShareGPT speaker %q", rv)
		}
		rv = mapped
	}
	switch c := m[ck].(type) {
	case string:
		return rv, c, nil
	case nil:
		return "", "", fmt.Errorf("no %q", ck)
	default:
		return "", "", fmt.Errorf("%q is %s, not a string", ck, typeName(c))
	}
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case float64, int64, int32, int, float32, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any, Record:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func columns(r Record) string {
	if len(r) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return strings.Join(keys, ", ")
}

// normalize turns values decoded from JSON or Parquet into the Record value
// set: []byte → string, integers → float64 where JSON would, nested maps and
// lists recursively.
func normalize(v any) any {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case float32:
		if math.IsNaN(float64(x)) {
			return nil
		}
		return float64(x)
	}
	return v
}
