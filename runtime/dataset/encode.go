package dataset

import (
	"errors"
	"fmt"
	"strings"

	"github.com/parrot-llm/parrot/runtime/chat"
	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

// Example is one tokenized training sequence: Labels are Input with the
// tokens that carry no loss set to IgnoreIndex, unshifted (the loss shifts
// them, as Hugging Face models do).
type Example struct {
	Input  []int32 // [T]
	Labels []int32 // [T]
}

// Errors that make a whole dataset unusable (not one bad row).
var (
	ErrNoTemplate = errors.New("the model has no chat template, so conversation rows cannot be rendered " +
		"(use a dataset with a text field for a base model, or give the model a template)")
	ErrNoMarkers = errors.New("training on responses only needs the instruction and response markers of the chat template")
)

// EncoderOptions configure tokenization and masking.
type EncoderOptions struct {
	MaxSeqLength int // longer sequences are truncated; 0 = no limit
	// ResponsesOnly trains conversations on the assistant replies only
	// (train_on_responses_only); text samples are always trained on every token.
	ResponsesOnly bool
	// Markers for ResponsesOnly; nil = the Llama 3 headers if the tokenizer
	// has them (see NewMarkers).
	Markers *Markers
	// EOS is appended to text samples that do not already end with it, as
	// TRL does for non-conversational data; -1 = none.
	EOS int32
}

// Encoder renders, tokenizes, truncates and masks samples.
type Encoder struct {
	tok  tokenizer.Tokenizer
	tmpl *chat.Template
	o    EncoderOptions
}

// NewEncoder builds an encoder for a model's tokenizer and chat template
// (nil for a base model, which can only train on text samples).
func NewEncoder(tok tokenizer.Tokenizer, tmpl *chat.Template, o EncoderOptions) (*Encoder, error) {
	if tok == nil {
		return nil, errors.New("dataset: no tokenizer")
	}
	if o.MaxSeqLength < 0 {
		return nil, fmt.Errorf("dataset: max sequence length %d is negative", o.MaxSeqLength)
	}
	if o.ResponsesOnly && o.Markers == nil && tmpl != nil {
		if m, err := NewMarkers(tok, "", ""); err == nil {
			o.Markers = m
		}
	}
	return &Encoder{tok: tok, tmpl: tmpl, o: o}, nil
}

// Markers returns the response-masking markers in use (nil if none).
func (e *Encoder) Markers() *Markers { return e.o.Markers }

// Encode turns a sample into an example. truncated reports that it was cut
// at MaxSeqLength. A conversation is rendered with the chat template without
// a generation prompt and tokenized without added special tokens (the
// template writes the BOS); a text is tokenized with the tokenizer's
// special tokens (BOS) and gets an EOS.
func (e *Encoder) Encode(s Sample) (ex Example, truncated bool, err error) {
	var ids []int32
	if s.Messages != nil {
		if e.tmpl == nil {
			return Example{}, false, ErrNoTemplate
		}
		if e.o.ResponsesOnly && e.o.Markers == nil {
			return Example{}, false, ErrNoMarkers
		}
		text, err := e.tmpl.Render(s.Messages, false)
		if err != nil {
			return Example{}, false, err
		}
		if ids, err = e.tok.Encode(text, false); err != nil {
			return Example{}, false, err
		}
	} else {
		if ids, err = e.tok.Encode(s.Text, true); err != nil {
			return Example{}, false, err
		}
		if e.o.EOS >= 0 && (len(ids) == 0 || ids[len(ids)-1] != e.o.EOS) {
			ids = append(ids, e.o.EOS)
		}
	}
	if e.o.MaxSeqLength > 0 && len(ids) > e.o.MaxSeqLength {
		ids, truncated = ids[:e.o.MaxSeqLength], true
	}
	var labels []int32
	if s.Messages != nil && e.o.ResponsesOnly {
		labels = MaskResponses(ids, e.o.Markers)
	} else {
		labels = append([]int32(nil), ids...)
	}
	return Example{Input: ids, Labels: labels}, truncated, nil
}

// LabelTokens counts the tokens that carry loss after the shift (labels[1:]
// that are not IgnoreIndex): the first label never has a prediction.
func (ex Example) LabelTokens() int {
	n := 0
	for i := 1; i < len(ex.Labels); i++ {
		if ex.Labels[i] != IgnoreIndex {
			n++
		}
	}
	return n
}

// Stats describe how a dataset was prepared.
type Stats struct {
	Rows        int      // rows read
	Chats       int      // rows used as conversations
	Texts       int      // rows used as plain text
	Bad         int      // rows skipped as unreadable or malformed
	BadExamples []string // the first few bad rows, "where: why"
	Truncated   int      // examples cut at the maximum sequence length
	NoLabels    int      // examples dropped because no token carries loss
	Examples    int      // examples kept
	Tokens      int      // tokens in the kept examples
	LabelTokens int      // of which carry loss
	MaxLen      int      // longest kept example
}

const maxBadExamples = 5

// Prepare converts, encodes and filters rows. Bad rows are counted, not
// fatal; the error is for datasets that cannot train at all (no template for
// conversations, no markers, or no example left).
func Prepare(rows []Row, f Format, enc *Encoder) ([]Example, Stats, error) {
	var st Stats
	var out []Example
	bad := func(where string, err error) {
		st.Bad++
		if len(st.BadExamples) < maxBadExamples {
			st.BadExamples = append(st.BadExamples, where+": "+err.Error())
		}
	}
	for _, r := range rows {
		st.Rows++
		if r.Err != nil {
			bad(r.Where, r.Err)
			continue
		}
		s, err := ToSample(r.Record, f)
		if err != nil {
			bad(r.Where, err)
			continue
		}
		ex, truncated, err := enc.Encode(s)
		if errors.Is(err, ErrNoTemplate) || errors.Is(err, ErrNoMarkers) {
			return nil, st, fmt.Errorf("%s: %w", r.Where, err)
		}
		if err != nil {
			bad(r.Where, err)
			continue
		}
		if s.Messages != nil {
			st.Chats++
		} else {
			st.Texts++
		}
		if truncated {
			st.Truncated++
		}
		n := ex.LabelTokens()
		if n == 0 {
			st.NoLabels++
			continue
		}
		out = append(out, ex)
		st.Examples++
		st.Tokens += len(ex.Input)
		st.LabelTokens += n
		st.MaxLen = max(st.MaxLen, len(ex.Input))
	}
	if len(out) == 0 {
		return nil, st, fmt.Errorf("no usable training example in %d rows (%s)", st.Rows, st.Summary())
	}
	return out, st, nil
}

// Summary is a one-line account of the preparation.
func (st Stats) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d rows: %d conversations, %d texts, %d bad; %d examples kept", st.Rows, st.Chats, st.Texts, st.Bad, st.Examples)
	if st.NoLabels > 0 {
		fmt.Fprintf(&b, ", %d dropped with nothing to learn", st.NoLabels)
	}
	if st.Truncated > 0 {
		fmt.Fprintf(&b, ", %d truncated", st.Truncated)
	}
	if st.Examples > 0 {
		fmt.Fprintf(&b, "; %d tokens (%d trained), longest %d", st.Tokens, st.LabelTokens, st.MaxLen)
	}
	return b.String()
}
