package openai

import (
	"cmp"
	"context"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/parrot-llm/parrot/runtime/engine"
	"github.com/parrot-llm/parrot/runtime/grammar"
)

// completionState accumulates one choice of a completions response.
type completionState struct {
	text     strings.Builder
	logprobs *completionLogprobs
	offset   int // text_offset of the next token, in characters
	reason   string
}

// addLogprob appends a sampled token to the legacy logprobs object.
func (st *completionState) addLogprob(tok tokenText, lp *completionLogprobs, s *engine.Event) {
	piece, _ := tok.piece(s.Sample.Token)
	lp.Tokens = append(lp.Tokens, piece)
	lp.TokenLogprobs = append(lp.TokenLogprobs, s.Sample.Logprob)
	top := make(map[string]float32, len(s.Sample.Top))
	for _, t := range s.Sample.Top {
		p, _ := tok.piece(t.Token)
		if _, dup := top[p]; !dup {
			top[p] = t.Logprob
		}
	}
	lp.TopLogprobs = append(lp.TopLogprobs, top)
	lp.TextOffset = append(lp.TextOffset, st.offset)
	st.offset += utf8.RuneCountInString(piece)
}

func newCompletionLogprobs() *completionLogprobs {
	return &completionLogprobs{Tokens: []string{}, TokenLogprobs: []float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
}

// completions serves POST /v1/completions.
func (s *Server) completions(c echo.Context) error {
	var req completionRequest
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
	if req.Logprobs != nil {
		g.base.Sampling.Logprobs = true
		g.base.Sampling.TopLogprobs = *req.Logprobs
		if *req.Logprobs < 0 {
			return badRequest("logprobs", "'logprobs' must be between 0 and 20, got %d.", *req.Logprobs)
		}
	}
	echoPrompt := req.Echo != nil && *req.Echo
	if echoPrompt && g.base.Sampling.Logprobs {
		return badRequest("echo", "'echo' together with 'logprobs' (prompt log-probabilities) is not supported.")
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return badRequest("suffix", "'suffix' is not supported by this server.")
	}
	if req.BestOf != nil && *req.BestOf != g.n {
		return badRequest("best_of", "'best_of' is not supported: leave it out or set it equal to 'n'.")
	}
	if err := g.base.Sampling.Validate(loaded.Model.Config.Vocab); err != nil {
		apiErr := s.engineError(c, err, "prompt")
		if apiErr.Param == "top_logprobs" { // the legacy API calls it logprobs
			apiErr.Param, apiErr.Message = "logprobs", strings.ReplaceAll(apiErr.Message, "top_logprobs", "logprobs")
		}
		return apiErr
	}
	spec, err := req.constraint()
	if err != nil {
		return decodeError(err)
	}
	var gram *grammar.Grammar
	if spec != nil {
		if gram, apiErr = s.compile(loaded, spec); apiErr != nil {
			return apiErr
		}
	}
	prompts, err := parsePrompt(req.Prompt)
	if err != nil {
		return decodeError(err)
	}
	if len(prompts)*g.n > maxChoices {
		return badRequest("n", "The number of prompts times 'n' must be at most %d, got %d.", maxChoices, len(prompts)*g.n)
	}

	// Tokenize every prompt before running any, so a bad one fails the
	// request with nothing started.
	tok := tokenText{loaded}
	tokens := make([][]int32, len(prompts))
	echoes := make([]string, len(prompts))
	promptTokens := 0
	for i, p := range prompts {
		r := engine.Request{Prompt: p.text, PromptTokens: p.tokens}
		ids, err := target.Engine.Tokenize(&r)
		if err != nil {
			return badRequest("prompt", "Invalid prompt: %v.", err)
		}
		if len(ids) == 0 {
			return badRequest("prompt", "The prompt is empty.")
		}
		if apiErr := g.checkLength(len(ids), target.Engine.MaxModelLen(), "prompt"); apiErr != nil {
			return apiErr
		}
		tokens[i] = ids
		promptTokens += len(ids)
		if echoPrompt {
			echoes[i] = p.text
			if p.tokens != nil {
				if echoes[i], err = tok.decode(p.tokens); err != nil {
					return badRequest("prompt", "Invalid prompt: %v.", err)
				}
			}
		}
	}

	ctx, cancel := context.WithCancel(c.Request().Context())
	defer cancel()
	reqs := make([]engine.Request, 0, len(prompts)*g.n)
	for i := range prompts {
		for j := range g.n {
			r := g.choiceRequest(j, tokens[i])
			if gram != nil {
				r.Constraint = gram.NewMatcher()
			}
			reqs = append(reqs, r)
		}
	}
	chans, err := submitAll(ctx, target.Engine, reqs)
	if err != nil {
		return s.engineError(c, err, "prompt")
	}
	resp := completion{ID: newID("cmpl-"), Object: "text_completion", Created: time.Now().Unix(), Model: target.Name}
	states := make([]completionState, len(chans))
	for i := range states {
		e := echoes[i/g.n]
		states[i].text.WriteString(e)
		states[i].offset = utf8.RuneCountInString(e)
		if g.base.Sampling.Logprobs {
			states[i].logprobs = newCompletionLogprobs()
		}
	}
	if g.stream {
		s.streamCompletion(ctx, c, &resp, &g, tok, chans, states, promptTokens)
		return nil
	}

	u := usage{PromptTokens: promptTokens}
	var cached promptCache
	for i, ch := range chans {
		st := &states[i]
		for ev := range ch {
			st.text.WriteString(ev.Text)
			resp.SystemFingerprint = cmp.Or(ev.AdapterVersion, resp.SystemFingerprint)
			if ev.Sample != nil && st.logprobs != nil {
				st.addLogprob(tok, st.logprobs, &ev)
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
			st.reason = ev.FinishReason
			u.CompletionTokens += ev.Usage.CompletionTokens
			cached.add(i, g.n, ev.Usage.CachedTokens)
		}
	}
	resp.Choices = make([]completionChoice, len(states))
	for i := range states {
		reason := states[i].reason
		resp.Choices[i] = completionChoice{Index: i, Text: states[i].text.String(), Logprobs: states[i].logprobs, FinishReason: &reason}
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	u.PromptTokensDetails = cached.details()
	resp.Usage = usageJSON(&u)
	setAdapterVersion(c, resp.SystemFingerprint)
	return c.JSON(http.StatusOK, resp)
}

// streamCompletion writes text_completion chunks: the echoed prompt (if
// any), text pieces, a finish chunk per choice, the usage chunk if asked,
// then [DONE].
func (s *Server) streamCompletion(ctx context.Context, c echo.Context, resp *completion, g *generation, tok tokenText,
	chans []<-chan engine.Event, states []completionState, promptTokens int) {
	w := startSSE(c)
	chunk := func(choices ...completionChoice) completion {
		ch := completion{ID: resp.ID, Object: resp.Object, Created: resp.Created, Model: resp.Model, Choices: choices,
			SystemFingerprint: resp.SystemFingerprint}
		if g.includeUsage {
			ch.Usage = usageJSON(nil)
		}
		return ch
	}
	for i := range states {
		if e := states[i].text.String(); e != "" {
			_ = w.send(chunk(completionChoice{Index: i, Text: e}))
		}
	}
	u := usage{PromptTokens: promptTokens}
	var cached promptCache
	for ce := range merge(ctx, chans) {
		ev, st := ce.ev, &states[ce.index]
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
			cc := completionChoice{Index: ce.index, Text: ev.Text}
			if ev.Sample != nil && st.logprobs != nil {
				cc.Logprobs = newCompletionLogprobs()
				st.addLogprob(tok, cc.Logprobs, &ev)
			}
			if w.send(chunk(cc)) != nil {
				return
			}
		}
		if ev.Done {
			reason := ev.FinishReason
			_ = w.send(chunk(completionChoice{Index: ce.index, FinishReason: &reason}))
			u.CompletionTokens += ev.Usage.CompletionTokens
			cached.add(ce.index, g.n, ev.Usage.CachedTokens)
		}
	}
	if w.err != nil {
		return
	}
	if g.includeUsage {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
		u.PromptTokensDetails = cached.details()
		final := chunk()
		final.Choices = []completionChoice{}
		final.Usage = usageJSON(&u)
		_ = w.send(final)
	}
	w.done()
}
