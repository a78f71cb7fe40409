package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

// maxChoices bounds n (times the number of prompts), as OpenAI bounds n.
const maxChoices = 128

// paramError is a validation error for one request field, found while
// decoding; it becomes a 400 with that param.
type paramError struct{ param, msg string }

func (e *paramError) Error() string { return e.msg }

func perr(param, format string, args ...any) error {
	return &paramError{param: param, msg: fmt.Sprintf(format, args...)}
}

// decodeBody reads at most limit bytes of JSON into v.
func decodeBody(c echo.Context, limit int64, v any) *APIError {
	body := http.MaxBytesReader(c.Response(), c.Request().Body, limit)
	data, err := io.ReadAll(body)
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
	case errors.As(err, &mbe) || errors.Is(err, os.ErrDeadlineExceeded):
		return decodeError(err)
	default: // the connection failed: say nothing of its addresses
		c.Response().Header().Set("Connection", "close")
		return badRequest("", "The request body could not be read.")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return badRequest("", "The request body is empty: send a JSON object.")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return decodeError(err)
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// parseStop reads `stop`: null, a string or an array of strings.
func parseStop(raw json.RawMessage) ([]string, error) {
	if isNull(raw) {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		if one == "" {
			return nil, perr("stop", "'stop' must not be an empty string.")
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, perr("stop", "'stop' must be a string, an array of strings or null.")
	}
	for i, s := range list {
		if s == "" {
			return nil, perr("stop", "'stop[%d]' must not be an empty string.", i)
		}
	}
	return list, nil
}

// parseContent reads a message's content: a string, null, or an array of
// text parts of the given types (default "text"), joined with newlines as
// vLLM does.
func parseContent(raw json.RawMessage, param string, partTypes ...string) (string, error) {
	if len(partTypes) == 0 {
		partTypes = []string{"text"}
	}
	if isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", perr(param, "'%s' must be a string or an array of content parts.", param)
	}
	texts := make([]string, 0, len(parts))
	for i, p := range parts {
		if !slices.Contains(partTypes, p.Type) {
			return "", perr(fmt.Sprintf("%s[%d].type", param, i), "Content part type %q is not supported: this server accepts text only.", p.Type)
		}
		if p.Text == nil {
			return "", perr(fmt.Sprintf("%s[%d].text", param, i), "A text content part needs a 'text' string.")
		}
		texts = append(texts, *p.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// parseMessages converts the request's messages for the chat template.
func parseMessages(in []chatMessageIn) ([]chat.Message, error) {
	if len(in) == 0 {
		return nil, perr("messages", "'messages' must be a non-empty array.")
	}
	out := make([]chat.Message, 0, len(in))
	for i, m := range in {
		role := m.Role
		switch role {
		case "system", "user", "assistant", "tool":
		case "developer":
			role = "system" // OpenAI's newer name for the system role
		case "":
			return nil, perr(fmt.Sprintf("messages[%d].role", i), "'messages[%d].role' is required.", i)
		default:
			return nil, perr(fmt.Sprintf("messages[%d].role", i), "Invalid role %q: expected one of system, developer, user, assistant, tool.", m.Role)
		}
		param := fmt.Sprintf("messages[%d].content", i)
		content, err := parseContent(m.Content, param)
		if err != nil {
			return nil, err
		}
		msg := chat.Message{Role: role, Content: content, Name: m.Name, ToolCallID: m.ToolCallID}
		if !isNull(m.ToolCalls) && string(bytes.TrimSpace(m.ToolCalls)) != "[]" {
			if role != "assistant" {
				return nil, perr(fmt.Sprintf("messages[%d].tool_calls", i), "Only assistant messages carry 'tool_calls'.")
			}
			if msg.ToolCalls, err = toolCallsIn(m.ToolCalls, fmt.Sprintf("messages[%d].tool_calls", i)); err != nil {
				return nil, err
			}
		}
		out = append(out, msg)
	}
	return out, nil
}

// prompt is one prompt of a completions request: text or token ids.
type prompt struct {
	text   string
	tokens []int32
}

// parsePrompt reads `prompt`: a string, an array of strings, an array of
// token ids, or an array of arrays of token ids.
func parsePrompt(raw json.RawMessage) ([]prompt, error) {
	if isNull(raw) {
		return nil, perr("prompt", "'prompt' is required.")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []prompt{{text: s}}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) == nil {
		for i, it := range items {
			if isNull(it) { // encoding/json would read it as "" or 0
				return nil, perr("prompt", "'prompt[%d]' is null: send strings or token ids.", i)
			}
		}
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil && len(ss) > 0 {
		out := make([]prompt, len(ss))
		for i, s := range ss {
			out[i] = prompt{text: s}
		}
		return out, nil
	}
	var ids []*int32
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		toks, err := tokenIDs(ids, "prompt")
		if err != nil {
			return nil, err
		}
		return []prompt{{tokens: toks}}, nil
	}
	var lists [][]*int32
	if json.Unmarshal(raw, &lists) == nil && len(lists) > 0 {
		out := make([]prompt, len(lists))
		for i, l := range lists {
			if len(l) == 0 {
				return nil, perr("prompt", "'prompt[%d]' is an empty token list.", i)
			}
			toks, err := tokenIDs(l, fmt.Sprintf("prompt[%d]", i))
			if err != nil {
				return nil, err
			}
			out[i] = prompt{tokens: toks}
		}
		return out, nil
	}
	return nil, perr("prompt", "'prompt' must be a string, an array of strings, an array of token ids or an array of token id arrays, and not empty.")
}

// tokenIDs turns a decoded id array into ids, refusing null entries
// (encoding/json would silently make them 0).
func tokenIDs(in []*int32, param string) ([]int32, error) {
	out := make([]int32, len(in))
	for i, id := range in {
		if id == nil {
			return nil, perr(param, "'%s[%d]' is null: token ids must be integers.", param, i)
		}
		out[i] = *id
	}
	return out, nil
}

// generation holds what chat and completions share once decoded.
type generation struct {
	n             int
	stream        bool
	includeUsage  bool
	maxTokens     int    // 0 = up to the context
	maxTokensName string // the field that set it, for errors
	base          engine.Request
}

// parseSampling validates the shared fields and builds the runtime request
// template (without the prompt). Defaults for temperature, top_p and top_k
// come from the model's generation_config.json, as in vLLM.
func parseSampling(f *samplingFields, gen *llama.GenerationConfig) (generation, error) {
	g := generation{n: 1}
	if f.N != nil {
		if *f.N < 1 || *f.N > maxChoices {
			return g, perr("n", "'n' must be between 1 and %d, got %d.", maxChoices, *f.N)
		}
		g.n = *f.N
	}
	g.stream = f.Stream != nil && *f.Stream
	if f.StreamOptions != nil {
		if !g.stream {
			return g, perr("stream_options", "'stream_options' is only allowed when 'stream' is true.")
		}
		g.includeUsage = f.StreamOptions.IncludeUsage
	}
	if f.MaxTokens != nil {
		if *f.MaxTokens < 1 {
			return g, perr("max_tokens", "'max_tokens' must be at least 1, got %d.", *f.MaxTokens)
		}
		g.maxTokens, g.maxTokensName = *f.MaxTokens, "max_tokens"
	}
	stop, err := parseStop(f.Stop)
	if err != nil {
		return g, err
	}

	p := sampler.Params{Temperature: 1, TopP: 1, RepetitionPenalty: 1}
	if gen != nil {
		if gen.Temperature != nil {
			p.Temperature = *gen.Temperature
		}
		if gen.TopP != nil {
			p.TopP = *gen.TopP
		}
		if gen.TopK != nil {
			p.TopK = *gen.TopK
		}
	}
	setF := func(dst *float32, src *float64) {
		if src != nil {
			*dst = float32(*src)
		}
	}
	setF(&p.Temperature, f.Temperature)
	setF(&p.TopP, f.TopP)
	setF(&p.PresencePenalty, f.PresencePenalty)
	setF(&p.FrequencyPenalty, f.FrequencyPenalty)
	setF(&p.MinP, f.MinP)
	if f.RepetitionPenalty != nil {
		if *f.RepetitionPenalty <= 0 {
			return g, perr("repetition_penalty", "'repetition_penalty' must be positive (1 = off), got %v.", *f.RepetitionPenalty)
		}
		p.RepetitionPenalty = float32(*f.RepetitionPenalty)
	}
	if f.TopK != nil {
		if *f.TopK < -1 {
			return g, perr("top_k", "'top_k' must be -1 or 0 (off) or a positive count, got %d.", *f.TopK)
		}
		p.TopK = max(*f.TopK, 0)
	}
	if len(f.LogitBias) > 0 {
		p.LogitBias = make(map[int32]float32, len(f.LogitBias))
		for k, v := range f.LogitBias {
			id, err := strconv.ParseInt(strings.TrimSpace(k), 10, 32)
			if err != nil {
				return g, perr("logit_bias", "'logit_bias' keys must be token ids written as strings, got %q.", k)
			}
			p.LogitBias[int32(id)] = float32(v)
		}
	}
	if f.Seed != nil {
		s := uint64(*f.Seed)
		p.Seed = &s
	}
	g.base = engine.Request{Sampling: p, Stop: stop, IgnoreEOS: f.IgnoreEOS != nil && *f.IgnoreEOS}
	return g, nil
}

// choiceRequest is the runtime request for choice i of g with the given
// prompt tokens. With a seed, choice i uses seed+i so that the n choices
// differ and each is reproducible.
func (g *generation) choiceRequest(i int, tokens []int32) engine.Request {
	r := g.base
	r.PromptTokens = tokens
	r.MaxTokens = g.maxTokens
	if r.Sampling.Seed != nil && i > 0 {
		s := *r.Sampling.Seed + uint64(i)
		r.Sampling.Seed = &s
	}
	return r
}

// checkLength rejects a prompt that leaves no room in the context, or whose
// max_tokens does not fit, with OpenAI's context_length_exceeded code.
func (g *generation) checkLength(promptLen, maxModelLen int, promptParam string) *APIError {
	if promptLen >= maxModelLen {
		e := badRequest(promptParam, "This model's maximum context length is %d tokens. However, your %s resulted in %d tokens. Please reduce the length of the %s.",
			maxModelLen, promptParam, promptLen, promptParam)
		e.Code = "context_length_exceeded"
		return e
	}
	if g.maxTokens > 0 && promptLen+g.maxTokens > maxModelLen {
		e := badRequest(g.maxTokensName, "'%s' is too large: %d. This model's maximum context length is %d tokens and your request has %d input tokens (%d > %d - %d).",
			g.maxTokensName, g.maxTokens, maxModelLen, promptLen, g.maxTokens, maxModelLen, promptLen)
		e.Code = "context_length_exceeded"
		return e
	}
	return nil
}
