package openai

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// tokenize serves vLLM's POST /tokenize: {"model", "prompt"} or
// {"model", "messages"} → {"count", "max_model_len", "tokens"}.
func (s *Server) tokenize(c echo.Context) error {
	var req tokenizeRequest
	target, apiErr := s.decodeAndResolve(c, &req, &req.Model)
	if apiErr != nil {
		return apiErr
	}
	loaded := target.Engine.Loaded()
	tok := tokenText{loaded}
	var ids []int32
	switch {
	case req.Prompt != nil && req.Messages != nil:
		return badRequest("messages", "Send either 'prompt' or 'messages', not both.")
	case req.Prompt != nil:
		addSpecial := req.AddSpecialTokens == nil || *req.AddSpecialTokens
		var err error
		if ids, err = tok.encode(*req.Prompt, addSpecial); err != nil {
			return badRequest("prompt", "Invalid prompt: %v.", err)
		}
	case req.Messages != nil:
		msgs, err := parseMessages(req.Messages)
		if err != nil {
			return decodeError(err)
		}
		if loaded.Template == nil {
			return badRequest("messages", "The model `%s` has no chat template.", target.Name)
		}
		addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
		// The rendered text already holds BOS: no special tokens by default.
		addSpecial := req.AddSpecialTokens != nil && *req.AddSpecialTokens
		text, err := loaded.Template.Render(msgs, addGen)
		if err != nil {
			return badRequest("messages", "The messages could not be rendered with the model's chat template: %v", err)
		}
		if ids, err = tok.encode(text, addSpecial); err != nil {
			return badRequest("messages", "Invalid messages: %v.", err)
		}
	default:
		return badRequest("prompt", "Send 'prompt' (a string) or 'messages'.")
	}
	if ids == nil {
		ids = []int32{}
	}
	return c.JSON(http.StatusOK, tokenizeResponse{Count: len(ids), MaxModelLen: target.Engine.MaxModelLen(), Tokens: ids})
}

// detokenize serves vLLM's POST /detokenize: {"model", "tokens"} → {"prompt"}.
func (s *Server) detokenize(c echo.Context) error {
	var req detokenizeRequest
	target, apiErr := s.decodeAndResolve(c, &req, &req.Model)
	if apiErr != nil {
		return apiErr
	}
	if req.Tokens == nil {
		return badRequest("tokens", "'tokens' is required (an array of token ids).")
	}
	ids, err := tokenIDs(req.Tokens, "tokens")
	if err != nil {
		return decodeError(err)
	}
	vocab := target.Engine.Loaded().Model.Config.Vocab
	for i, id := range ids {
		if id < 0 || int(id) >= vocab {
			return badRequest("tokens", "'tokens[%d]' = %d is outside the vocabulary of %d tokens.", i, id, vocab)
		}
	}
	text, err := tokenText{target.Engine.Loaded()}.decode(ids)
	if err != nil {
		return badRequest("tokens", "Invalid tokens: %v.", err)
	}
	return c.JSON(http.StatusOK, detokenizeResponse{Prompt: text})
}
