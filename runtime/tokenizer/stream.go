package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Streaming decoding. Each decoder step also exists as a stage that sees the
// tokens as a stream of fragments: a fragment is part of a token, and end marks
// the token's last part. Before a Fuse (or ByteLevel) step every fragment is a
// whole token; after it the whole output is one token that grows fragment by
// fragment and ends at flush. A stage emits only text that no later input can
// change, so the concatenated output of all pushes and the flush equals the
// batch decodeChain result joined (the property the tests check).
type frag struct {
	text string
	end  bool
}

type stage interface {
	push(f frag, out []frag) ([]frag, error)
	// flush is called once, after the previous stage's flush output was pushed.
	flush(out []frag) ([]frag, error)
}

// wholeTokens collects fragments until a token ends; stages that can only work
// on whole tokens use it (after a Fuse, that means holding to the end).
type wholeTokens struct{ b strings.Builder }

func (w *wholeTokens) add(f frag) (string, bool) {
	if !f.end {
		w.b.WriteString(f.text)
		return "", false
	}
	if w.b.Len() == 0 {
		return f.text, true
	}
	w.b.WriteString(f.text)
	s := w.b.String()
	w.b.Reset()
	return s, true
}

func appendFrag(out []frag, text string, end bool) []frag {
	if text == "" && !end {
		return out
	}
	return append(out, frag{text, end})
}

func (d byteLevelDecoder) newStage() stage { return &byteLevelStage{table: d.table} }

type byteLevelStage struct {
	table   *byteLevelTable
	tok     wholeTokens
	pending []byte // bytes of an unfinished UTF-8 character
}

func (s *byteLevelStage) push(f frag, out []frag) ([]frag, error) {
	t, ok := s.tok.add(f)
	if !ok {
		return out, nil
	}
	s.pending = s.table.appendBytes(s.pending, t)
	text, used := appendLossySettled(nil, s.pending)
	s.pending = append(s.pending[:0], s.pending[used:]...)
	return appendFrag(out, string(text), false), nil
}

func (s *byteLevelStage) flush(out []frag) ([]frag, error) {
	text := appendLossy(nil, s.pending)
	s.pending = s.pending[:0]
	out = appendFrag(out, string(text), false)
	return append(out, frag{"", true}), nil // the one output token ends
}

func (d replaceDecoder) newStage() stage { return &replaceStage{d: d} }

type replaceStage struct {
	d    replaceDecoder
	tok  wholeTokens // regex patterns: whole tokens only
	hold string      // literal pattern: a tail that may start a match
}

func (s *replaceStage) push(f frag, out []frag) ([]frag, error) {
	if s.d.pat.re != nil {
		t, ok := s.tok.add(f)
		if !ok {
			return out, nil
		}
		r, err := s.d.pat.replaceAll(t, s.d.content)
		return appendFrag(out, r, true), err
	}
	buf := s.hold + f.text
	s.hold = ""
	lit := s.d.pat.literal
	if f.end {
		return appendFrag(out, strings.ReplaceAll(buf, lit, s.d.content), true), nil
	}
	var b strings.Builder
	for {
		i := strings.Index(buf, lit)
		if i < 0 {
			break
		}
		b.WriteString(buf[:i])
		b.WriteString(s.d.content)
		buf = buf[i+len(lit):]
	}
	// Hold back the longest suffix that is a proper prefix of lit: it may
	// become a match when the next fragment comes.
	j := len(buf)
	for k := max(0, len(buf)-len(lit)+1); k < len(buf); k++ {
		if strings.HasPrefix(lit, buf[k:]) {
			j = k
			break
		}
	}
	b.WriteString(buf[:j])
	s.hold = buf[j:]
	return appendFrag(out, b.String(), false), nil
}

func (s *replaceStage) flush(out []frag) ([]frag, error) { return out, nil }

func (byteFallbackDecoder) newStage() stage { return &byteFallbackStage{} }

// byteFallbackStage must hold a run of byte tokens until it ends: a later
// byte can make the whole run ill-formed, which turns every byte into U+FFFD.
type byteFallbackStage struct {
	tok wholeTokens
	run []byte
}

func (s *byteFallbackStage) push(f frag, out []frag) ([]frag, error) {
	t, ok := s.tok.add(f)
	if !ok {
		return out, nil
	}
	if b, ok := byteToken(t); ok {
		s.run = append(s.run, b)
		return out, nil
	}
	out = s.emitRun(out)
	return append(out, frag{t, true}), nil
}

func (s *byteFallbackStage) emitRun(out []frag) []frag {
	for _, t := range appendByteRun(nil, s.run) {
		out = append(out, frag{t, true})
	}
	s.run = s.run[:0]
	return out
}

func (s *byteFallbackStage) flush(out []frag) ([]frag, error) { return s.emitRun(out), nil }

func (fuseDecoder) newStage() stage { return &fuseStage{} }

type fuseStage struct{}

func (fuseStage) push(f frag, out []frag) ([]frag, error) { return appendFrag(out, f.text, false), nil }
func (fuseStage) flush(out []frag) ([]frag, error)        { return append(out, frag{"", true}), nil }

func (d stripDecoder) newStage() stage { return &stripStage{d: d} }

// stripStage streams the leading strip; a trailing strip (stop > 0) needs the
// whole token.
type stripStage struct {
	d       stripDecoder
	tok     wholeTokens
	leading int  // leading characters of the current token examined so far
	kept    bool // a non-content character was met: stop stripping
}

func (s *stripStage) push(f frag, out []frag) ([]frag, error) {
	if s.d.stop > 0 {
		t, ok := s.tok.add(f)
		if !ok {
			return out, nil
		}
		return appendFrag(out, s.d.strip(t), true), nil
	}
	text := f.text
	for !s.kept && s.leading < s.d.start && text != "" {
		r, size := utf8.DecodeRuneInString(text)
		if r != s.d.content {
			s.kept = true
			break
		}
		s.leading++
		text = text[size:]
	}
	if f.end {
		s.leading, s.kept = 0, false
	}
	return appendFrag(out, text, f.end), nil
}

func (s *stripStage) flush(out []frag) ([]frag, error) { return out, nil }

func (d metaspaceDecoder) newStage() stage { return &metaspaceStage{d: d} }

type metaspaceStage struct {
	d     metaspaceDecoder
	index int // index of the current token
}

func (s *metaspaceStage) push(f frag, out []frag) ([]frag, error) {
	out = appendFrag(out, s.d.mapToken(f.text, s.index == 0), f.end)
	if f.end {
		s.index++
	}
	return out, nil
}

func (s *metaspaceStage) flush(out []frag) ([]frag, error) { return out, nil }

func (q seqDecoder) newStage() stage {
	st := make(seqStage, len(q))
	for i, d := range q {
		st[i] = d.newStage()
	}
	return st
}

type seqStage []stage

// run pushes frags through stages[from:].
func (q seqStage) run(from int, in []frag, out []frag) ([]frag, error) {
	for i := from; i < len(q); i++ {
		var next []frag
		for _, f := range in {
			var err error
			if next, err = q[i].push(f, next); err != nil {
				return out, err
			}
		}
		in = next
	}
	return append(out, in...), nil
}

func (q seqStage) push(f frag, out []frag) ([]frag, error) { return q.run(0, []frag{f}, out) }

func (q seqStage) flush(out []frag) ([]frag, error) {
	for i := range q {
		fl, err := q[i].flush(nil)
		if err != nil {
			return out, err
		}
		// What stage i gives at its end still flows through the later stages.
		if out, err = q.run(i+1, fl, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// joinStage is what HF does without a decoder: tokens joined by spaces.
type joinStage struct {
	started bool // a token has begun
	inToken bool // the current token has begun but not ended
}

func (s *joinStage) push(f frag, out []frag) ([]frag, error) {
	text := f.text
	if !s.inToken && s.started {
		text = " " + text
	}
	s.started = true
	s.inToken = !f.end
	return appendFrag(out, text, f.end), nil
}

func (s *joinStage) flush(out []frag) ([]frag, error) { return out, nil }

// StreamDecoder turns generated ids into text as they come, emitting only
// text that a full Decode of all ids would also start with: it never splits a
// UTF-8 character, holds byte-fallback runs until they end, and strips the
// SentencePiece leading space exactly once. One StreamDecoder serves one
// sequence; it is not safe for concurrent use.
type StreamDecoder struct {
	next  func(id int32) (string, error) // the implementation in use
	end   func() string
	ended bool

	tok         Tokenizer
	skipSpecial bool
	pending     string // primed prompt text still held back, dropped when it comes out
}

// NewStreamDecoder returns a stream decoder for t. For the tokenizers of this
// package it runs the decoder pipeline incrementally; for any other Tokenizer
// it re-decodes the ids seen so far and emits the new suffix (slower, and
// exact only when that suffix never changes).
func NewStreamDecoder(t Tokenizer, skipSpecial bool) *StreamDecoder {
	var d *StreamDecoder
	if p, ok := t.(interface{ streamPipeline() *pipeline }); ok {
		d = newPipelineStream(p.streamPipeline(), skipSpecial)
	} else {
		d = newGenericStream(t, skipSpecial)
	}
	d.tok, d.skipSpecial = t, skipSpecial
	return d
}

// Add feeds one id and returns the text that is now final.
func (d *StreamDecoder) Add(id int32) (string, error) {
	if d.ended {
		return "", fmt.Errorf("tokenizer: StreamDecoder.Add after Flush")
	}
	out, err := d.next(id)
	return d.dropPrimed(out), err
}

// dropPrimed removes prompt text that Prime could not emit yet (a pending
// UTF-8 character or byte-fallback run) when it finally comes out.
// If the held text instead merges with generated text (a UTF-8 character
// split between prompt and reply), the merged text is kept.
func (d *StreamDecoder) dropPrimed(out string) string {
	if d.pending == "" || out == "" {
		return out
	}
	n := 0
	for n < len(out) && n < len(d.pending) && out[n] == d.pending[n] {
		n++
	}
	if n < len(d.pending) && n < len(out) { // diverged: the prompt's tail merged
		d.pending = ""
		return out
	}
	d.pending = d.pending[n:]
	return out[n:]
}

// Flush ends the stream and returns the text still held back; later calls
// return "".
func (d *StreamDecoder) Flush() string {
	if d.ended {
		return ""
	}
	d.ended = true
	return d.dropPrimed(d.end())
}

// Prime feeds prompt ids whose text must not be emitted again, so that the
// first generated token is decoded in context (e.g. keeps its leading space
// under SentencePiece). Call it before the first Add.
func (d *StreamDecoder) Prime(ids []int32) error {
	var emitted strings.Builder
	for _, id := range ids {
		out, err := d.Add(id)
		if err != nil {
			return err
		}
		emitted.WriteString(out)
	}
	// What the prompt decodes to but the stream still holds back must not
	// reappear in front of the first generated token.
	full, err := d.tok.Decode(ids, d.skipSpecial)
	if err != nil {
		return err
	}
	if rest, ok := strings.CutPrefix(full, emitted.String()); ok {
		d.pending += rest
	}
	return nil
}

func newPipelineStream(p *pipeline, skipSpecial bool) *StreamDecoder {
	var root stage = &joinStage{}
	if p.decoder != nil {
		root = p.decoder.newStage()
	}
	var buf []frag
	emit := func(fs []frag) string {
		var b strings.Builder
		for _, f := range fs {
			b.WriteString(f.text)
		}
		return b.String()
	}
	return &StreamDecoder{
		next: func(id int32) (string, error) {
			tok, special, ok := p.idToToken(id)
			if !ok {
				return "", fmt.Errorf("tokenizer: unknown token id %d", id)
			}
			if special && skipSpecial {
				return "", nil
			}
			var err error
			buf, err = root.push(frag{tok, true}, buf[:0])
			return emit(buf), err
		},
		end: func() string {
			buf, _ = root.flush(buf[:0]) // flush errors only come from regex timeouts, which are not set
			return emit(buf)
		},
	}
}

func newGenericStream(t Tokenizer, skipSpecial bool) *StreamDecoder {
	var ids []int32
	emitted := ""
	step := func(final bool) (string, error) {
		text, err := t.Decode(ids, skipSpecial)
		if err != nil {
			return "", err
		}
		if !final && strings.HasSuffix(text, "\uFFFD") || !strings.HasPrefix(text, emitted) {
			return "", nil
		}
		out := text[len(emitted):]
		emitted = text
		return out, nil
	}
	return &StreamDecoder{
		next: func(id int32) (string, error) {
			ids = append(ids, id)
			s, err := step(false)
			if err != nil {
				ids = ids[:len(ids)-1] // a bad id is not kept
			}
			return s, err
		},
		end: func() string {
			s, _ := step(true)
			return s
		},
	}
}
