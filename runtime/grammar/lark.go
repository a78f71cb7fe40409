package grammar

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file compiles context-free grammars written in the Lark EBNF dialect
// (lark-parser.readthedocs.io, "Grammar Reference"), the syntax vLLM's
// structured_outputs.grammar / guided_grammar hands to xgrammar and
// llguidance (llguidance docs/syntax.md). Rules become named references of
// the expression graph, terminals become plain regular expressions inlined
// where they are used, so one matcher serves every kind of constraint.
//
// Terminals are not tokenized by a separate lexer: the grammar is matched
// scannerless, as Lark's Earley parser with lexer="dynamic" does, so a text
// is accepted when some split of it into terminals derives from start.

// CompileGrammar compiles a Lark-style EBNF grammar for vocab; the whole
// output must derive from the rule start. Supported:
//
//   - rules "name: alt1 | alt2" (lowercase names, optionally prefixed by ?
//     or !, which only shape Lark's trees and are ignored here), continued
//     on lines that start with |; "-> alias" after an alternative is ignored;
//   - terminals "NAME: ..." (uppercase), made of terminals only;
//   - string literals "..." with escapes (\n \r \t \f \v \0 \a \b \\ \"
//     \' \xNN \uNNNN \UNNNNNNNN) and the i suffix (case-insensitive);
//   - regular expressions /.../ with the i flag, in the ECMA-262 subset of
//     CompileRegex (no lookaround, anchors or backreferences);
//   - character ranges "a".."z"; grouping ( ); optional [ ] and ?;
//     repetition * and +; bounded repetition ~ n and ~ n..m; alternatives |;
//     comments // (and #, as Lark's own grammar allows) to the end of the line;
//   - %ignore with terminal names or literals: ignored text may appear
//     before and after every terminal of a rule (Lark drops it from the
//     token stream), at most Options.MaxWhitespace bytes in each gap;
//   - %import common.X, %import common.X -> Y and %import common (X, Y)
//     for WS, WS_INLINE, NEWLINE, CR, LF, DIGIT, HEXDIGIT, INT, SIGNED_INT,
//     DECIMAL, FLOAT, SIGNED_FLOAT, NUMBER, SIGNED_NUMBER, LETTER,
//     LCASE_LETTER, UCASE_LETTER, WORD, CNAME, ESCAPED_STRING, SH_COMMENT,
//     CPP_COMMENT and C_COMMENT, with the meanings of Lark's common.lark;
//   - immediate left recursion (a: a X | Y), rewritten to Y X*.
//
// Refused with an error naming the feature and its line: a missing start
// rule, indirect left recursion (the rules are named), templates
// (name{x}), priorities (name.n), %declare, %override, %extend and other
// directives, imports from other modules, regex flags other than i,
// terminals that match the empty string, llguidance extensions (special
// tokens <...>, &, rule attributes name[...], %json), GBNF ("::=") syntax,
// and syntax errors.
func CompileGrammar(vocab *Vocab, source string, o Options) (*Grammar, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	g, err := parseLark(source, nil)
	if err != nil {
		return nil, err
	}
	b := newBuilder(defaultMaxNodes)
	c := &larkCompiler{b: b, o: o, g: g, terms: map[*larkDef]expr{}, busy: map[*larkDef]bool{}, refs: map[*larkDef]expr{}}
	start, err := c.compile()
	if err != nil {
		return nil, err
	}
	return newGrammar(vocab, b, start, o.MaxStates)
}

// larkNode is a node of a parsed expansion.
type larkNode struct {
	op       larkOp
	line     int
	text     string // larkLit: the bytes; larkName: the name
	fold     bool   // larkLit, larkRange, larkRegex: case-insensitive
	re       *reNode
	lo, hi   rune // larkRange
	subs     []*larkNode
	min, max int // larkRepeat, max < 0 unbounded
}

type larkOp uint8

const (
	larkLit larkOp = iota
	larkRegex
	larkRange
	larkName
	larkSeq
	larkAlt
	larkRepeat
)

// larkDef is a rule or terminal definition; scope resolves the names in
// its body (the grammar's own, or the common library's for imports).
type larkDef struct {
	name  string
	term  bool
	line  int
	body  *larkNode
	scope map[string]*larkDef
}

type larkGrammar struct {
	defs    map[string]*larkDef
	order   []*larkDef // definition order, for deterministic errors
	ignores []*larkNode
}

func larkErr(line int, format string, args ...any) error {
	return fmt.Errorf("grammar: line %d: %s", line, fmt.Sprintf(format, args...))
}

// ---- lexer ----

type larkTokKind uint8

const (
	tkEOF larkTokKind = iota
	tkNewline
	tkName
	tkString
	tkRegex
	tkNumber
	tkDirective
	tkPunct
)

type larkTok struct {
	kind  larkTokKind
	text  string // name, decoded string, regex source, number, directive name, punctuation
	flags string // string/regex flags
	line  int
}

func lexLark(src string) ([]larkTok, error) {
	var out []larkTok
	line := 1
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == '\n':
			out = append(out, larkTok{kind: tkNewline, line: line})
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f':
			i++
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '#':
			// Lark's own grammar treats # as a comment too.
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '_' || isASCIILetter(c):
			j := i
			for j < len(src) && (src[j] == '_' || isASCIILetter(src[j]) || (src[j] >= '0' && src[j] <= '9')) {
				j++
			}
			out = append(out, larkTok{kind: tkName, text: src[i:j], line: line})
			i = j
		case c >= '0' && c <= '9':
			j := i
			for j < len(src) && src[j] >= '0' && src[j] <= '9' {
				j++
			}
			out = append(out, larkTok{kind: tkNumber, text: src[i:j], line: line})
			i = j
		case c == '"':
			s, n, err := lexString(src[i:], line)
			if err != nil {
				return nil, err
			}
			i += n
			t := larkTok{kind: tkString, text: s, line: line}
			if i < len(src) && src[i] == 'i' && (i+1 == len(src) || !isNameByte(src[i+1])) {
				t.flags = "i"
				i++
			}
			out = append(out, t)
		case c == '/':
			j := i + 1
			var body strings.Builder
			for ; j < len(src) && src[j] != '/'; j++ {
				if src[j] == '\n' {
					return nil, larkErr(line, "unterminated regular expression")
				}
				if src[j] == '\\' && j+1 < len(src) && src[j+1] == '/' {
					body.WriteByte('/')
					j++
					continue
				}
				if src[j] == '\\' && j+1 < len(src) {
					body.WriteString(src[j : j+2])
					j++
					continue
				}
				body.WriteByte(src[j])
			}
			if j == len(src) {
				return nil, larkErr(line, "unterminated regular expression")
			}
			j++
			k := j
			for k < len(src) && isASCIILetter(src[k]) {
				k++
			}
			out = append(out, larkTok{kind: tkRegex, text: body.String(), flags: src[j:k], line: line})
			i = k
		case c == '%':
			j := i + 1
			for j < len(src) && isNameByte(src[j]) {
				j++
			}
			out = append(out, larkTok{kind: tkDirective, text: src[i+1 : j], line: line})
			i = j
		case strings.HasPrefix(src[i:], "::="):
			return nil, larkErr(line, `GBNF syntax ("::=") is not supported; write Lark syntax ("name: ...")`)
		case strings.HasPrefix(src[i:], ".."), strings.HasPrefix(src[i:], "->"):
			out = append(out, larkTok{kind: tkPunct, text: src[i : i+2], line: line})
			i += 2
		case strings.IndexByte(":|()[]?*+~.,{}!=", c) >= 0:
			out = append(out, larkTok{kind: tkPunct, text: src[i : i+1], line: line})
			i++
		case c == '<':
			return nil, larkErr(line, "special tokens (<...>) are not supported")
		case c == '&':
			return nil, larkErr(line, "intersection (&) is not supported")
		default:
			r, _ := utf8.DecodeRuneInString(src[i:])
			return nil, larkErr(line, "unexpected character %q", r)
		}
	}
	return append(out, larkTok{kind: tkEOF, line: line}), nil
}

func isASCIILetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isNameByte(c byte) bool    { return c == '_' || isASCIILetter(c) || (c >= '0' && c <= '9') }

// lexString decodes the string literal at the start of s (Lark evaluates
// literals with Python's string escapes); n is its length in s.
func lexString(s string, line int) (out string, n int, err error) {
	var b strings.Builder
	for i := 1; i < len(s); {
		c := s[i]
		switch c {
		case '"':
			return b.String(), i + 1, nil
		case '\n':
			return "", 0, larkErr(line, "unterminated string")
		case '\\':
			if i+1 >= len(s) {
				return "", 0, larkErr(line, "unterminated string")
			}
			e := s[i+1]
			i += 2
			simple := map[byte]byte{'n': '\n', 'r': '\r', 't': '\t', 'f': '\f', 'v': '\v', '0': 0, 'a': 7, 'b': 8, '\\': '\\', '"': '"', '\'': '\''}
			if v, ok := simple[e]; ok {
				b.WriteByte(v)
				continue
			}
			digits := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			if digits == 0 {
				return "", 0, larkErr(line, `unknown escape \%c in string`, e)
			}
			if i+digits > len(s) {
				return "", 0, larkErr(line, `short \%c escape in string`, e)
			}
			v, perr := strconv.ParseUint(s[i:i+digits], 16, 32)
			if perr != nil || v > unicode.MaxRune || (v >= 0xD800 && v <= 0xDFFF) {
				return "", 0, larkErr(line, `bad \%c escape in string`, e)
			}
			i += digits
			b.WriteRune(rune(v)) // Python's "\xNN" is the code point U+00NN
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, larkErr(line, "unterminated string")
}

// ---- parser ----

type larkParser struct {
	toks  []larkTok
	pos   int
	depth int // inside ( ) or [ ]: newlines are insignificant
	g     *larkGrammar
}

// parseLark parses source; common, when not nil, is the scope %import
// reads from (nil: the common library is parsed on demand).
func parseLark(source string, common map[string]*larkDef) (*larkGrammar, error) {
	if !utf8.ValidString(source) {
		return nil, errors.New("grammar: grammar is not valid UTF-8")
	}
	toks, err := lexLark(source)
	if err != nil {
		return nil, err
	}
	p := &larkParser{toks: toks, g: &larkGrammar{defs: map[string]*larkDef{}}}
	for {
		t := p.peek()
		switch {
		case t.kind == tkEOF:
			return p.g, nil
		case t.kind == tkNewline:
			p.pos++
		case t.kind == tkDirective:
			if err := p.directive(&common); err != nil {
				return nil, err
			}
		default:
			if err := p.definition(); err != nil {
				return nil, err
			}
		}
	}
}

func (p *larkParser) peek() larkTok {
	if p.depth > 0 {
		for p.toks[p.pos].kind == tkNewline {
			p.pos++
		}
	}
	return p.toks[p.pos]
}

func (p *larkParser) next() larkTok {
	t := p.peek()
	if t.kind != tkEOF {
		p.pos++
	}
	return t
}

func (p *larkParser) isPunct(s string) bool {
	t := p.peek()
	return t.kind == tkPunct && t.text == s
}

func describe(t larkTok) string {
	switch t.kind {
	case tkEOF:
		return "end of grammar"
	case tkNewline:
		return "end of line"
	case tkString:
		return strconv.Quote(t.text)
	case tkRegex:
		return "/" + t.text + "/"
	case tkDirective:
		return "%" + t.text
	}
	return strconv.Quote(t.text)
}

func (p *larkParser) endOfLine() error {
	t := p.next()
	if t.kind != tkNewline && t.kind != tkEOF {
		return larkErr(t.line, "unexpected %s", describe(t))
	}
	return nil
}

func (p *larkParser) definition() error {
	t := p.next()
	if t.kind == tkPunct && (t.text == "?" || t.text == "!") {
		t = p.next()
	}
	if t.kind != tkName {
		return larkErr(t.line, "expected a rule or terminal name, found %s", describe(t))
	}
	name, line := t.text, t.line
	term, err := nameKind(name, line)
	if err != nil {
		return err
	}
	switch {
	case p.isPunct("{"):
		return larkErr(line, "templates (%s{...}) are not supported", name)
	case p.isPunct("."):
		return larkErr(line, "priorities (%s.n) are not supported", name)
	case p.isPunct("["):
		return larkErr(line, "rule attributes (%s[...]) are not supported", name)
	case !p.isPunct(":"):
		return larkErr(line, "expected ':' after %s, found %s", name, describe(p.peek()))
	}
	p.pos++
	body, err := p.expansions()
	if err != nil {
		return err
	}
	if err := p.endOfLine(); err != nil {
		return err
	}
	if prev, ok := p.g.defs[name]; ok {
		return larkErr(line, "%s is defined twice (first on line %d)", name, prev.line)
	}
	d := &larkDef{name: name, term: term, line: line, body: body, scope: p.g.defs}
	p.g.defs[name] = d
	p.g.order = append(p.g.order, d)
	return nil
}

// nameKind tells a terminal (uppercase) from a rule (lowercase), as Lark
// does; a leading underscore is allowed on both.
func nameKind(name string, line int) (term bool, err error) {
	s := strings.TrimLeft(name, "_")
	switch {
	case s == "":
		return false, larkErr(line, "bad name %q", name)
	case strings.ToUpper(s) == s:
		return true, nil
	case strings.ToLower(s) == s:
		return false, nil
	}
	return false, larkErr(line, "name %q mixes cases: rules are lowercase, terminals uppercase", name)
}

func (p *larkParser) directive(common *map[string]*larkDef) error {
	t := p.next()
	switch t.text {
	case "ignore":
		e, err := p.expansions()
		if err != nil {
			return err
		}
		p.g.ignores = append(p.g.ignores, e)
		return p.endOfLine()
	case "import":
		return p.importDirective(t.line, common)
	case "":
		return larkErr(t.line, "expected a directive name after %%")
	}
	return larkErr(t.line, "%%%s is not supported", t.text)
}

// importDirective handles "%import common.X [-> Y]" and "%import common
// (X, Y)".
func (p *larkParser) importDirective(line int, common *map[string]*larkDef) error {
	mod := p.next()
	if mod.kind != tkName {
		return larkErr(line, "expected a module name after %%import")
	}
	if mod.text != "common" {
		return larkErr(line, "%%import from %q is not supported (only common)", mod.text)
	}
	if *common == nil {
		lib, err := parseLark(commonLark, map[string]*larkDef{})
		if err != nil {
			return err
		}
		*common = lib.defs
	}
	type pair struct{ from, to string }
	var names []pair
	switch {
	case p.isPunct("."):
		p.pos++
		n := p.next()
		if n.kind != tkName {
			return larkErr(line, "expected a name after common.")
		}
		if p.isPunct(".") {
			return larkErr(line, "%%import from a nested module is not supported")
		}
		to := n.text
		if p.isPunct("->") {
			p.pos++
			a := p.next()
			if a.kind != tkName {
				return larkErr(line, "expected a name after ->")
			}
			to = a.text
		}
		names = append(names, pair{n.text, to})
	case p.isPunct("("):
		p.pos++
		p.depth++
		for {
			n := p.next()
			if n.kind != tkName {
				p.depth--
				return larkErr(line, "expected a name in %%import common (...)")
			}
			names = append(names, pair{n.text, n.text})
			if p.isPunct(",") {
				p.pos++
				continue
			}
			break
		}
		p.depth--
		if !p.isPunct(")") {
			return larkErr(line, "expected ) in %%import")
		}
		p.pos++
	default:
		return larkErr(line, "%%import common needs .NAME or (NAMES)")
	}
	for _, n := range names {
		d, ok := (*common)[n.from]
		if !ok || strings.HasPrefix(n.from, "_") {
			return larkErr(line, "common.%s is not one of the supported common terminals", n.from)
		}
		term, err := nameKind(n.to, line)
		if err != nil {
			return err
		}
		if !term {
			return larkErr(line, "%%import common.%s -> %s: a terminal needs an uppercase name", n.from, n.to)
		}
		if prev, ok := p.g.defs[n.to]; ok {
			return larkErr(line, "%s is defined twice (first on line %d)", n.to, prev.line)
		}
		imp := &larkDef{name: n.to, term: true, line: line, body: d.body, scope: d.scope}
		p.g.defs[n.to] = imp
		p.g.order = append(p.g.order, imp)
	}
	return p.endOfLine()
}

// expansions: alternatives separated by |, which may start a new line.
func (p *larkParser) expansions() (*larkNode, error) {
	line := p.peek().line
	var alts []*larkNode
	for {
		a, err := p.alias()
		if err != nil {
			return nil, err
		}
		alts = append(alts, a)
		if p.depth == 0 {
			// A newline followed by | continues the definition.
			j := p.pos
			for p.toks[j].kind == tkNewline {
				j++
			}
			if t := p.toks[j]; t.kind == tkPunct && t.text == "|" {
				p.pos = j
			}
		}
		if !p.isPunct("|") {
			break
		}
		p.pos++
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return &larkNode{op: larkAlt, line: line, subs: alts}, nil
}

// alias is an expansion with an optional "-> name" (tree shaping: ignored).
func (p *larkParser) alias() (*larkNode, error) {
	e, err := p.expansion()
	if err != nil {
		return nil, err
	}
	if p.isPunct("->") {
		p.pos++
		if t := p.next(); t.kind != tkName {
			return nil, larkErr(t.line, "expected an alias name after ->, found %s", describe(t))
		}
	}
	return e, nil
}

func (p *larkParser) expansion() (*larkNode, error) {
	n := &larkNode{op: larkSeq, line: p.peek().line}
	for {
		t := p.peek()
		if t.kind == tkEOF || t.kind == tkNewline || t.kind == tkDirective ||
			(t.kind == tkPunct && (t.text == "|" || t.text == ")" || t.text == "]" || t.text == "->")) {
			break
		}
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		n.subs = append(n.subs, e)
	}
	if len(n.subs) == 1 {
		return n.subs[0], nil
	}
	return n, nil
}

func (p *larkParser) expr() (*larkNode, error) {
	a, err := p.atom()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	if t.kind != tkPunct {
		return a, nil
	}
	rep := func(min, max int) *larkNode {
		return &larkNode{op: larkRepeat, line: t.line, subs: []*larkNode{a}, min: min, max: max}
	}
	switch t.text {
	case "?":
		p.pos++
		a = rep(0, 1)
	case "*":
		p.pos++
		a = rep(0, -1)
	case "+":
		p.pos++
		a = rep(1, -1)
	case "~":
		p.pos++
		lo, err := p.count()
		if err != nil {
			return nil, err
		}
		hi := lo
		if p.isPunct("..") {
			p.pos++
			if hi, err = p.count(); err != nil {
				return nil, err
			}
		}
		if hi < lo {
			return nil, larkErr(t.line, "repetition ~ %d..%d: minimum above maximum", lo, hi)
		}
		a = rep(lo, hi)
	default:
		return a, nil
	}
	if t2 := p.peek(); t2.kind == tkPunct && strings.Contains("?*+~", t2.text) {
		return nil, larkErr(t2.line, "unexpected %s after a repetition (group with parentheses)", describe(t2))
	}
	return a, nil
}

func (p *larkParser) count() (int, error) {
	t := p.next()
	if t.kind != tkNumber {
		return 0, larkErr(t.line, "expected a number after ~, found %s", describe(t))
	}
	n, err := strconv.Atoi(t.text)
	if err != nil || n > maxRepeatCount {
		return 0, larkErr(t.line, "repetition count %s above %d", t.text, maxRepeatCount)
	}
	return n, nil
}

func (p *larkParser) atom() (*larkNode, error) {
	t := p.next()
	switch t.kind {
	case tkPunct:
		switch t.text {
		case "(", "[":
			closer := map[string]string{"(": ")", "[": "]"}[t.text]
			p.depth++
			e, err := p.expansions()
			p.depth--
			if err != nil {
				return nil, err
			}
			if !p.isPunct(closer) {
				return nil, larkErr(p.peek().line, "expected %s, found %s", closer, describe(p.peek()))
			}
			p.pos++
			if t.text == "[" {
				e = &larkNode{op: larkRepeat, line: t.line, subs: []*larkNode{e}, min: 0, max: 1}
			}
			return e, nil
		}
	case tkName:
		if _, err := nameKind(t.text, t.line); err != nil {
			return nil, err
		}
		if p.isPunct("{") {
			return nil, larkErr(t.line, "templates (%s{...}) are not supported", t.text)
		}
		return &larkNode{op: larkName, line: t.line, text: t.text}, nil
	case tkString:
		if p.isPunct("..") {
			p.pos++
			hi := p.next()
			if hi.kind != tkString {
				return nil, larkErr(hi.line, "expected a string after .., found %s", describe(hi))
			}
			lo, n1 := utf8.DecodeRuneInString(t.text)
			h, n2 := utf8.DecodeRuneInString(hi.text)
			if n1 == 0 || n1 != len(t.text) || n2 == 0 || n2 != len(hi.text) {
				return nil, larkErr(t.line, "a range needs one character on each side of ..")
			}
			if h < lo {
				return nil, larkErr(t.line, "range %q..%q out of order", t.text, hi.text)
			}
			return &larkNode{op: larkRange, line: t.line, lo: lo, hi: h, fold: t.flags != "" || hi.flags != ""}, nil
		}
		if t.text == "" {
			return nil, larkErr(t.line, `empty string literal ""`)
		}
		return &larkNode{op: larkLit, line: t.line, text: t.text, fold: t.flags == "i"}, nil
	case tkRegex:
		fold := false
		for _, f := range t.flags {
			if f != 'i' {
				return nil, larkErr(t.line, "regex flag %c is not supported (only i)", f)
			}
			fold = true
		}
		re, err := parseRegex(t.text)
		if err != nil {
			return nil, larkErr(t.line, "%v", err)
		}
		return &larkNode{op: larkRegex, line: t.line, re: re, fold: fold}, nil
	}
	return nil, larkErr(t.line, "unexpected %s", describe(t))
}

// commonLark defines the terminals of Lark's common library
// (lark/grammars/common.lark) from their documented meanings: numbers as
// Python writes them, C-style names, double-quoted strings with backslash
// escapes, whitespace and comments.
const commonLark = `
DIGIT: "0".."9"
HEXDIGIT: "a".."f" | "A".."F" | DIGIT
INT: DIGIT+
SIGNED_INT: ["+" | "-"] INT
DECIMAL: INT "." INT? | "." INT
_EXP: ("e" | "E") SIGNED_INT
FLOAT: INT _EXP | DECIMAL _EXP?
SIGNED_FLOAT: ["+" | "-"] FLOAT
NUMBER: FLOAT | INT
SIGNED_NUMBER: ["+" | "-"] NUMBER
LCASE_LETTER: "a".."z"
UCASE_LETTER: "A".."Z"
LETTER: UCASE_LETTER | LCASE_LETTER
WORD: LETTER+
CNAME: ("_" | LETTER) ("_" | LETTER | DIGIT)*
ESCAPED_STRING: "\"" (/[^"\\\n]/ | "\\" /[^\n]/)* "\""
WS_INLINE: (" " | "\t")+
WS: /[ \t\f\r\n]/+
CR: "\r"
LF: "\n"
NEWLINE: (CR? LF)+
SH_COMMENT: /#[^\n]*/
CPP_COMMENT: "//" /[^\n]*/
C_COMMENT: "/*" /([^*]|\*+[^*\/])*/ /\*+/ "/"
`

// ---- compiler ----

type larkCompiler struct {
	b     *builder
	o     Options
	g     *larkGrammar
	terms map[*larkDef]expr // compiled terminals
	busy  map[*larkDef]bool // terminals being compiled (recursion check)
	refs  map[*larkDef]expr // rule references
	ids   map[*larkDef]int32
	gap   expr // ignored text between terminals of rules
}

func (c *larkCompiler) compile() (expr, error) {
	g := c.g
	start, ok := g.defs["start"]
	if !ok || start.term {
		return exprEmpty, errors.New("grammar: the grammar has no start rule (start: ...)")
	}
	// Terminals first: each must be well formed even if unused.
	for _, d := range g.order {
		if d.term {
			if _, err := c.terminal(d, d.line); err != nil {
				return exprEmpty, err
			}
		}
	}
	gap, err := c.ignoreGap()
	if err != nil {
		return exprEmpty, err
	}
	c.gap = gap
	c.ids = map[*larkDef]int32{}
	var rules []*larkDef
	for _, d := range g.order {
		if !d.term {
			rules = append(rules, d)
			body, err := rewriteLeftRecursion(d)
			if err != nil {
				return exprEmpty, err
			}
			d.body = body
		}
	}
	nullable := rulesNullable(rules)
	if err := c.checkLeftRecursion(rules, nullable); err != nil {
		return exprEmpty, err
	}
	for _, d := range rules {
		id, ref := c.b.newRef(d.name)
		c.ids[d], c.refs[d] = id, ref
		// A reference is nullable when its rule is (JSON Schema's never
		// are, so the builder starts every reference non-nullable); set
		// before any expression containing it is built.
		c.b.nodes[ref].nullable = nullable[d]
	}
	for _, d := range rules {
		e, err := c.rule(d.body, d)
		if err != nil {
			return exprEmpty, err
		}
		c.b.define(c.ids[d], e)
	}
	if c.b.err != nil {
		return exprEmpty, c.b.err
	}
	return c.b.cat(c.refs[start], c.gap), nil
}

// resolve finds the definition a name in d's body refers to.
func (c *larkCompiler) resolve(d *larkDef, n *larkNode) (*larkDef, error) {
	if t, ok := d.scope[n.text]; ok {
		return t, nil
	}
	return nil, larkErr(n.line, "%s is not defined", n.text)
}

// terminal is the expression of terminal d (used from line).
func (c *larkCompiler) terminal(d *larkDef, line int) (expr, error) {
	if e, ok := c.terms[d]; ok {
		return e, nil
	}
	if c.busy[d] {
		return exprEmpty, larkErr(line, "terminal %s refers to itself (terminals must be regular)", d.name)
	}
	c.busy[d] = true
	e, err := c.regular(d.body, d)
	delete(c.busy, d)
	if err != nil {
		return exprEmpty, err
	}
	c.terms[d] = e
	return e, nil
}

// regular lowers an expansion inside a terminal: no gaps, no rules.
func (c *larkCompiler) regular(n *larkNode, d *larkDef) (expr, error) {
	b := c.b
	switch n.op {
	case larkLit:
		if !n.fold {
			return b.lit(n.text), nil
		}
		var parts []expr
		for _, r := range n.text {
			parts = append(parts, b.classExpr(foldRanges([]runeRange{{r, r}}), rawUTF8))
		}
		return b.seq(parts...), nil
	case larkRange:
		rs := []runeRange{{n.lo, n.hi}}
		if n.fold {
			rs = foldRanges(rs)
		}
		return b.classExpr(rs, rawUTF8), nil
	case larkRegex:
		re := n.re
		if n.fold {
			re = foldRegex(re)
		}
		e, err := b.lowerRegex(re, rawUTF8)
		if err != nil {
			return exprEmpty, larkErr(n.line, "regex: %v", err)
		}
		return e, nil
	case larkName:
		t, err := c.resolve(d, n)
		if err != nil {
			return exprEmpty, err
		}
		if !t.term {
			return exprEmpty, larkErr(n.line, "terminal %s refers to rule %s (terminals may use only terminals)", d.name, t.name)
		}
		return c.terminal(t, n.line)
	case larkSeq, larkAlt, larkRepeat:
		return c.compose(n, d, c.regular)
	}
	return exprEmpty, larkErr(n.line, "internal: unknown node")
}

// lexeme is the expression of a terminal used in a rule or %ignore: a
// named terminal or an anonymous literal, regex or range. It must not match
// the empty string (Lark's lexer refuses zero-width terminals).
func (c *larkCompiler) lexeme(n *larkNode, d *larkDef) (expr, error) {
	var e expr
	var err error
	line := n.line
	what := "an anonymous terminal"
	if n.op == larkName {
		t, rerr := c.resolve(d, n)
		if rerr != nil {
			return exprEmpty, rerr
		}
		what = "terminal " + t.name
		line = t.line
		e, err = c.terminal(t, n.line)
	} else {
		e, err = c.regular(n, d)
	}
	if err != nil {
		return exprEmpty, err
	}
	if c.b.nodes[e].nullable {
		return exprEmpty, larkErr(line, "%s matches the empty string (terminals cannot be empty)", what)
	}
	return e, nil
}

// ignoreGap is what may stand between two terminals: the %ignore
// terminals repeated, at most MaxWhitespace bytes in all.
func (c *larkCompiler) ignoreGap() (expr, error) {
	b := c.b
	top := &larkDef{name: "%ignore", scope: c.g.defs}
	var items []expr
	var flat []*larkNode
	for _, n := range c.g.ignores {
		if n.op == larkAlt {
			flat = append(flat, n.subs...)
		} else {
			flat = append(flat, n)
		}
	}
	for _, n := range flat {
		if n.op == larkName {
			if t, ok := c.g.defs[n.text]; ok && !t.term {
				return exprEmpty, larkErr(n.line, "%%ignore %s: only terminals can be ignored", n.text)
			}
		}
		if n.op != larkName && n.op != larkLit && n.op != larkRegex && n.op != larkRange {
			return exprEmpty, larkErr(n.line, "%%ignore takes terminal names or literals")
		}
		e, err := c.lexeme(n, top)
		if err != nil {
			return exprEmpty, err
		}
		items = append(items, e)
	}
	if len(items) == 0 || c.o.MaxWhitespace == 0 {
		return exprEps, nil
	}
	// Common case: every ignored terminal is a byte set, once or repeated
	// (WS, WS_INLINE, " ", /\s+/): the gap is that set, up to the bound.
	var set byteSet
	simple := true
	for _, e := range items {
		if nd := b.nodes[e]; nd.kind == kRepeat && nd.min <= 1 {
			e = nd.a
		}
		s, ok := c.byteSetOf(e)
		if !ok {
			simple = false
			break
		}
		for i := range set {
			set[i] |= s[i]
		}
	}
	if simple {
		return b.repeat(b.bytes(set), 0, c.o.MaxWhitespace), nil
	}
	var all byteSet
	all.addRange(0, 255)
	return b.and(b.repeat(b.or(items...), 0, -1), b.repeat(b.bytes(all), 0, c.o.MaxWhitespace)), nil
}

// byteSetOf reports whether e matches exactly the one-byte strings of a
// set, and which.
func (c *larkCompiler) byteSetOf(e expr) (byteSet, bool) {
	nd := c.b.nodes[e]
	switch nd.kind {
	case kBytes:
		return nd.set, true
	case kOr:
		var out byteSet
		for _, k := range nd.kids {
			s, ok := c.byteSetOf(k)
			if !ok {
				return byteSet{}, false
			}
			for i := range out {
				out[i] |= s[i]
			}
		}
		return out, true
	}
	return byteSet{}, false
}

// compose lowers a sequence, alternative or repetition node, its children
// with lower (regular inside terminals, rule inside rules).
func (c *larkCompiler) compose(n *larkNode, d *larkDef, lower func(*larkNode, *larkDef) (expr, error)) (expr, error) {
	parts := make([]expr, len(n.subs))
	for i, s := range n.subs {
		e, err := lower(s, d)
		if err != nil {
			return exprEmpty, err
		}
		parts[i] = e
	}
	switch n.op {
	case larkSeq:
		return c.b.seq(parts...), nil
	case larkAlt:
		return c.b.or(parts...), nil
	}
	return c.b.repeat(parts[0], n.min, n.max), nil
}

// rule lowers an expansion inside rule d: terminals are preceded by the
// ignore gap, rules become references.
func (c *larkCompiler) rule(n *larkNode, d *larkDef) (expr, error) {
	b := c.b
	switch n.op {
	case larkName:
		t, err := c.resolve(d, n)
		if err != nil {
			return exprEmpty, err
		}
		if !t.term {
			return c.refs[t], nil
		}
		fallthrough
	case larkLit, larkRange, larkRegex:
		e, err := c.lexeme(n, d)
		if err != nil {
			return exprEmpty, err
		}
		return b.cat(c.gap, e), nil
	case larkSeq, larkAlt, larkRepeat:
		return c.compose(n, d, c.rule)
	}
	return exprEmpty, larkErr(n.line, "internal: unknown node")
}

// rewriteLeftRecursion turns immediate left recursion a: a X1 | ... | Y1
// | ... into a: (Y1 | ...) (X1 | ...)*, the standard elimination (Aho,
// Sethi and Ullman, "Compilers", §4.3), which keeps the language.
func rewriteLeftRecursion(d *larkDef) (*larkNode, error) {
	alts := []*larkNode{d.body}
	if d.body.op == larkAlt {
		alts = d.body.subs
	}
	var base, tails []*larkNode
	for _, a := range alts {
		items := flattenSeq(a)
		if len(items) > 0 && items[0].op == larkName && items[0].text == d.name {
			tails = append(tails, &larkNode{op: larkSeq, line: a.line, subs: items[1:]})
			continue
		}
		base = append(base, a)
	}
	if len(tails) == 0 {
		return d.body, nil
	}
	if len(base) == 0 {
		return nil, larkErr(d.line, "rule %s is left-recursive in every alternative (it derives no text)", d.name)
	}
	var head, tail *larkNode = base[0], tails[0]
	if len(base) > 1 {
		head = &larkNode{op: larkAlt, line: d.line, subs: base}
	}
	if len(tails) > 1 {
		tail = &larkNode{op: larkAlt, line: d.line, subs: tails}
	}
	rep := &larkNode{op: larkRepeat, line: d.line, subs: []*larkNode{tail}, min: 0, max: -1}
	return &larkNode{op: larkSeq, line: d.line, subs: []*larkNode{head, rep}}, nil
}

// flattenSeq lists the items of a sequence, opening nested sequences
// (parentheses around a plain sequence).
func flattenSeq(n *larkNode) []*larkNode {
	if n.op != larkSeq {
		return []*larkNode{n}
	}
	var out []*larkNode
	for _, s := range n.subs {
		out = append(out, flattenSeq(s)...)
	}
	return out
}

// checkLeftRecursion refuses rules that reach themselves without
// consuming text (what remains after rewriting immediate left recursion),
// naming the cycle.
func (c *larkCompiler) checkLeftRecursion(rules []*larkDef, nullable map[*larkDef]bool) error {
	null := func(n *larkNode, d *larkDef) bool { return larkNullable(n, d, nullable) }
	var heads func(n *larkNode, d *larkDef, out *[]*larkDef)
	heads = func(n *larkNode, d *larkDef, out *[]*larkDef) {
		switch n.op {
		case larkName:
			if t := d.scope[n.text]; t != nil && !t.term {
				*out = append(*out, t)
			}
		case larkSeq:
			for _, s := range n.subs {
				heads(s, d, out)
				if !null(s, d) {
					return
				}
			}
		case larkAlt:
			for _, s := range n.subs {
				heads(s, d, out)
			}
		case larkRepeat:
			heads(n.subs[0], d, out)
		}
	}
	state := map[*larkDef]int8{} // 1 on the path, 2 done
	var path []*larkDef
	var visit func(d *larkDef) error
	visit = func(d *larkDef) error {
		switch state[d] {
		case 1:
			i := slices.Index(path, d)
			names := make([]string, 0, len(path)-i+1)
			for _, r := range path[i:] {
				names = append(names, r.name)
			}
			names = append(names, d.name)
			return larkErr(d.line, "left recursion through rules %s is not supported (only immediate left recursion, a: a x | y, is rewritten)", strings.Join(names, " -> "))
		case 2:
			return nil
		}
		state[d] = 1
		path = append(path, d)
		var hs []*larkDef
		heads(d.body, d, &hs)
		for _, h := range hs {
			if err := visit(h); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		state[d] = 2
		return nil
	}
	for _, d := range rules {
		if err := visit(d); err != nil {
			return err
		}
	}
	return nil
}

// rulesNullable finds the rules that derive the empty string (a fixpoint
// over the rules; terminals are never empty).
func rulesNullable(rules []*larkDef) map[*larkDef]bool {
	nullable := map[*larkDef]bool{}
	for changed := true; changed; {
		changed = false
		for _, d := range rules {
			if !nullable[d] && larkNullable(d.body, d, nullable) {
				nullable[d], changed = true, true
			}
		}
	}
	return nullable
}

func larkNullable(n *larkNode, d *larkDef, nullable map[*larkDef]bool) bool {
	switch n.op {
	case larkName:
		t := d.scope[n.text]
		return t != nil && !t.term && nullable[t]
	case larkSeq:
		for _, s := range n.subs {
			if !larkNullable(s, d, nullable) {
				return false
			}
		}
		return true
	case larkAlt:
		for _, s := range n.subs {
			if larkNullable(s, d, nullable) {
				return true
			}
		}
		return false
	case larkRepeat:
		return n.min == 0 || larkNullable(n.subs[0], d, nullable)
	}
	return false
}

// foldRanges adds the simple case foldings (unicode.SimpleFold) of every
// cased character in rs.
func foldRanges(rs []runeRange) []runeRange {
	out := slices.Clone(rs)
	for _, r := range rs {
		for _, cr := range unicode.CaseRanges {
			lo, hi := max(r.lo, rune(cr.Lo)), min(r.hi, rune(cr.Hi))
			for c := lo; c <= hi; c++ {
				for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
					out = append(out, runeRange{f, f})
				}
			}
		}
	}
	return normRanges(out)
}

// foldRegex is re with every class case-folded (the i flag).
func foldRegex(re *reNode) *reNode {
	n := *re
	if n.op == reClass {
		n.ranges = foldRanges(n.ranges)
	}
	n.subs = make([]*reNode, len(re.subs))
	for i, s := range re.subs {
		n.subs[i] = foldRegex(s)
	}
	return &n
}
