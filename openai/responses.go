package openai

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/engine"
)

// The Responses API (POST /v1/responses), which current agent SDKs default
// to: text in and out, function tools, text.format structured outputs,
// streamed as its typed events. Stateless: nothing is stored, so
// previous_response_id is refused and every request carries the whole
// conversation (store is reported false).

// responsesRequest is the body of POST /v1/responses.
type responsesRequest struct {
	Model             string          `json:"model"`
	Input             json.RawMessage `json:"input"`
	Instructions      *string         `json:"instructions"`
	Tools             json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	Text              *struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	MaxOutputTokens    *int            `json:"max_output_tokens"`
	Temperature        *float64        `json:"temperature"`
	TopP               *float64        `json:"top_p"`
	Stream             *bool           `json:"stream"`
	Store              *bool           `json:"store"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Metadata           json.RawMessage `json:"metadata"`
	Seed               *int64          `json:"seed"`
}

// responseObject is a response (object "response").
type responseObject struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	CreatedAt         int64             `json:"created_at"`
	Status            string            `json:"status"` // in_progress, completed, incomplete
	IncompleteDetails *incompleteReason `json:"incomplete_details"`
	Error             *string           `json:"error"`
	Model             string            `json:"model"`
	Output            []responseItem    `json:"output"`
	Instructions      *string           `json:"instructions"`
	MaxOutputTokens   *int              `json:"max_output_tokens"`
	ParallelToolCalls bool              `json:"parallel_tool_calls"`
	Temperature       *float64          `json:"temperature"`
	TopP              *float64          `json:"top_p"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	Tools             json.RawMessage   `json:"tools"`
	Text              json.RawMessage   `json:"text"`
	Store             bool              `json:"store"`
	PreviousResponse  *string           `json:"previous_response_id"`
	Metadata          json.RawMessage   `json:"metadata"`
	Truncation        string            `json:"truncation"`
	Usage             *responseUsage    `json:"usage"`
}

type incompleteReason struct {
	Reason string `json:"reason"`
}

type responseUsage struct {
	InputTokens         int            `json:"input_tokens"`
	InputTokensDetails  map[string]int `json:"input_tokens_details"`
	OutputTokens        int            `json:"output_tokens"`
	OutputTokensDetails map[string]int `json:"output_tokens_details"`
	TotalTokens         int            `json:"total_tokens"`
}

// responseItem is an output item: a message or a function call.
type responseItem struct {
	Type   string `json:"type"` // message, function_call
	ID     string `json:"id"`
	Status string `json:"status"`
	// message
	Role    string         `json:"role,omitempty"`
	Content []responsePart `json:"content,omitempty"`
	// function_call
	CallID    string `json:"call_id,omitempty"`
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

type responsePart struct {
	Type        string `json:"type"` // output_text
	Text        string `json:"text"`
	Annotations []any  `json:"annotations"`
}

// responses serves POST /v1/responses.
func (s *Server) responses(c echo.Context) error {
	var req responsesRequest
	target, apiErr := s.decodeAndResolve(c, &req, &req.Model)
	if apiErr != nil {
		return apiErr
	}
	if req.PreviousResponseID != nil && *req.PreviousResponseID != "" {
		return badRequest("previous_response_id", "'previous_response_id' is not supported: this server stores no responses. Send the whole conversation in 'input'.")
	}
	loaded := target.Engine.Loaded()
	f := samplingFields{Model: req.Model, Stream: req.Stream, Temperature: req.Temperature, TopP: req.TopP, MaxTokens: req.MaxOutputTokens, Seed: req.Seed}
	g, err := parseSampling(&f, loaded.GenConfig)
	if err != nil {
		if pe, ok := err.(*paramError); ok && pe.param == "max_tokens" {
			return badRequest("max_output_tokens", "'max_output_tokens' must be at least 1, got %d.", *req.MaxOutputTokens)
		}
		return decodeError(err)
	}
	g.maxTokensName = "max_output_tokens"
	g.base.Group = newID("req-")
	in := chatInput{param: "input"}
	tools, err := responsesTools(req.Tools)
	if err != nil {
		return decodeError(err)
	}
	choice, err := responsesToolChoice(req.ToolChoice)
	if err != nil {
		return decodeError(err)
	}
	if in.tools, err = parseTools(tools, choice, req.ParallelToolCalls); err != nil {
		return decodeError(err)
	}
	if req.Text != nil && !isNull(req.Text.Format) {
		if in.constraint, err = responsesFormat(req.Text.Format); err != nil {
			return decodeError(err)
		}
	}
	if in.messages, err = responsesInput(req.Input, req.Instructions); err != nil {
		return decodeError(err)
	}
	job, apiErr := s.prepareChat(target, g, in)
	if apiErr != nil {
		return apiErr
	}
	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	chans, err := job.submit(ctx)
	if err != nil {
		return s.engineError(c, err, "input")
	}
	resp := responseObject{ID: newID("resp_"), Object: "response", CreatedAt: time.Now().Unix(), Status: "in_progress", Model: target.Name,
		Output: []responseItem{}, Instructions: req.Instructions, MaxOutputTokens: req.MaxOutputTokens,
		ParallelToolCalls: in.tools == nil || in.tools.parallel, Temperature: req.Temperature, TopP: req.TopP,
		ToolChoice: orJSON(req.ToolChoice, `"auto"`), Tools: orJSON(req.Tools, `[]`), Text: textFormatJSON(req.Text),
		Metadata: orJSON(req.Metadata, `{}`), Truncation: "disabled"}
	if g.stream {
		s.streamResponse(ctx, c, &resp, job, chans[0])
		return nil
	}
	outs, apiErr := s.collect(c, job, tokenText{loaded}, chans)
	if apiErr != nil || outs == nil {
		return apiErrOrNil(apiErr)
	}
	o := outs[0]
	resp.Output = outputItems(o.calls, o.text)
	resp.finish(o.finish, len(job.prompt), o.cachedTokens, o.completionTokens)
	setAdapterVersion(c, o.adapterVersion)
	return c.JSON(http.StatusOK, resp)
}

// finish sets the final status and usage.
func (r *responseObject) finish(reason string, promptTokens, cachedTokens, outputTokens int) {
	r.Status = "completed"
	if reason == engine.FinishLength {
		r.Status, r.IncompleteDetails = "incomplete", &incompleteReason{Reason: "max_output_tokens"}
	}
	r.Usage = &responseUsage{InputTokens: promptTokens, InputTokensDetails: map[string]int{"cached_tokens": cachedTokens},
		OutputTokens: outputTokens, OutputTokensDetails: map[string]int{"reasoning_tokens": 0}, TotalTokens: promptTokens + outputTokens}
}

// outputItems is a reply as output items: its calls, or one message.
func outputItems(calls []toolCall, text string) []responseItem {
	if calls != nil {
		items := make([]responseItem, len(calls))
		for i, call := range calls {
			items[i] = functionCallItem(call, "completed")
		}
		return items
	}
	return []responseItem{messageItem(newID("msg_"), text, "completed")}
}

func messageItem(id, text, status string) responseItem {
	item := responseItem{Type: "message", ID: id, Status: status, Role: "assistant", Content: []responsePart{}}
	if status == "completed" {
		item.Content = []responsePart{{Type: "output_text", Text: text, Annotations: []any{}}}
	}
	return item
}

func functionCallItem(call toolCall, status string) responseItem {
	return responseItem{Type: "function_call", ID: "fc_" + call.ID[len("call_"):], Status: status,
		CallID: call.ID, Name: call.Function.Name, Arguments: call.Function.Arguments}
}

// streamResponse writes the Responses API's events: response.created and
// in_progress, then a message item (content part, text deltas, done
// events) or, for tool calls, a function_call item per call (arguments
// delta and done), then response.completed.
func (s *Server) streamResponse(ctx context.Context, c echo.Context, resp *responseObject, job *chatJob, events <-chan engine.Event) {
	w := startSSE(c)
	seq := 0
	emit := func(typ string, fields map[string]any) {
		fields["type"] = typ
		fields["sequence_number"] = seq
		seq++
		b, _ := json.Marshal(fields) // maps of plain values
		_ = w.event(typ, b)
	}
	snapshot := func() responseObject { r := *resp; r.Output = append([]responseItem(nil), resp.Output...); return r }
	emit("response.created", map[string]any{"response": snapshot()})
	emit("response.in_progress", map[string]any{"response": snapshot()})

	hold := toolHold{tools: job.tools}
	msgID := newID("msg_")
	var text string
	started := false // the message item was announced
	startMessage := func() {
		if started {
			return
		}
		started = true
		emit("response.output_item.added", map[string]any{"output_index": 0, "item": messageItem(msgID, "", "in_progress")})
		emit("response.content_part.added", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0,
			"part": responsePart{Type: "output_text", Text: "", Annotations: []any{}}})
	}
	for ev := range events {
		if ev.Err != nil {
			apiErr, gone := generationError(ev.Err, requestID(c))
			if gone {
				return
			}
			s.logger(c).Error("generation failed mid-stream", "err", ev.Err)
			r := snapshot()
			r.Status, r.Error = "failed", &apiErr.Message
			emit("response.failed", map[string]any{"response": r})
			return
		}
		if piece := hold.push(ev.Text); piece != "" {
			startMessage()
			text += piece
			emit("response.output_text.delta", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "delta": piece, "logprobs": []any{}})
			if w.err != nil {
				return
			}
		}
		if !ev.Done {
			continue
		}
		calls, rest := hold.end(ev.FinishReason)
		if calls == nil {
			if rest != "" || !started {
				startMessage()
				if rest != "" {
					text += rest
					emit("response.output_text.delta", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "delta": rest, "logprobs": []any{}})
				}
			}
			part := responsePart{Type: "output_text", Text: text, Annotations: []any{}}
			emit("response.output_text.done", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "text": text, "logprobs": []any{}})
			emit("response.content_part.done", map[string]any{"item_id": msgID, "output_index": 0, "content_index": 0, "part": part})
			item := messageItem(msgID, text, "completed")
			emit("response.output_item.done", map[string]any{"output_index": 0, "item": item})
			resp.Output = []responseItem{item}
		}
		for i, call := range calls {
			pending := functionCallItem(call, "in_progress")
			pending.Arguments = ""
			emit("response.output_item.added", map[string]any{"output_index": i, "item": pending})
			emit("response.function_call_arguments.delta", map[string]any{"item_id": pending.ID, "output_index": i, "delta": call.Function.Arguments})
			emit("response.function_call_arguments.done", map[string]any{"item_id": pending.ID, "output_index": i, "arguments": call.Function.Arguments})
			item := functionCallItem(call, "completed")
			emit("response.output_item.done", map[string]any{"output_index": i, "item": item})
			resp.Output = append(resp.Output, item)
		}
		resp.finish(ev.FinishReason, ev.Usage.PromptTokens, ev.Usage.CachedTokens, ev.Usage.CompletionTokens)
		typ := "response.completed"
		if resp.Status == "incomplete" {
			typ = "response.incomplete"
		}
		emit(typ, map[string]any{"response": snapshot()})
	}
}

// responseTextParts are the content part types of Responses input items.
var responseTextParts = []string{"input_text", "output_text", "text"}

// responsesInput turns input (a string, or a list of message,
// function_call and function_call_output items) and instructions into chat
// messages.
func responsesInput(raw json.RawMessage, instructions *string) ([]chat.Message, error) {
	var msgs []chat.Message
	if instructions != nil && *instructions != "" {
		msgs = append(msgs, chat.Message{Role: "system", Content: *instructions})
	}
	if isNull(raw) {
		return nil, perr("input", "'input' is required.")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return append(msgs, chat.Message{Role: "user", Content: text}), nil
	}
	var items []struct {
		Type      string          `json:"type"`
		Role      string          `json:"role"`
		Content   json.RawMessage `json:"content"`
		CallID    string          `json:"call_id"`
		Name      string          `json:"name"`
		Arguments string          `json:"arguments"`
		Output    json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, perr("input", "'input' must be a string or an array of input items.")
	}
	if len(items) == 0 {
		return nil, perr("input", "'input' must not be empty.")
	}
	for i, it := range items {
		param := fmt.Sprintf("input[%d]", i)
		switch it.Type {
		case "", "message":
			role := it.Role
			switch role {
			case "user", "assistant", "system":
			case "developer":
				role = "system"
			default:
				return nil, perr(param+".role", "Invalid role %q: expected user, assistant, system or developer.", it.Role)
			}
			content, err := parseContent(it.Content, param+".content", responseTextParts...)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, chat.Message{Role: role, Content: content})
		case "function_call":
			args := it.Arguments
			if args == "" {
				args = "{}"
			}
			if !json.Valid([]byte(args)) || it.Name == "" {
				return nil, perr(param, "'%s' must be a function_call with a 'name' and JSON 'arguments'.", param)
			}
			call := map[string]any{"id": it.CallID, "type": "function", "function": map[string]any{"name": it.Name, "arguments": json.RawMessage(args)}}
			// Consecutive calls belong to one assistant turn.
			if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" && len(msgs[n-1].ToolCalls) > 0 {
				msgs[n-1].ToolCalls = append(msgs[n-1].ToolCalls, call)
			} else {
				msgs = append(msgs, chat.Message{Role: "assistant", ToolCalls: []map[string]any{call}})
			}
		case "function_call_output":
			out, err := parseContent(it.Output, param+".output", responseTextParts...)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, chat.Message{Role: "tool", Content: out, ToolCallID: it.CallID})
		default:
			return nil, perr(param+".type", "Input items of type %q are not supported: send messages, function_call and function_call_output items.", it.Type)
		}
	}
	return msgs, nil
}

// responsesTools converts the Responses API's flat function tools
// ({"type": "function", "name", "description", "parameters", "strict"}) to
// the chat shape parseTools reads.
func responsesTools(raw json.RawMessage) (json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	var tools []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &tools); err != nil {
		return nil, perr("tools", "'tools' must be an array of function tools.")
	}
	out := make([]map[string]any, len(tools))
	for i, t := range tools {
		var typ string
		json.Unmarshal(t["type"], &typ)
		if typ != "function" {
			return nil, perr(fmt.Sprintf("tools[%d].type", i), "Only function tools are supported ('tools[%d]' has type %q).", i, typ)
		}
		fn := map[string]json.RawMessage{}
		for _, k := range []string{"name", "description", "parameters", "strict"} {
			if v, ok := t[k]; ok {
				fn[k] = v
			}
		}
		out[i] = map[string]any{"type": "function", "function": fn}
	}
	b, err := json.Marshal(out)
	return b, err
}

// responsesToolChoice converts {"type": "function", "name"} to the chat
// shape; strings pass as they are.
func responsesToolChoice(raw json.RawMessage) (json.RawMessage, error) {
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return raw, nil
	}
	var named struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" {
		return nil, perr("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"name\": ...}.")
	}
	b, _ := json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": named.Name}})
	return b, nil
}

// responsesFormat reads text.format: {"type": "text"}, {"type":
// "json_object"} or {"type": "json_schema", "name", "schema", "strict"}.
func responsesFormat(raw json.RawMessage) (*constraintSpec, error) {
	var f struct {
		Type   string          `json:"type"`
		Schema json.RawMessage `json:"schema"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, perr("text.format", "'text.format' must be an object with a 'type'.")
	}
	switch f.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return &constraintSpec{param: "text.format", jsonObject: true}, nil
	case "json_schema":
		if isNull(f.Schema) {
			return nil, perr("text.format.schema", "'text.format.schema' is required with type json_schema.")
		}
		return &constraintSpec{param: "text.format.schema", schema: f.Schema}, nil
	}
	return nil, perr("text.format.type", "Text format %q is not supported: use text, json_object or json_schema.", f.Type)
}

func orJSON(raw json.RawMessage, def string) json.RawMessage {
	if isNull(raw) {
		return json.RawMessage(def)
	}
	return raw
}

func textFormatJSON(t *struct {
	Format json.RawMessage `json:"format"`
}) json.RawMessage {
	if t == nil || isNull(t.Format) {
		return json.RawMessage(`{"format": {"type": "text"}}`)
	}
	b, _ := json.Marshal(map[string]json.RawMessage{"format": t.Format})
	return b
}
