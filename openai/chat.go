package openai

import (
	"bytes"
	"cmp"
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/runtime"
)

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
	g.base.Group = newID("req-") // the choices and prompts of this request share the engine's per-request cap
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
	if !isNull(req.Tools) && !bytes.Equal(bytes.TrimSpace(req.Tools), []byte("[]")) {
		return badRequest("tools", "Tools are not supported by this server.")
	}
	if !isNull(req.Functions) {
		return badRequest("functions", "Functions are not supported by this server.")
	}
	if req.ResponseFormat != nil && req.ResponseFormat.Type != "" && req.ResponseFormat.Type != "text" {
		return badRequest("response_format.type", "Response format %q is not supported: only \"text\".", req.ResponseFormat.Type)
	}
	if err := g.base.Sampling.Validate(loaded.Model.Config.Vocab); err != nil {
		return s.engineError(c, err, "messages")
	}
	msgs, err := parseMessages(req.Messages)
	if err != nil {
		return decodeError(err)
	}
	if loaded.Template == nil {
		return badRequest("messages", "The model `%s` has no chat template: use /v1/completions, or start the server with --chat-template.", target.Name)
	}
	tokens, err := target.Engine.Tokenize(&runtime.Request{Messages: msgs})
	if err != nil {
		return badRequest("messages", "The messages could not be rendered with the model's chat template: %v", err)
	}
	if apiErr := g.checkLength(len(tokens), target.Engine.MaxModelLen(), "messages"); apiErr != nil {
		return apiErr
	}

	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel() // frees the sequences of a handler that returns early
	reqs := make([]runtime.Request, g.n)
	for i := range reqs {
		reqs[i] = g.choiceRequest(i, tokens)
	}
	chans, err := submitAll(ctx, target.Engine, reqs)
	if err != nil {
		return s.engineError(c, err, "messages")
	}
	resp := chatCompletion{ID: newID("chatcmpl-"), Object: "chat.completion", Created: time.Now().Unix(), Model: target.Name}
	tok := tokenText{loaded}
	if g.stream {
		s.streamChat(ctx, c, &resp, &g, tok, chans)
		return nil
	}

	resp.Choices = make([]chatChoice, g.n)
	resp.Usage.PromptTokens = len(tokens)
	for i, ch := range chans {
		choice := chatChoice{Index: i, Message: chatMessage{Role: "assistant"}}
		var text bytes.Buffer
		var lps *chatLogprobs
		if g.base.Sampling.Logprobs {
			lps = &chatLogprobs{Content: []tokenLogprob{}}
		}
		for ev := range ch {
			text.WriteString(ev.Text)
			resp.SystemFingerprint = cmp.Or(ev.AdapterVersion, resp.SystemFingerprint)
			if ev.Sample != nil && lps != nil {
				lps.Content = append(lps.Content, tok.chatLogprob(ev.Sample))
			}
			if !ev.Done {
				continue
			}
			if ev.Err != nil {
				apiErr, gone := generationError(ev.Err, requestID(c))
				if gone {
					return nil
				}
				s.logger(c).Error("generation failed", "err", ev.Err)
				return apiErr
			}
			choice.FinishReason = ev.FinishReason
			resp.Usage.CompletionTokens += ev.Usage.CompletionTokens
		}
		choice.Message.Content = text.String()
		choice.Logprobs = lps
		resp.Choices[i] = choice
	}
	resp.Usage.TotalTokens = resp.Usage.PromptTokens + resp.Usage.CompletionTokens
	setAdapterVersion(c, resp.SystemFingerprint)
	return c.JSON(http.StatusOK, resp)
}

// streamChat writes the choices' events as chat.completion.chunk events:
// a role chunk per choice, content chunks, a finish chunk per choice, then
// (if asked) a usage chunk with no choices, then [DONE].
func (s *Server) streamChat(ctx context.Context, c echo.Context, resp *chatCompletion, g *generation, tok tokenText, chans []<-chan runtime.Event) {
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
	for i := range chans {
		_ = w.send(chunk(chatChunkChoice{Index: i, Delta: chatDelta{Role: "assistant", Content: &empty}}))
	}
	u := usage{}
	for ce := range merge(ctx, chans) {
		ev := ce.ev
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
		if ev.Text != "" || ev.Sample != nil {
			text := ev.Text
			cc := chatChunkChoice{Index: ce.index, Delta: chatDelta{Content: &text}}
			if ev.Sample != nil {
				cc.Logprobs = &chatLogprobs{Content: []tokenLogprob{tok.chatLogprob(ev.Sample)}}
			}
			if w.send(chunk(cc)) != nil {
				return // the client is gone; deferred cancel stops generation
			}
		}
		if ev.Done {
			reason := ev.FinishReason
			_ = w.send(chunk(chatChunkChoice{Index: ce.index, FinishReason: &reason}))
			u.PromptTokens = ev.Usage.PromptTokens
			u.CompletionTokens += ev.Usage.CompletionTokens
		}
	}
	if w.err != nil {
		return
	}
	if g.includeUsage {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
		final := chunk()
		final.Choices = []chatChunkChoice{}
		final.Usage = usageJSON(&u)
		_ = w.send(final)
	}
	w.done()
}
