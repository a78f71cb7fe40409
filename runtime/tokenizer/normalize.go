package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// pattern is a tokenizer.json pattern: {"String": "..."} or {"Regex": "..."}.
// Regexes follow Oniguruma, which HF uses; regexp2 accepts the same syntax for
// the patterns Llama tokenizers use (look-ahead, \p{..}, (?i:..)).
type pattern struct {
	literal string
	re      *regexp2.Regexp
	fast    func(string) [][2]int // same matches as re, without the regex engine
}

func parsePattern(raw json.RawMessage) (*pattern, error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("pattern: %w", err)
	}
	switch {
	case p.String != nil:
		if *p.String == "" {
			return nil, fmt.Errorf("pattern: empty String pattern")
		}
		return &pattern{literal: *p.String}, nil
	case p.Regex != nil:
		re, err := regexp2.Compile(*p.Regex, regexp2.None)
		if err != nil {
			return nil, fmt.Errorf("pattern: regex %q: %w", *p.Regex, err)
		}
		pat := &pattern{re: re}
		if *p.Regex == llama3Pattern {
			pat.fast = llama3Split
		}
		return pat, nil
	}
	return nil, fmt.Errorf("pattern: want String or Regex, got %s", raw)
}

// find returns the byte spans of the non-overlapping, leftmost matches in s.
func (p *pattern) find(s string) ([][2]int, error) {
	var spans [][2]int
	if p.re == nil {
		for off := 0; ; {
			i := strings.Index(s[off:], p.literal)
			if i < 0 {
				return spans, nil
			}
			spans = append(spans, [2]int{off + i, off + i + len(p.literal)})
			off += i + len(p.literal)
		}
	}
	if p.fast != nil {
		return p.fast(s), nil
	}
	return p.regexFind(s)
}

// regexFind is find with the regex engine.
func (p *pattern) regexFind(s string) ([][2]int, error) {
	var spans [][2]int
	runes := []rune(s)
	// byteAt[i] is the byte offset of runes[i] in s.
	byteAt := make([]int, len(runes)+1)
	off := 0
	for i, r := range runes {
		byteAt[i] = off
		off += runeLen(r)
	}
	byteAt[len(runes)] = off
	m, err := p.re.FindRunesMatch(runes)
	for ; m != nil && err == nil; m, err = p.re.FindNextMatch(m) {
		spans = append(spans, [2]int{byteAt[m.Index], byteAt[m.Index+m.Length]})
	}
	if err != nil {
		return nil, fmt.Errorf("regex: %w", err)
	}
	return spans, nil
}

func runeLen(r rune) int {
	switch {
	case r < 0x80:
		return 1
	case r < 0x800:
		return 2
	case r < 0x10000:
		return 3
	}
	return 4
}

// replaceAll replaces every match with content, literally (no $ expansion).
func (p *pattern) replaceAll(s, content string) (string, error) {
	if p.re == nil {
		return strings.ReplaceAll(s, p.literal, content), nil
	}
	spans, err := p.find(s)
	if err != nil || len(spans) == 0 {
		return s, err
	}
	var b strings.Builder
	prev := 0
	for _, sp := range spans {
		b.WriteString(s[prev:sp[0]])
		b.WriteString(content)
		prev = sp[1]
	}
	b.WriteString(s[prev:])
	return b.String(), nil
}

// normalizer rewrites a piece of input text before pre-tokenization.
type normalizer interface {
	normalize(s string) (string, error)
}

type seqNormalizer []normalizer

func (q seqNormalizer) normalize(s string) (string, error) {
	var err error
	for _, n := range q {
		if s, err = n.normalize(s); err != nil {
			return "", err
		}
	}
	return s, nil
}

// prependNormalizer adds a prefix to non-empty text (SentencePiece's "▁").
type prependNormalizer struct{ prefix string }

func (n prependNormalizer) normalize(s string) (string, error) {
	if s == "" {
		return s, nil
	}
	return n.prefix + s, nil
}

type replaceNormalizer struct {
	pat     *pattern
	content string
}

func (n replaceNormalizer) normalize(s string) (string, error) { return n.pat.replaceAll(s, n.content) }

type unicodeNormalizer struct{ form norm.Form }

func (n unicodeNormalizer) normalize(s string) (string, error) { return n.form.String(s), nil }

type componentType struct {
	Type string `json:"type"`
}

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	var ct componentType
	if err := json.Unmarshal(raw, &ct); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	switch ct.Type {
	case "Sequence":
		var v struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Sequence: %w", err)
		}
		var seq seqNormalizer
		for _, r := range v.Normalizers {
			n, err := parseNormalizer(r)
			if err != nil {
				return nil, err
			}
			seq = append(seq, n)
		}
		return seq, nil
	case "Prepend":
		var v struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Prepend: %w", err)
		}
		return prependNormalizer{v.Prepend}, nil
	case "Replace":
		var v struct {
			Pattern json.RawMessage `json:"pattern"`
			Content string          `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		p, err := parsePattern(v.Pattern)
		if err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		return replaceNormalizer{p, v.Content}, nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	}
	return nil, fmt.Errorf("normalizer type %q is not supported (supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD)", ct.Type)
}
