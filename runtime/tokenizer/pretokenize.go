package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
)

// word is a piece of normalized text on its way to the model. atStart records
// whether it begins at offset 0 of the original input (Metaspace's "first").
type word struct {
	text    string
	atStart bool
}

// preTokenizer splits one word into smaller ones, appending them to out.
type preTokenizer interface {
	split(w word, out []word) ([]word, error)
}

type seqPreTokenizer []preTokenizer

func (q seqPreTokenizer) split(w word, out []word) ([]word, error) {
	cur := []word{w}
	for _, p := range q {
		next := make([]word, 0, 2*len(cur)+len(w.text)/4)
		for _, c := range cur {
			var err error
			if next, err = p.split(c, next); err != nil {
				return out, err
			}
		}
		cur = next
	}
	return append(out, cur...), nil
}

// splitBehavior is HF's SplitDelimiterBehavior.
type splitBehavior int

const (
	splitRemoved splitBehavior = iota
	splitIsolated
	splitMergedWithPrevious
	splitMergedWithNext
	splitContiguous
)

func parseSplitBehavior(s string) (splitBehavior, error) {
	switch s {
	case "Removed":
		return splitRemoved, nil
	case "Isolated":
		return splitIsolated, nil
	case "MergedWithPrevious":
		return splitMergedWithPrevious, nil
	case "MergedWithNext":
		return splitMergedWithNext, nil
	case "Contiguous":
		return splitContiguous, nil
	}
	return 0, fmt.Errorf("unknown split behavior %q", s)
}

type span struct {
	start, end int
	match      bool // for splitRemoved: drop this span
}

// splitBySpans cuts w at the given pattern matches (HF's NormalizedString::split).
func splitBySpans(w word, matches [][2]int, behavior splitBehavior, invert bool, out []word) []word {
	s := w.text
	if behavior == splitIsolated {
		// The common case (the Llama 3 regex), without the span lists below.
		prev := 0
		for _, m := range matches {
			if prev < m[0] {
				out = append(out, word{text: s[prev:m[0]], atStart: w.atStart && prev == 0})
			}
			if m[0] < m[1] {
				out = append(out, word{text: s[m[0]:m[1]], atStart: w.atStart && m[0] == 0})
			}
			prev = m[1]
		}
		if prev < len(s) {
			out = append(out, word{text: s[prev:], atStart: w.atStart && prev == 0})
		}
		return out
	}
	// Cover the whole string with alternating gap / match spans.
	var all []span
	prev := 0
	for _, m := range matches {
		if prev != m[0] {
			all = append(all, span{prev, m[0], invert})
		}
		all = append(all, span{m[0], m[1], !invert})
		prev = m[1]
	}
	if prev != len(s) {
		all = append(all, span{prev, len(s), invert})
	}

	var pieces []span // match now means "remove"
	switch behavior {
	case splitRemoved:
		pieces = all
	case splitMergedWithPrevious:
		prevMatch := false
		for _, sp := range all {
			if sp.match && !prevMatch && len(pieces) > 0 {
				pieces[len(pieces)-1].end = sp.end
			} else {
				pieces = append(pieces, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
	case splitMergedWithNext:
		prevMatch := false
		for i := len(all) - 1; i >= 0; i-- {
			sp := all[i]
			if sp.match && !prevMatch && len(pieces) > 0 {
				pieces[len(pieces)-1].start = sp.start
			} else {
				pieces = append(pieces, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(pieces)-1; i < j; i, j = i+1, j-1 {
			pieces[i], pieces[j] = pieces[j], pieces[i]
		}
	case splitContiguous:
		prevMatch := false
		for i, sp := range all {
			if i > 0 && sp.match == prevMatch {
				pieces[len(pieces)-1].end = sp.end
			} else {
				pieces = append(pieces, span{sp.start, sp.end, false})
			}
			prevMatch = sp.match
		}
	}
	for _, p := range pieces {
		if p.match || p.start == p.end {
			continue
		}
		out = append(out, word{text: s[p.start:p.end], atStart: w.atStart && p.start == 0})
	}
	return out
}

// splitPreTokenizer is HF's Split: cut at pattern matches with a behavior.
type splitPreTokenizer struct {
	pat      *pattern
	behavior splitBehavior
	invert   bool
}

func (p *splitPreTokenizer) split(w word, out []word) ([]word, error) {
	m, err := p.pat.find(w.text)
	if err != nil {
		return out, err
	}
	return splitBySpans(w, m, p.behavior, p.invert, out), nil
}

// gpt2Pattern is the split regex of ByteLevel's use_regex.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

// byteLevelPreTokenizer maps text to GPT-2's byte-level alphabet, optionally
// after a prefix space and a GPT-2 regex split.
type byteLevelPreTokenizer struct {
	table          *byteLevelTable
	addPrefixSpace bool
	re             *pattern // nil unless use_regex
}

func (p *byteLevelPreTokenizer) split(w word, out []word) ([]word, error) {
	if p.addPrefixSpace && !strings.HasPrefix(w.text, " ") {
		w.text = " " + w.text
	}
	pieces := []word{w}
	if p.re != nil {
		m, err := p.re.find(w.text)
		if err != nil {
			return out, err
		}
		pieces = splitBySpans(w, m, splitIsolated, false, nil)
	}
	for _, pc := range pieces {
		out = append(out, word{text: p.table.encode(pc.text), atStart: pc.atStart})
	}
	return out, nil
}

// metaspacePreTokenizer replaces spaces with "▁", prepends one per its
// prepend_scheme and optionally splits before each "▁".
type metaspacePreTokenizer struct {
	replacement string
	prepend     string // "always", "first" or "never"
	splitWords  bool
}

func (p *metaspacePreTokenizer) split(w word, out []word) ([]word, error) {
	s := strings.ReplaceAll(w.text, " ", p.replacement)
	if !strings.HasPrefix(s, p.replacement) &&
		(p.prepend == "always" || (p.prepend == "first" && w.atStart)) {
		s = p.replacement + s
	}
	w.text = s
	if !p.splitWords {
		if s != "" {
			out = append(out, w)
		}
		return out, nil
	}
	var m [][2]int
	for off := 0; ; {
		i := strings.Index(s[off:], p.replacement)
		if i < 0 {
			break
		}
		m = append(m, [2]int{off + i, off + i + len(p.replacement)})
		off += i + len(p.replacement)
	}
	return splitBySpans(w, m, splitMergedWithNext, false, out), nil
}

func parsePreTokenizer(raw json.RawMessage, table *byteLevelTable) (preTokenizer, error) {
	var ct componentType
	if err := json.Unmarshal(raw, &ct); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	switch ct.Type {
	case "Sequence":
		var v struct {
			PreTokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Sequence: %w", err)
		}
		var seq seqPreTokenizer
		for _, r := range v.PreTokenizers {
			p, err := parsePreTokenizer(r, table)
			if err != nil {
				return nil, err
			}
			seq = append(seq, p)
		}
		return seq, nil
	case "Split":
		var v struct {
			Pattern  json.RawMessage `json:"pattern"`
			Behavior string          `json:"behavior"`
			Invert   bool            `json:"invert"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		pat, err := parsePattern(v.Pattern)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		b, err := parseSplitBehavior(v.Behavior)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		return &splitPreTokenizer{pat: pat, behavior: b, invert: v.Invert}, nil
	case "ByteLevel":
		v := struct {
			AddPrefixSpace bool  `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}{}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer ByteLevel: %w", err)
		}
		p := &byteLevelPreTokenizer{table: table, addPrefixSpace: v.AddPrefixSpace}
		if v.UseRegex == nil || *v.UseRegex { // HF's default is true
			re, err := parsePattern(json.RawMessage(fmt.Sprintf(`{"Regex": %q}`, gpt2Pattern)))
			if err != nil {
				return nil, err
			}
			p.re = re
		}
		return p, nil
	case "Metaspace":
		v := struct {
			Replacement    string `json:"replacement"`
			PrependScheme  string `json:"prepend_scheme"`
			AddPrefixSpace *bool  `json:"add_prefix_space"`
			Split          *bool  `json:"split"`
		}{}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Metaspace: %w", err)
		}
		p, err := newMetaspace(v.Replacement, v.PrependScheme, v.AddPrefixSpace)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer Metaspace: %w", err)
		}
		p.splitWords = v.Split == nil || *v.Split
		return p, nil
	}
	return nil, fmt.Errorf("pre_tokenizer type %q is not supported (supported: Sequence, Split, ByteLevel, Metaspace)", ct.Type)
}

// newMetaspace reads the shared Metaspace fields; the older files carry
// add_prefix_space instead of prepend_scheme.
func newMetaspace(replacement, scheme string, addPrefixSpace *bool) (*metaspacePreTokenizer, error) {
	if replacement == "" {
		replacement = "▁"
	}
	if scheme == "" {
		scheme = "always"
		if addPrefixSpace != nil && !*addPrefixSpace {
			scheme = "never"
		}
	}
	if scheme != "always" && scheme != "first" && scheme != "never" {
		return nil, fmt.Errorf("unknown prepend_scheme %q", scheme)
	}
	return &metaspacePreTokenizer{replacement: replacement, prepend: scheme}, nil
}
