package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoder is one step of HF's decoder pipeline: decodeChain maps the token
// strings to new strings (tokenizers' Decoder::decode_chain); the final text is
// their concatenation. newStage gives the same step in streaming form.
type decoder interface {
	decodeChain(tokens []string) ([]string, error)
	newStage() stage
}

// byteLevelDecoder turns byte-level characters back into bytes and the bytes
// into text; ill-formed UTF-8 becomes U+FFFD (one per maximal subpart).
type byteLevelDecoder struct{ table *byteLevelTable }

func (d byteLevelDecoder) decodeChain(tokens []string) ([]string, error) {
	var b []byte
	for _, t := range tokens {
		b = d.table.appendBytes(b, t)
	}
	return []string{string(appendLossy(nil, b))}, nil
}

// replaceDecoder replaces a pattern in every token (SentencePiece: "▁" -> " ").
type replaceDecoder struct {
	pat     *pattern
	content string
}

func (d replaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		s, err := d.pat.replaceAll(t, d.content)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// byteFallbackDecoder turns runs of <0xXX> tokens into text: the run's bytes
// if they are valid UTF-8, otherwise one U+FFFD per byte (HF's rule).
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) ([]string, error) {
	var out []string
	var run []byte
	for _, t := range tokens {
		if b, ok := byteToken(t); ok {
			run = append(run, b)
			continue
		}
		out = appendByteRun(out, run)
		run = run[:0]
		out = append(out, t)
	}
	return appendByteRun(out, run), nil
}

// byteToken parses "<0xXX>"; like Rust's u8::from_str_radix it takes either
// case and an optional '+' sign.
func byteToken(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	var v byte
	digits := t[3:5]
	if digits[0] == '+' {
		digits = digits[1:]
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return 0, false
		}
	}
	return v, true
}

func appendByteRun(out []string, run []byte) []string {
	if len(run) == 0 {
		return out
	}
	if utf8.Valid(run) {
		return append(out, string(run))
	}
	for range run {
		out = append(out, "\uFFFD")
	}
	return out
}

// fuseDecoder joins all tokens into one.
type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) ([]string, error) {
	return []string{strings.Join(tokens, "")}, nil
}

// stripDecoder removes up to start leading and stop trailing content
// characters from every token.
type stripDecoder struct {
	content     rune
	start, stop int
}

func (d stripDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = d.strip(t)
	}
	return out, nil
}

func (d stripDecoder) strip(t string) string {
	rs := []rune(t)
	a := 0
	for a < len(rs) && a < d.start && rs[a] == d.content {
		a++
	}
	b := len(rs)
	for b > a && len(rs)-b < d.stop && rs[b-1] == d.content {
		b--
	}
	return string(rs[a:b])
}

// metaspaceDecoder maps "▁" back to spaces; in the first token it drops them
// instead, unless prepend_scheme is "never" (HF's exact rule).
type metaspaceDecoder struct {
	replacement rune
	never       bool
}

func (d metaspaceDecoder) decodeChain(tokens []string) ([]string, error) {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = d.mapToken(t, i == 0)
	}
	return out, nil
}

func (d metaspaceDecoder) mapToken(t string, first bool) string {
	var b strings.Builder
	for _, r := range t {
		switch {
		case r != d.replacement:
			b.WriteRune(r)
		case !first || d.never:
			b.WriteByte(' ')
		}
	}
	return b.String()
}

type seqDecoder []decoder

func (q seqDecoder) decodeChain(tokens []string) ([]string, error) {
	var err error
	for _, d := range q {
		if tokens, err = d.decodeChain(tokens); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

func parseDecoder(raw json.RawMessage, table *byteLevelTable) (decoder, error) {
	var ct componentType
	if err := json.Unmarshal(raw, &ct); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	switch ct.Type {
	case "Sequence":
		var v struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decoder Sequence: %w", err)
		}
		var seq seqDecoder
		for _, r := range v.Decoders {
			d, err := parseDecoder(r, table)
			if err != nil {
				return nil, err
			}
			seq = append(seq, d)
		}
		return seq, nil
	case "ByteLevel":
		return byteLevelDecoder{table}, nil
	case "Replace":
		var v struct {
			Pattern json.RawMessage `json:"pattern"`
			Content string          `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decoder Replace: %w", err)
		}
		p, err := parsePattern(v.Pattern)
		if err != nil {
			return nil, fmt.Errorf("decoder Replace: %w", err)
		}
		return replaceDecoder{p, v.Content}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var v struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decoder Strip: %w", err)
		}
		if utf8.RuneCountInString(v.Content) != 1 || v.Start < 0 || v.Stop < 0 {
			return nil, fmt.Errorf("decoder Strip: want one content character and non-negative start/stop, got %q %d %d", v.Content, v.Start, v.Stop)
		}
		r, _ := utf8.DecodeRuneInString(v.Content)
		return stripDecoder{content: r, start: v.Start, stop: v.Stop}, nil
	case "Metaspace":
		v := struct {
			Replacement    string `json:"replacement"`
			PrependScheme  string `json:"prepend_scheme"`
			AddPrefixSpace *bool  `json:"add_prefix_space"`
		}{}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decoder Metaspace: %w", err)
		}
		m, err := newMetaspace(v.Replacement, v.PrependScheme, v.AddPrefixSpace)
		if err != nil {
			return nil, fmt.Errorf("decoder Metaspace: %w", err)
		}
		r, size := utf8.DecodeRuneInString(m.replacement)
		if size != len(m.replacement) {
			return nil, fmt.Errorf("decoder Metaspace: replacement %q is not one character", m.replacement)
		}
		return metaspaceDecoder{replacement: r, never: m.prepend == "never"}, nil
	}
	return nil, fmt.Errorf("decoder type %q is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)", ct.Type)
}
