package openai

import (
	"strings"

	"github.com/parrot-llm/parrot/runtime/llama"
	"github.com/parrot-llm/parrot/runtime/sampler"
)

// chatMessage builds a template message from a request message.

// tokenText turns token ids into the strings responses show.
type tokenText struct{ loaded *llama.Loaded }

func (t tokenText) encode(text string, addSpecial bool) ([]int32, error) {
	return t.loaded.Tokenizer.Encode(text, addSpecial)
}

// decode is the text of ids, special tokens dropped (as generated text is).
func (t tokenText) decode(ids []int32) (string, error) {
	return t.loaded.Tokenizer.Decode(ids, true)
}

// piece is the text of one token as logprobs show it, with its leading
// space: SentencePiece decoders strip the space of a text's first token, so
// the token is decoded after an anchor token and the anchor's text removed.
// It also returns the UTF-8 bytes (a token holding part of a character
// decodes to U+FFFD; its bytes are those of that text).
func (t tokenText) piece(id int32) (string, []int) {
	tok := t.loaded.Tokenizer
	s, err := tok.Decode([]int32{id}, false)
	if err != nil {
		return "", []int{}
	}
	if anchor, ok := tok.TokenID("a"); ok && anchor != id {
		a, err1 := tok.Decode([]int32{anchor}, false)
		both, err2 := tok.Decode([]int32{anchor, id}, false)
		if err1 == nil && err2 == nil && strings.HasPrefix(both, a) {
			s = both[len(a):]
		}
	}
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return s, b
}

// chatLogprob is one position of a chat logprobs object.
func (t tokenText) chatLogprob(r *sampler.Result) tokenLogprob {
	s, b := t.piece(r.Token)
	out := tokenLogprob{Token: s, Logprob: r.Logprob, Bytes: b, TopLogprobs: make([]topLogprob, len(r.Top))}
	for i, alt := range r.Top {
		as, ab := t.piece(alt.Token)
		out.TopLogprobs[i] = topLogprob{Token: as, Logprob: alt.Logprob, Bytes: ab}
	}
	return out
}
