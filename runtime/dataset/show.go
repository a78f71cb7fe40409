package dataset

import (
	"strings"

	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

// ShowMasking decodes an example twice, as the unsloth notebooks print it:
// the input, and the labels with every masked token replaced by the token
// of " " (so the trained text stands where it is in the input, between
// runs of spaces). Special tokens are kept.
func ShowMasking(tok tokenizer.Tokenizer, ex Example) (input, labels string, err error) {
	if input, err = tok.Decode(ex.Input, false); err != nil {
		return "", "", err
	}
	space, err := tok.Encode(" ", false)
	if err != nil {
		return "", "", err
	}
	if len(space) == 1 {
		ids := make([]int32, len(ex.Labels))
		for i, l := range ex.Labels {
			ids[i] = l
			if l == IgnoreIndex {
				ids[i] = space[0]
			}
		}
		labels, err = tok.Decode(ids, false)
		return input, labels, err
	}
	// " " is not one token (e.g. SentencePiece folds it into the next word):
	// decode the trained runs and write one space per masked token.
	var b strings.Builder
	for i := 0; i < len(ex.Labels); {
		if ex.Labels[i] == IgnoreIndex {
			b.WriteByte(' ')
			i++
			continue
		}
		j := i
		for j < len(ex.Labels) && ex.Labels[j] != IgnoreIndex {
			j++
		}
		s, err := tok.Decode(ex.Labels[i:j], false)
		if err != nil {
			return "", "", err
		}
		b.WriteString(s)
		i = j
	}
	return input, b.String(), nil
}
