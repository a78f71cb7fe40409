package openai

import (
	"cmp"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/grammar"
)

// chatJob is a decoded, validated chat request, ready to run: the prompt
// tokens, the per-choice requests' template, the tools offered and the
// output constraint.
type chatJob struct {
	target  Target
	g       generation
	tools   *toolRequest
	grammar *grammar.Grammar // nil: unconstrained
	prompt  []int32
}

// chatInput is what chat and the Responses API share once decoded.
type chatInput struct {
	messages   []chat.Message
	tools      *toolRequest
	constraint *constraintSpec
	param      string // the request field that holds the conversation, for errors
}

// prepareChat renders the conversation with the model's template (and the
// tools, unless tool_choice is none), tokenizes it and compiles the output
// constraint: a tool call's schema when tool_choice is required or names a
// tool, else the structured-output fields.
func (s *Server) prepareChat(target Target, g generation, in chatInput) (*chatJob, *APIError) {
	loaded := target.Engine.Loaded()
	if loaded.Template == nil {
		return nil, badRequest(in.param, "The model `%s` has no chat template: use /v1/completions, or start the server with --chat-template.", target.Name)
	}
	spec := in.constraint
	if in.tools.forced() {
		// The reply is a call, so a text format has nothing to shape (as
		// with OpenAI, which takes both; agent SDKs send both).
		spec = &constraintSpec{param: "tool_choice", schema: in.tools.callSchema()}
	}
	var opts []chat.Option
	if in.tools.offered() {
		opts = append(opts, in.tools.templateOption())
	}
	text, err := loaded.Template.Render(in.messages, true, opts...)
	if err != nil {
		return nil, badRequest(in.param, "The messages could not be rendered with the model's chat template: %v", err)
	}
	tokens, err := tokenText{loaded}.encode(text, false) // the template wrote BOS
	if err != nil {
		return nil, badRequest(in.param, "The messages could not be tokenized: %v", err)
	}
	if apiErr := g.checkLength(len(tokens), target.Engine.MaxModelLen(), in.param); apiErr != nil {
		return nil, apiErr
	}
	job := &chatJob{target: target, g: g, tools: in.tools, prompt: tokens}
	if spec != nil {
		var apiErr *APIError
		if job.grammar, apiErr = s.compile(loaded, spec); apiErr != nil {
			return nil, apiErr
		}
	}
	return job, nil
}

// submit queues one sequence per choice, each with its own matcher.
func (j *chatJob) submit(ctx context.Context) ([]<-chan engine.Event, error) {
	reqs := make([]engine.Request, j.g.n)
	for i := range reqs {
		reqs[i] = j.g.choiceRequest(i, j.prompt)
		if j.grammar != nil {
			reqs[i].Constraint = j.grammar.NewMatcher()
		}
	}
	return submitAll(ctx, j.target.Engine, reqs)
}

// chatCompletions serves POST /v1/chat/completions.
func (s *Server) chatCompletions(c echo.Context) error {
	var req chatCompletionRequest
	target, apiErr := s.decodeAndResolve(c, &req, &req.Model)
	if apiErr != nil {
		return apiErr
	}
	loaded := target.Engine.Loaded()
	g, err := parseSampling(&req.samplingFields, loaded.GenConfig)
	if err != nil {
		return decodeError(err)
	}
	g.base.Group = newID("req-") // the choices of this request share the engine's per-request cap
	if req.MaxCompletionTokens != nil {
		if *req.MaxCompletionTokens < 1 {
			return badRequest("max_completion_tokens", "'max_completion_tokens' must be at least 1, got %d.", *req.MaxCompletionTokens)
		}
		g.maxTokens, g.maxTokensName = *req.MaxCompletionTokens, "max_completion_tokens"
	}
	if req.Logprobs != nil && *req.Logprobs {
		g.base.Sampling.Logprobs = true
	}
	if req.TopLogprobs != nil {
		g.base.Sampling.TopLogprobs = *req.TopLogprobs
	}
	if !isNull(req.Functions) {
		return badRequest("functions", "The deprecated 'functions' field is not supported: send 'tools'.")
	}
	if err := g.base.Sampling.Validate(loaded.Model.Config.Vocab); err != nil {
		return s.engineError(c, err, "messages")
	}
	in := chatInput{param: "messages"}
	if in.tools, err = parseTools(req.Tools, req.ToolChoice, req.ParallelToolCalls); err != nil {
		return decodeError(err)
	}
	if in.constraint, err = req.constraint(); err != nil {
		return decodeError(err)
	}
	if in.messages, err = parseMessages(req.Messages); err != nil {
		return decodeError(err)
	}
	job, apiErr := s.prepareChat(target, g, in)
	if apiErr != nil {
		return apiErr
	}

	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel() // frees the sequences of a handler that returns early
	chans, err := job.submit(ctx)
	if err != nil {
		return s.engineError(c, err, "messages")
	}
	resp := chatCompletion{ID: newID("chatcmpl-"), Object: "chat.completion", Created: time.Now().Unix(), Model: target.Name}
	tok := tokenText{loaded}
	if g.stream {
		s.streamChat(ctx, c, &resp, job, tok, chans)
		return nil
	}

	outs, apiErr := s.collect(c, job, tok, chans)
	if apiErr != nil || outs == nil {
		return apiErrOrNil(apiErr)
	}
	resp.Choices = make([]chatChoice, len(outs))
	resp.Usage.PromptTokens = len(job.prompt)
	var cached promptCache
	for i, o := range outs {
		cached.add(i, len(outs), o.cachedTokens)
		choice := chatChoice{Index: i, Message: chatMessage{Role: "assistant"}, FinishReason: o.finish, Logprobs: o.logprobs}
		if o.calls != nil {
			choice.Message.ToolCalls = o.calls
		} else {
			choice.Message.Content = &o.text
		}
		resp.Choices[i] = choice
		resp.Usage.CompletionTokens += o.completionTokens
		resp.SystemFingerprint = cmp.Or(resp.SystemFingerprint, o.adapterVersion)
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens + resp.Usage.CompletionTokens
	resp.Usage.PromptTokensDetails = cached.details()
	setAdapterVersion(c, resp.SystemFingerprint)
	return c.JSON(http.StatusOK, resp)
}

// apiErrOrNil keeps a nil *APIError from becoming a non-nil error.
func apiErrOrNil(e *APIError) error {
	if e == nil {
		return nil
	}
	return e
}

// choiceOutput is one finished choice of a chat request.
type choiceOutput struct {
	text             string
	calls            []toolCall // non-nil: the reply is these tool calls
	finish           string
	logprobs         *chatLogprobs
	completionTokens int
	cachedTokens     int
	adapterVersion   string
}

// collect runs every choice to its end. It returns nil outputs and a nil
// error when the client went away.
func (s *Server) collect(c echo.Context, job *chatJob, tok tokenText, chans []<-chan engine.Event) ([]choiceOutput, *APIError) {
	outs := make([]choiceOutput, len(chans))
	for i, ch := range chans {
		o := &outs[i]
		var text strings.Builder
		if job.g.base.Sampling.Logprobs {
			o.logprobs = &chatLogprobs{Content: []tokenLogprob{}}
		}
		for ev := range ch {
			text.WriteString(ev.Text)
			o.adapterVersion = cmp.Or(ev.AdapterVersion, o.adapterVersion)
			if ev.Sample != nil && o.logprobs != nil {
				o.logprobs.Content = append(o.logprobs.Content, tok.chatLogprob(ev.Sample))
			}
			if !ev.Done {
				continue
			}
			if ev.Err != nil {
				apiErr, gone := generationError(ev.Err, requestID(c))
				if gone {
					return nil, nil
				}
				s.logger(c).Error("generation failed", "err", ev.Err)
				return nil, apiErr
			}
			o.finish = ev.FinishReason
			o.completionTokens = ev.Usage.CompletionTokens
			o.cachedTokens = ev.Usage.CachedTokens
		}
		o.text = text.String()
		if job.tools.offered() && o.finish == engine.FinishStop {
			if calls, ok := job.tools.parseToolCalls(o.text); ok {
				o.calls, o.finish = calls, "tool_calls"
			}
		}
	}
	return outs, nil
}

// toolHold decides, for one streamed choice, whether its text is content
// to pass on at once or a tool call being written, held back until it
// ends: with tools offered, text that starts with '{' or '[' is held (a
// Llama 3 tool call is a JSON object); with a forced tool call, all of it.
type toolHold struct {
	tools   *toolRequest
	decided bool // the text is known to be content (or to be held)
	holding bool
	held    strings.Builder
}

// push returns the text to stream now.
func (h *toolHold) push(text string) string {
	if !h.tools.offered() || (h.decided && !h.holding) {
		return text
	}
	h.held.WriteString(text)
	if h.decided {
		return ""
	}
	t := strings.TrimLeft(h.held.String(), " \t\r\n")
	switch {
	case h.tools.forced() || t != "" && (t[0] == '{' || t[0] == '[') || strings.HasPrefix(t, pythonTag):
		h.decided, h.holding = true, true
		return ""
	case strings.HasPrefix(pythonTag, t): // nothing yet, or the tag's start
		return ""
	}
	h.decided = true
	out := h.held.String()
	h.held.Reset()
	return out
}

// end returns the calls the held text makes, or the held text (content).
func (h *toolHold) end(finish string) (calls []toolCall, content string) {
	held := h.held.String()
	if held != "" && finish == engine.FinishStop {
		if calls, ok := h.tools.parseToolCalls(held); ok {
			return calls, ""
		}
	}
	return nil, held
}

// streamChat writes the choices' events as chat.completion.chunk events:
// a role chunk per choice, content chunks (or, for tool calls, a chunk
// with each call's id and name, then its arguments), a finish chunk per
// choice, then (if asked) a usage chunk with no choices, then [DONE].
func (s *Server) streamChat(ctx context.Context, c echo.Context, resp *chatCompletion, job *chatJob, tok tokenText, chans []<-chan engine.Event) {
	g := &job.g
	w := startSSE(c)
	chunk := func(choices ...chatChunkChoice) chatCompletionChunk {
		ch := chatCompletionChunk{ID: resp.ID, Object: "chat.completion.chunk", Created: resp.Created, Model: resp.Model, Choices: choices,
			SystemFingerprint: resp.SystemFingerprint}
		if g.includeUsage {
			ch.Usage = usageJSON(nil)
		}
		return ch
	}
	empty := ""
	holds := make([]toolHold, len(chans))
	for i := range chans {
		holds[i].tools = job.tools
		_ = w.send(chunk(chatChunkChoice{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}}))
	}
	u := usage{}
	var cached promptCache
	for ce := range merge(ctx, chans) {
		ev, hold := ce.ev, &holds[ce.index]
		resp.SystemFingerprint = cmp.Or(ev.AdapterVersion, resp.SystemFingerprint)
		if ev.Err != nil {
			apiErr, gone := generationError(ev.Err, requestID(c))
			if gone {
				return
			}
			s.logger(c).Error("generation failed mid-stream", "err", ev.Err)
			w.fail(apiErr)
			return
		}
		text := hold.push(ev.Text)
		if text != "" || (ev.Sample != nil && !hold.holding) {
			cc := chatChunkChoice{Index: ce.index, Delta: chatDelta{Content: &text}}
			if ev.Sample != nil {
				cc.Logprobs = &chatLogprobs{Content: []tokenLogprob{tok.chatLogprob(ev.Sample)}}
			}
			if w.send(chunk(cc)) != nil {
				return // the client is gone; deferred cancel stops generation
			}
		}
		if !ev.Done {
			continue
		}
		reason := ev.FinishReason
		calls, rest := hold.end(reason)
		if rest != "" {
			_ = w.send(chunk(chatChunkChoice{Index: ce.index, Delta: chatDelta{Content: &rest}}))
		}
		for k, call := range calls {
			// As OpenAI streams a call: its id, type and name first, then
			// the arguments.
			_ = w.send(chunk(chatChunkChoice{Index: ce.index, Delta: chatDelta{ToolCalls: []toolCallDelta{{
				Index: k, ID: call.ID, Type: call.Type, Function: toolFunctionDelta{Name: call.Function.Name}}}}}))
			_ = w.send(chunk(chatChunkChoice{Index: ce.index, Delta: chatDelta{ToolCalls: []toolCallDelta{{
				Index: k, Function: toolFunctionDelta{Arguments: call.Function.Arguments}}}}}))
		}
		if calls != nil {
			reason = "tool_calls"
		}
		_ = w.send(chunk(chatChunkChoice{Index: ce.index, FinishReason: &reason}))
		u.PromptTokens = ev.Usage.PromptTokens
		u.CompletionTokens += ev.Usage.CompletionTokens
		cached.add(ce.index, len(chans), ev.Usage.CachedTokens)
	}
	if w.err != nil {
		return
	}
	if g.includeUsage {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
		u.PromptTokensDetails = cached.details()
		final := chunk()
		final.Choices = []chatChunkChoice{}
		final.Usage = usageJSON(&u)
		_ = w.send(final)
	}
	w.done()
}
