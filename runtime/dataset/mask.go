package dataset

import (
	"fmt"
	"slices"

	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

// Llama 3.x turn headers, the markers of the unsloth notebooks
// (train_on_responses_only's instruction_part and response_part).
const (
	Llama3InstructionPart = "<|start_header_id|>user<|end_header_id|>\n\n"
	Llama3ResponsePart    = "<|start_header_id|>assistant<|end_header_id|>\n\n"
)

// Markers are the token ids that open a user turn (Instruction) and an
// assistant reply (Response), as train_on_responses_only searches them.
type Markers struct {
	Instruction, Response []int32
}

// NewMarkers tokenizes the two marker strings without special tokens added
// (force_match=True: the exact tokens, no optional neighbours). Empty parts
// mean the Llama 3 headers, which the tokenizer must then know.
func NewMarkers(tok tokenizer.Tokenizer, instructionPart, responsePart string) (*Markers, error) {
	if (instructionPart == "") != (responsePart == "") {
		return nil, fmt.Errorf("give both the instruction part and the response part, or neither (for the Llama 3 headers)")
	}
	if instructionPart == "" {
		if _, ok := tok.TokenID("<|start_header_id|>"); !ok {
			return nil, fmt.Errorf("the tokenizer has no <|start_header_id|> token, so the Llama 3 turn markers do not apply: " +
				"set the instruction and response parts (--instruction-part, --response-part) for this chat template")
		}
		instructionPart, responsePart = Llama3InstructionPart, Llama3ResponsePart
	}
	q, err := tok.Encode(instructionPart, false)
	if err != nil {
		return nil, fmt.Errorf("instruction part %q: %w", instructionPart, err)
	}
	a, err := tok.Encode(responsePart, false)
	if err != nil {
		return nil, fmt.Errorf("response part %q: %w", responsePart, err)
	}
	if len(q) == 0 || len(a) == 0 {
		return nil, fmt.Errorf("instruction part %q and response part %q must not tokenize to nothing", instructionPart, responsePart)
	}
	return &Markers{Instruction: q, Response: a}, nil
}

// MaskResponses returns the labels of ids as unsloth's
// train_on_responses_only computes them (unsloth_zoo dataset_utils.py):
// IgnoreIndex everywhere except from the token after each response marker up
// to the next instruction marker, or to the end of the sequence if none
// follows. So each assistant reply and its end-of-turn token are trained,
// along with anything else before the next user turn (e.g. a tool turn).
func MaskResponses(ids []int32, m *Markers) []int32 {
	n := len(ids)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = IgnoreIndex
	}
	a, q := m.Response, m.Instruction
	for j := 0; j < n; j++ {
		if !hasAt(ids, j, a) {
			continue
		}
		start := j + len(a) // first token of the reply
		for j = start; j < n; j++ {
			// As in unsloth, the last token ends the reply even if an
			// instruction marker would start there.
			if j == n-1 {
				copy(labels[start:], ids[start:])
				break
			}
			if hasAt(ids, j, q) {
				copy(labels[start:j], ids[start:j])
				j += len(q) // the outer loop's j++ then skips one more token, as unsloth does
				break
			}
		}
	}
	return labels
}

// hasAt reports whether ids[j:] starts with pat.
func hasAt(ids []int32, j int, pat []int32) bool {
	return j+len(pat) <= len(ids) && slices.Equal(ids[j:j+len(pat)], pat)
}
