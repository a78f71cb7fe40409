package grammar

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file parses regular expressions (the ECMA-262 subset JSON Schema's
// "pattern" uses: JSON Schema 2020-12 Validation §6.3.3 and Core §6.4) into
// a small AST over code points, and lowers the AST to byte expressions,
// either as raw UTF-8 text or as the inside of a JSON string literal (where
// each character appears in the escaped form Python's json.dumps writes).

type reOp uint8

const (
	reClass reOp = iota // one character from ranges
	reCat               // subs in order
	reAlt               // one of subs
	reRep               // subs[0]{min,max}, max < 0 unbounded
	reBegin             // ^
	reEnd               // $
)

type reNode struct {
	op       reOp
	ranges   []runeRange // reClass: sorted, disjoint
	subs     []*reNode
	min, max int
}

type runeRange struct{ lo, hi rune }

const maxRepeatCount = 10000

// normRanges sorts and merges ranges.
func normRanges(rs []runeRange) []runeRange {
	slices.SortFunc(rs, func(a, b runeRange) int { return int(a.lo - b.lo) })
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && r.lo <= out[n-1].hi+1 {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// negate is the complement of rs over all code points except surrogates.
func negate(rs []runeRange) []runeRange {
	var out []runeRange
	next := rune(0)
	for _, r := range rs {
		if r.lo > next {
			out = append(out, runeRange{next, r.lo - 1})
		}
		next = r.hi + 1
	}
	if next <= utf8.MaxRune {
		out = append(out, runeRange{next, utf8.MaxRune})
	}
	return out
}

// withoutSurrogates drops U+D800..U+DFFF, which UTF-8 cannot encode.
func withoutSurrogates(rs []runeRange) []runeRange {
	var out []runeRange
	for _, r := range rs {
		if r.hi < 0xD800 || r.lo > 0xDFFF {
			out = append(out, r)
			continue
		}
		if r.lo < 0xD800 {
			out = append(out, runeRange{r.lo, 0xD7FF})
		}
		if r.hi > 0xDFFF {
			out = append(out, runeRange{0xE000, r.hi})
		}
	}
	return out
}

var (
	anyRune    = []runeRange{{0, utf8.MaxRune}}
	digitRange = []runeRange{{'0', '9'}}
	wordRange  = []runeRange{{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}}
	// ECMA-262 WhiteSpace and LineTerminator (\s).
	spaceRange = normRanges([]runeRange{{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680},
		{0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}})
	// ECMA-262 "." matches anything but a LineTerminator.
	dotRange = negate([]runeRange{{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}})
)

type reParser struct {
	src []rune
	pos int
}

func parseRegex(src string) (*reNode, error) {
	if !utf8.ValidString(src) {
		return nil, fmt.Errorf("regex %q: not valid UTF-8", src)
	}
	p := &reParser{src: []rune(src)}
	n, err := p.alt()
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", src, err)
	}
	if p.pos < len(p.src) {
		return nil, fmt.Errorf("regex %q: unexpected %q at offset %d", src, p.src[p.pos], p.pos)
	}
	return n, nil
}

func (p *reParser) more() bool { return p.pos < len(p.src) }
func (p *reParser) peek() rune { return p.src[p.pos] }

func (p *reParser) alt() (*reNode, error) {
	var subs []*reNode
	for {
		c, err := p.cat()
		if err != nil {
			return nil, err
		}
		subs = append(subs, c)
		if !p.more() || p.peek() != '|' {
			break
		}
		p.pos++
	}
	if len(subs) == 1 {
		return subs[0], nil
	}
	return &reNode{op: reAlt, subs: subs}, nil
}

func (p *reParser) cat() (*reNode, error) {
	n := &reNode{op: reCat}
	for p.more() && p.peek() != '|' && p.peek() != ')' {
		a, err := p.repeat()
		if err != nil {
			return nil, err
		}
		n.subs = append(n.subs, a)
	}
	return n, nil
}

func (p *reParser) repeat() (*reNode, error) {
	a, err := p.atom()
	if err != nil {
		return nil, err
	}
	for p.more() {
		min, max := 0, 0
		switch p.peek() {
		case '*':
			min, max = 0, -1
			p.pos++
		case '+':
			min, max = 1, -1
			p.pos++
		case '?':
			min, max = 0, 1
			p.pos++
		case '{':
			var ok bool
			if min, max, ok = p.braces(); !ok {
				return a, nil // a literal '{', as ECMA-262 Annex B allows
			}
		default:
			return a, nil
		}
		if max >= 0 && min > max {
			return nil, fmt.Errorf("repeat {%d,%d}: min > max", min, max)
		}
		if min > maxRepeatCount || max > maxRepeatCount {
			return nil, fmt.Errorf("repeat count above %d", maxRepeatCount)
		}
		if a.op == reBegin || a.op == reEnd {
			return nil, fmt.Errorf("repeated anchor")
		}
		if p.more() && p.peek() == '?' { // lazy: same language
			p.pos++
		} else if p.more() && p.peek() == '+' {
			return nil, fmt.Errorf("possessive quantifier is not supported")
		}
		a = &reNode{op: reRep, subs: []*reNode{a}, min: min, max: max}
	}
	return a, nil
}

// braces parses {n}, {n,} or {n,m} at p.pos; ok is false (and pos unmoved)
// if what follows is not a quantifier.
func (p *reParser) braces() (min, max int, ok bool) {
	end := p.pos + 1
	for end < len(p.src) && p.src[end] != '}' {
		end++
	}
	if end == len(p.src) {
		return 0, 0, false
	}
	body := string(p.src[p.pos+1 : end])
	lo, hi, comma := strings.Cut(body, ",")
	var err error
	if min, err = strconv.Atoi(lo); err != nil || min < 0 {
		return 0, 0, false
	}
	switch {
	case !comma:
		max = min
	case hi == "":
		max = -1
	default:
		if max, err = strconv.Atoi(hi); err != nil || max < 0 {
			return 0, 0, false
		}
	}
	p.pos = end + 1
	return min, max, true
}

func (p *reParser) atom() (*reNode, error) {
	c := p.peek()
	p.pos++
	switch c {
	case '(':
		if p.more() && p.peek() == '?' {
			switch {
			case p.pos+1 < len(p.src) && p.src[p.pos+1] == ':':
				p.pos += 2
			case p.pos+1 < len(p.src) && (p.src[p.pos+1] == '<' || p.src[p.pos+1] == 'P') &&
				!(p.pos+2 < len(p.src) && (p.src[p.pos+2] == '=' || p.src[p.pos+2] == '!')):
				// Named group (?<name>...) or (?P<name>...).
				end := slices.Index(p.src[p.pos:], '>')
				if end < 0 {
					return nil, fmt.Errorf("unterminated group name")
				}
				p.pos += end + 1
			default:
				return nil, fmt.Errorf("lookaround and inline flags are not supported")
			}
		}
		n, err := p.alt()
		if err != nil {
			return nil, err
		}
		if !p.more() || p.peek() != ')' {
			return nil, fmt.Errorf("missing )")
		}
		p.pos++
		return n, nil
	case ')':
		return nil, fmt.Errorf("unexpected )")
	case '*', '+', '?':
		return nil, fmt.Errorf("nothing to repeat before %q", c)
	case '^':
		return &reNode{op: reBegin}, nil
	case '$':
		return &reNode{op: reEnd}, nil
	case '.':
		return &reNode{op: reClass, ranges: dotRange}, nil
	case '[':
		return p.class()
	case '\\':
		rs, err := p.escape(false)
		if err != nil {
			return nil, err
		}
		return &reNode{op: reClass, ranges: rs}, nil
	}
	return &reNode{op: reClass, ranges: []runeRange{{c, c}}}, nil
}

// escape parses what follows a backslash, as a set of characters.
func (p *reParser) escape(inClass bool) ([]runeRange, error) {
	if !p.more() {
		return nil, fmt.Errorf("trailing backslash")
	}
	c := p.peek()
	p.pos++
	one := func(r rune) []runeRange { return []runeRange{{r, r}} }
	switch c {
	case 'd':
		return digitRange, nil
	case 'D':
		return negate(digitRange), nil
	case 'w':
		return wordRange, nil
	case 'W':
		return negate(wordRange), nil
	case 's':
		return spaceRange, nil
	case 'S':
		return negate(spaceRange), nil
	case 'n':
		return one('\n'), nil
	case 'r':
		return one('\r'), nil
	case 't':
		return one('\t'), nil
	case 'f':
		return one('\f'), nil
	case 'v':
		return one('\v'), nil
	case '0':
		return one(0), nil
	case 'b':
		if inClass {
			return one('\b'), nil
		}
		return nil, fmt.Errorf(`word boundary \b is not supported`)
	case 'x', 'u':
		n := 2
		if c == 'u' {
			n = 4
			if p.more() && p.peek() == '{' {
				end := slices.Index(p.src[p.pos:], '}')
				if end < 0 {
					return nil, fmt.Errorf(`unterminated \u{`)
				}
				v, err := strconv.ParseUint(string(p.src[p.pos+1:p.pos+end]), 16, 32)
				if err != nil || v > utf8.MaxRune {
					return nil, fmt.Errorf(`bad \u{...} escape`)
				}
				p.pos += end + 1
				return one(rune(v)), nil
			}
		}
		if p.pos+n > len(p.src) {
			return nil, fmt.Errorf(`short \%c escape`, c)
		}
		v, err := strconv.ParseUint(string(p.src[p.pos:p.pos+n]), 16, 32)
		if err != nil {
			return nil, fmt.Errorf(`bad \%c escape`, c)
		}
		p.pos += n
		return one(rune(v)), nil
	case 'p', 'P':
		return nil, fmt.Errorf(`unicode property escapes \%c are not supported`, c)
	case 'B':
		return nil, fmt.Errorf(`\B is not supported`)
	}
	if c >= '1' && c <= '9' {
		return nil, fmt.Errorf("backreferences are not supported")
	}
	if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
		return nil, fmt.Errorf(`unknown escape \%c`, c)
	}
	return one(c), nil
}

func (p *reParser) class() (*reNode, error) {
	neg := false
	if p.more() && p.peek() == '^' {
		neg = true
		p.pos++
	}
	var rs []runeRange
	first := true
	for {
		if !p.more() {
			return nil, fmt.Errorf("missing ]")
		}
		c := p.peek()
		if c == ']' && !first {
			p.pos++
			break
		}
		first = false
		lo, set, err := p.classAtom()
		if err != nil {
			return nil, err
		}
		if set != nil {
			rs = append(rs, set...)
			continue
		}
		if p.pos+1 < len(p.src) && p.peek() == '-' && p.src[p.pos+1] != ']' {
			p.pos++
			hi, set2, err := p.classAtom()
			if err != nil {
				return nil, err
			}
			if set2 != nil {
				return nil, fmt.Errorf("class range ends in a class escape")
			}
			if hi < lo {
				return nil, fmt.Errorf("class range %q-%q out of order", lo, hi)
			}
			rs = append(rs, runeRange{lo, hi})
			continue
		}
		rs = append(rs, runeRange{lo, lo})
	}
	rs = normRanges(rs)
	if neg {
		rs = negate(rs)
	}
	return &reNode{op: reClass, ranges: rs}, nil
}

// classAtom is one character of a class, or (set != nil) a class escape.
func (p *reParser) classAtom() (r rune, set []runeRange, err error) {
	c := p.peek()
	p.pos++
	if c != '\\' {
		return c, nil, nil
	}
	rs, err := p.escape(true)
	if err != nil {
		return 0, nil, err
	}
	if len(rs) == 1 && rs[0].lo == rs[0].hi {
		return rs[0].lo, nil, nil
	}
	return 0, rs, nil
}

// charMode says how characters become bytes.
type charMode uint8

const (
	rawUTF8    charMode = iota // the character's UTF-8 bytes
	jsonString                 // as inside a JSON string written by Python's json.dumps(ensure_ascii=False)
)

// classExpr matches one character from rs, encoded per mode.
func (b *builder) classExpr(rs []runeRange, mode charMode) expr {
	rs = withoutSurrogates(rs)
	var alts []expr
	if mode == jsonString {
		// Characters json.dumps escapes: controls, '"' and '\'
		// (Lib/json/encoder.py ESCAPE_DCT).
		var rest []runeRange
		for _, r := range rs {
			for c := r.lo; c <= r.hi && c < 0x80; c++ {
				if c < 0x20 || c == '"' || c == '\\' {
					alts = append(alts, b.lit(jsonEscape(c)))
				}
			}
			rest = append(rest, r)
		}
		rs = subtractEscaped(rest)
	}
	for _, r := range rs {
		utf8Ranges(r.lo, r.hi, func(seq [][2]byte) {
			e := exprEps
			for i := len(seq) - 1; i >= 0; i-- {
				e = b.cat(b.byteRange(seq[i][0], seq[i][1]), e)
			}
			alts = append(alts, e)
		})
	}
	return b.or(alts...)
}

// subtractEscaped removes controls, '"' and '\' from rs.
func subtractEscaped(rs []runeRange) []runeRange {
	var out []runeRange
	for _, r := range rs {
		pieces := []runeRange{r}
		for _, cut := range []runeRange{{0, 0x1F}, {'"', '"'}, {'\\', '\\'}} {
			var next []runeRange
			for _, q := range pieces {
				if q.hi < cut.lo || q.lo > cut.hi {
					next = append(next, q)
					continue
				}
				if q.lo < cut.lo {
					next = append(next, runeRange{q.lo, cut.lo - 1})
				}
				if q.hi > cut.hi {
					next = append(next, runeRange{cut.hi + 1, q.hi})
				}
			}
			pieces = next
		}
		out = append(out, pieces...)
	}
	return out
}

// utf8Ranges calls emit with byte-range sequences whose union is exactly
// the UTF-8 encodings of lo..hi (no surrogates inside): the range is split
// at encoding-length boundaries, then until every continuation byte spans a
// full or an aligned range (the construction RE2 uses, Russ Cox,
// "Regular Expression Matching: the Virtual Machine Approach").
func utf8Ranges(lo, hi rune, emit func([][2]byte)) {
	if lo > hi {
		return
	}
	for _, bound := range []rune{0x7F, 0x7FF, 0xFFFF} {
		if lo <= bound && hi > bound {
			utf8Ranges(lo, bound, emit)
			utf8Ranges(bound+1, hi, emit)
			return
		}
	}
	if hi < 0x80 {
		emit([][2]byte{{byte(lo), byte(hi)}})
		return
	}
	n := utf8.RuneLen(lo)
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				utf8Ranges(lo, lo|m, emit)
				utf8Ranges((lo|m)+1, hi, emit)
				return
			}
			if hi&m != m {
				utf8Ranges(lo, (hi&^m)-1, emit)
				utf8Ranges(hi&^m, hi, emit)
				return
			}
		}
	}
	var a, z [4]byte
	utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(z[:], hi)
	seq := make([][2]byte, n)
	for i := range n {
		seq[i] = [2]byte{a[i], z[i]}
	}
	emit(seq)
}

// lowerRegex turns the AST into an expression. Anchors must have been
// removed (see lowerPattern); any left are an error.
func (b *builder) lowerRegex(n *reNode, mode charMode) (expr, error) {
	switch n.op {
	case reClass:
		return b.classExpr(n.ranges, mode), nil
	case reCat:
		parts := make([]expr, len(n.subs))
		for i, s := range n.subs {
			e, err := b.lowerRegex(s, mode)
			if err != nil {
				return exprEmpty, err
			}
			parts[i] = e
		}
		return b.seq(parts...), nil
	case reAlt:
		parts := make([]expr, len(n.subs))
		for i, s := range n.subs {
			e, err := b.lowerRegex(s, mode)
			if err != nil {
				return exprEmpty, err
			}
			parts[i] = e
		}
		return b.or(parts...), nil
	case reRep:
		e, err := b.lowerRegex(n.subs[0], mode)
		if err != nil {
			return exprEmpty, err
		}
		return b.repeat(e, n.min, n.max), nil
	}
	return exprEmpty, fmt.Errorf("anchors ^ and $ are supported only at the start and end of the pattern")
}

// lowerFull lowers a regex that must match the whole text; ^ at the start
// and $ at the end of each top-level alternative are no-ops.
func (b *builder) lowerFull(n *reNode, mode charMode) (expr, error) {
	var parts []expr
	for _, alt := range topAlts(n) {
		body, _, _ := stripAnchors(alt)
		e, err := b.lowerRegex(body, mode)
		if err != nil {
			return exprEmpty, err
		}
		parts = append(parts, e)
	}
	return b.or(parts...), nil
}

// lowerSearch lowers a JSON Schema "pattern": the regex may match anywhere
// in the string (it is not implicitly anchored), so each top-level
// alternative without ^ gets any characters before it, and without $ after.
func (b *builder) lowerSearch(n *reNode, mode charMode) (expr, error) {
	anyStar := b.repeat(b.classExpr(anyRune, mode), 0, -1)
	var parts []expr
	for _, alt := range topAlts(n) {
		body, begin, end := stripAnchors(alt)
		e, err := b.lowerRegex(body, mode)
		if err != nil {
			return exprEmpty, err
		}
		if !begin {
			e = b.cat(anyStar, e)
		}
		if !end {
			e = b.cat(e, anyStar)
		}
		parts = append(parts, e)
	}
	return b.or(parts...), nil
}

func topAlts(n *reNode) []*reNode {
	if n.op == reAlt {
		return n.subs
	}
	return []*reNode{n}
}

// stripAnchors removes a leading ^ and a trailing $ from a concatenation.
func stripAnchors(n *reNode) (body *reNode, begin, end bool) {
	if n.op == reBegin {
		return &reNode{op: reCat}, true, false
	}
	if n.op == reEnd {
		return &reNode{op: reCat}, false, true
	}
	if n.op != reCat {
		return n, false, false
	}
	subs := n.subs
	if len(subs) > 0 && subs[0].op == reBegin {
		subs, begin = subs[1:], true
	}
	if len(subs) > 0 && subs[len(subs)-1].op == reEnd {
		subs, end = subs[:len(subs)-1], true
	}
	return &reNode{op: reCat, subs: subs}, begin, end
}
