package grammar

import (
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// Lark grammars the tests compile, each with sentences it must accept and
// reject, and (check) an independent recogniser of its language.
const larkArith = `
// Arithmetic with precedence, written left-recursively as Lark users do.
?start: sum
?sum: product
    | sum "+" product
    | sum "-" product
?product: atom | product "*" atom | product "/" atom
?atom: NUMBER | "-" atom | "(" sum ")"
NUMBER: /[0-9]{1,3}/
%ignore " "
`

const larkSQL = `
start: "SELECT"i _S columns _S "FROM"i _S NAME (_S where)? ";"?
columns: "*" | NAME ("," _S? NAME) ~ 0..3
where: "WHERE"i _S cond (_S ("AND"i | "OR"i) _S cond) ~ 0..2
cond: NAME _S? OP _S? (NUMBER | STRING)
OP: "=" | "<" | ">" | "<=" | ">=" | "!="
NAME: /[a-z_][a-z0-9_]{0,7}/
NUMBER: DIGIT ~ 1..4
STRING: "'" /[a-z ]/ ~ 0..6 "'"
_S: " "
%import common.DIGIT
`

const larkCSV = `
start: row (NL row) ~ 0..3 NL?
row: field ("," field) ~ 0..4
field: QUOTED | BARE |
QUOTED: "\"" (/[^"\n]/ | "\"\"") ~ 0..8 "\""
BARE: /[^",\n]{1,8}/
NL: "\n"
`

const larkJSON = `
?start: value
?value: object
      | array
      | string
      | SIGNED_NUMBER      -> number
      | "true"             -> true
      | "false"            -> false
      | "null"             -> null
array  : "[" [value ("," value)*] "]"
object : "{" [pair ("," pair)*] "}"
pair   : string ":" value
string : ESCAPED_STRING
%import common.ESCAPED_STRING
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
`

// larkJSONStrict is JSON exactly (RFC 8259), so that encoding/json can
// check what random walks write.
const larkJSONStrict = `
?start: value
?value: object | array | STRING | NUMBER | "true" | "false" | "null"
array: "[" [value ("," value)*] "]"
object: "{" [STRING ":" value ("," STRING ":" value)*] "}"
STRING: /"([^"\\\x00-\x1f]|\\(["\\\/bfnrt]|u[0-9a-fA-F]{4}))*"/
NUMBER: /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/
%ignore /[ \t\n\r]/
`

// larkKV has %ignore WS and a comment terminal, which takes the general
// (intersection) path for the whitespace bound.
const larkKV = `
start: pair ("," pair) ~ 0..3
pair: KEY "=" value
value: INT | WORD | list
list: "[" [value ("," value) ~ 0..2] "]"
KEY: /[a-z]{1,4}/
INT: DIGIT ~ 1..3
WORD: LCASE_LETTER ~ 1..4
COMMENT: "#" /[a-z]/ ~ 0..3 "\n"
%import common (WS, DIGIT, LCASE_LETTER)
%ignore WS
%ignore COMMENT
`

var (
	sqlRe = func() *regexp.Regexp {
		n := `[a-z_][a-z0-9_]{0,7}`
		cond := n + ` ?(=|<|>|<=|>=|!=) ?([0-9]{1,4}|'[a-z ]{0,6}')`
		return regexp.MustCompile(`^(?i:SELECT) (\*|` + n + `(, ?` + n + `){0,3}) (?i:FROM) ` + n +
			`( (?i:WHERE) ` + cond + `( (?i:AND|OR) ` + cond + `){0,2})?;?$`)
	}()
	csvRe = func() *regexp.Regexp {
		f := `("([^"\n]|""){0,8}"|[^",\n]{1,8})?`
		row := f + `(,` + f + `){0,4}`
		return regexp.MustCompile(`^` + row + `(\n` + row + `){0,3}\n?$`)
	}()
)

// arithParser is a recursive-descent recogniser of larkArith's language
// with at most maxGap spaces between tokens (and around the text).
type arithParser struct {
	s      string
	i      int
	maxGap int
	ok     bool
}

func arithValid(s string, maxGap int) bool {
	p := &arithParser{s: s, maxGap: maxGap, ok: true}
	p.sum()
	p.gap()
	return p.ok && p.i == len(p.s)
}

func (p *arithParser) gap() {
	n := 0
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
		n++
	}
	if n > p.maxGap {
		p.ok = false
	}
}

func (p *arithParser) peek() byte {
	p.gap()
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *arithParser) sum() {
	p.product()
	for p.ok && (p.peek() == '+' || p.peek() == '-') {
		p.i++
		p.product()
	}
}

func (p *arithParser) product() {
	p.atom()
	for p.ok && (p.peek() == '*' || p.peek() == '/') {
		p.i++
		p.atom()
	}
}

func (p *arithParser) atom() {
	switch c := p.peek(); {
	case c == '-':
		p.i++
		p.atom()
	case c == '(':
		p.i++
		p.sum()
		if p.peek() != ')' {
			p.ok = false
			return
		}
		p.i++
	case c >= '0' && c <= '9':
		n := 0
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
			n++
		}
		if n > 3 {
			p.ok = false
		}
	default:
		p.ok = false
	}
}

// kvValid is a recursive-descent recogniser of larkKV's language with at
// most maxGap bytes of whitespace and comments in each gap.
func kvValid(s string, maxGap int) bool {
	i, ok := 0, true
	lower := func(c byte) bool { return c >= 'a' && c <= 'z' }
	gap := func() {
		start := i
		for i < len(s) {
			if strings.IndexByte(" \t\f\r\n", s[i]) >= 0 {
				i++
				continue
			}
			if s[i] != '#' {
				break
			}
			j := i + 1
			for j < len(s) && j-i <= 3 && lower(s[j]) {
				j++
			}
			if j == len(s) || s[j] != '\n' {
				ok = false
				return
			}
			i = j + 1
		}
		if i-start > maxGap {
			ok = false
		}
	}
	run := func(class func(byte) bool, lo, hi int) {
		gap()
		n := 0
		for i < len(s) && class(s[i]) {
			i++
			n++
		}
		if n < lo || n > hi {
			ok = false
		}
	}
	punct := func(c byte) bool {
		gap()
		if i < len(s) && s[i] == c {
			i++
			return true
		}
		return false
	}
	peek := func() byte {
		gap()
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	var value func()
	value = func() {
		switch c := peek(); {
		case c >= '0' && c <= '9':
			run(func(c byte) bool { return c >= '0' && c <= '9' }, 1, 3)
		case lower(c):
			run(lower, 1, 4)
		case c == '[':
			i++
			if peek() != ']' {
				value()
				for n := 0; ok && n < 2 && peek() == ','; n++ {
					i++
					value()
				}
			}
			ok = ok && punct(']')
		default:
			ok = false
		}
	}
	pair := func() {
		run(lower, 1, 4)
		ok = ok && punct('=')
		if ok {
			value()
		}
	}
	pair()
	for n := 0; ok && n < 3 && peek() == ','; n++ {
		i++
		pair()
	}
	gap()
	return ok && i == len(s)
}

type larkCase struct {
	name    string
	src     string
	valid   []string
	invalid []string
	check   func(string) bool // nil: no independent recogniser
}

var larkCases = []larkCase{
	{
		name:    "arith",
		src:     larkArith,
		valid:   []string{"1", "1+2*3", "1-2-3", "(1+2)*3", "-(4/2)", "12 * (3 - -4) / 5", " 7 ", "((((1))))", "1*2*3*4+5"},
		invalid: []string{"", "1+", "+1", "(1+2", "1+2)", "1234", "1 2", "1+*2", "()", "1         +2"},
		check:   func(s string) bool { return arithValid(s, DefaultMaxWhitespace) },
	},
	{
		name: "sql",
		src:  larkSQL,
		valid: []string{"SELECT * FROM users", "select a, b,c FROM t;", "SELECT id FROM t WHERE id = 3",
			"Select x FROM t WHERE x>=10 and y != 'ab c';", "SELECT a FROM b WHERE a<1 OR b=2 AND c='x'"},
		invalid: []string{"SELECT FROM t", "SELECT * FROM", "SELECT *  FROM t", "SELECT * FROM t WHERE", "SELECT a,b,c,d,e FROM t",
			"SELECT * FROM t;;", "SELECT * FROM t WHERE a = 12345", "SELECT * FROM Users"},
		check: sqlRe.MatchString,
	},
	{
		name:    "csv",
		src:     larkCSV,
		valid:   []string{"a,b,c", "a,b,c\n", "1,\"x,y\",\"say \"\"hi\"\"\"\n2,,3", "", ",,", "a\nb\nc\nd"},
		invalid: []string{"\"a", "a\"b", "a,b,c,d,e,f", "a\nb\nc\nd\ne", "abcdefghi", "\"x\"y"},
		check:   csvRe.MatchString,
	},
	{
		name: "json",
		src:  larkJSON,
		valid: []string{`{}`, `[]`, `{"a": [1, -2.5e+3, true, null], "b": {"c": "d\n\"e"}}`, ` [ 1 , 2 ] `, `"x"`,
			`-0.5`, `{"a":{"b":{"c":{"d":{"e":[[[[]]]]}}}}}`},
		invalid: []string{`{`, `[1,]`, `{"a" 1}`, `{"a": tru}`, `'x'`, `[1 2]`, `{"a":          1}`, "\"a\nb\""},
	},
	{
		name:    "json-strict",
		src:     larkJSONStrict,
		valid:   []string{`{}`, `[]`, `{"a": [1, -2.5e+3, true, null], "b": {"c": "d\n\"e\u00e9"}}`, ` [ 1 , 2 ] `, `"x"`, `-0.5`},
		invalid: []string{`{`, `[1,]`, `+1`, `01`, `"\q"`, "\"\t\"", `1.`, "\f1"},
		check:   func(s string) bool { return json.Valid([]byte(s)) },
	},
	{
		name:    "kv-ignore",
		src:     larkKV,
		valid:   []string{"a=1", " a = 1 , bb=[x, 12 ,[ ]] ", "a=1 #c\n, b=[]", "#hi\na=b", "a=[[[]]]"},
		invalid: []string{"a=1,", "a=1234", "A=1", "a=1 #C\n", "a=1 #cc", "a=1         ", "a=1,b=2,c=3,d=4,e=5"},
		check:   func(s string) bool { return kvValid(s, DefaultMaxWhitespace) },
	},
}

func compileLark(t *testing.T, v *Vocab, src string, o Options) *Grammar {
	t.Helper()
	g, err := CompileGrammar(v, src, o)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// tokenWalk tokenizes text and walks it as a sampler would: true when
// every token is allowed and EOS is allowed at the end.
func tokenWalk(t *testing.T, g *Grammar, tc tokenizerCase, text string) bool {
	t.Helper()
	toks := encodeExact(t, tc, text)
	refused, ok, _, err := Walk(g.NewMatcher(), tc.vocab, toks, nil)
	if err != nil {
		t.Fatalf("%q: %v", text, err)
	}
	return refused == len(toks) && ok
}

func TestLarkSentences(t *testing.T) {
	for _, tc := range tokenizers(t) {
		for _, lc := range larkCases {
			g := compileLark(t, tc.vocab, lc.src, Options{})
			for _, s := range lc.valid {
				if lc.check != nil && !lc.check(s) {
					t.Fatalf("%s: the test recogniser refuses valid %q", lc.name, s)
				}
				if !tokenWalk(t, g, tc, s) {
					t.Errorf("%s/%s: valid %q refused", tc.name, lc.name, s)
				}
				if !walkText(t, g, s) {
					t.Errorf("%s/%s: valid %q refused byte-wise", tc.name, lc.name, s)
				}
			}
			for _, s := range lc.invalid {
				if lc.check != nil && lc.check(s) {
					t.Fatalf("%s: the test recogniser accepts invalid %q", lc.name, s)
				}
				if tokenWalk(t, g, tc, s) {
					t.Errorf("%s/%s: invalid %q accepted", tc.name, lc.name, s)
				}
			}
		}
	}
}

// encodeExact tokenizes text with the model's tokenizer; where it adds
// SentencePiece's dummy prefix space, the first token is replaced by the
// tokens of its bytes without the space, so the tokens spell text exactly.
func encodeExact(t *testing.T, tc tokenizerCase, text string) []int32 {
	t.Helper()
	toks, err := tc.tok.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	spell := func(ts []int32) string {
		var b []byte
		for _, id := range ts {
			b = append(b, tc.vocab.TokenBytes(id)...)
		}
		return string(b)
	}
	if got := spell(toks); got == text {
		return toks
	} else if got != " "+text || len(toks) == 0 {
		t.Fatalf("%s: tokens of %q spell %q", tc.name, text, got)
	}
	byBytes := map[string]int32{}
	for id := int32(0); int(id) < tc.vocab.Size(); id++ {
		if b := tc.vocab.TokenBytes(id); len(b) > 0 && !tc.vocab.IsSpecial(id) {
			if _, dup := byBytes[string(b)]; !dup {
				byBytes[string(b)] = id
			}
		}
	}
	first := string(tc.vocab.TokenBytes(toks[0])[1:])
	var head []int32
	if id, ok := byBytes[first]; ok && first != "" {
		head = []int32{id}
	} else {
		for i := range len(first) {
			id, ok := byBytes[first[i:i+1]]
			if !ok {
				t.Fatalf("%s: no token for byte %q", tc.name, first[i])
			}
			head = append(head, id)
		}
	}
	out := append(head, toks[1:]...)
	if spell(out) != text {
		t.Fatalf("%s: respelled tokens of %q spell %q", tc.name, text, spell(out))
	}
	return out
}

// bruteMask checks mask against consuming every token alone from m.
func bruteMask(t *testing.T, m *Matcher, v *Vocab, mask []uint64, where string) []int32 {
	t.Helper()
	var allowed []int32
	for id := int32(0); int(id) < v.Size(); id++ {
		var want bool
		if v.isEOS(id) {
			want = m.Accepting()
		} else if b := v.TokenBytes(id); len(b) > 0 && !v.IsSpecial(id) {
			want = m.Clone().ConsumeBytes(b) == nil
		}
		got := mask[id>>6]&(1<<(id&63)) != 0
		if got != want {
			t.Fatalf("%s: token %d %q: mask %v, brute force %v", where, id, v.TokenBytes(id), got, want)
		}
		if got {
			allowed = append(allowed, id)
		}
	}
	return allowed
}

// TestLarkRandomWalk samples uniformly among the allowed tokens (fixed
// seeds): the mask must equal the brute-force one at the first steps, every
// run must end with EOS within the limit (the test grammars bound their
// terminals with ~ n..m or {n,m}; recursion ends by chance), and every text
// must pass the independent recogniser.
func TestLarkRandomWalk(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const limit, bruteSteps = 400, 25
	for _, tc := range tokenizers(t) {
		v := tc.vocab
		mask := make([]uint64, (v.Size()+63)/64)
		for _, lc := range larkCases {
			g := compileLark(t, v, lc.src, Options{MaxWhitespace: 2})
			ended, longest := 0, ""
			for run := range 6 {
				m := g.NewMatcher()
				var text []byte
				for n := 0; n < limit && !m.Done(); n++ {
					if err := m.FillMask(mask); err != nil {
						t.Fatal(err)
					}
					var allowed []int32
					if n < bruteSteps {
						allowed = bruteMask(t, m, v, mask, tc.name+"/"+lc.name+" after "+string(text))
					} else {
						for id := int32(0); int(id) < v.Size(); id++ {
							if mask[id>>6]&(1<<(id&63)) != 0 {
								allowed = append(allowed, id)
							}
						}
					}
					if len(allowed) == 0 {
						t.Fatalf("%s/%s run %d: no token allowed after %q", tc.name, lc.name, run, text)
					}
					tok := allowed[rng.IntN(len(allowed))]
					if err := m.Consume(tok); err != nil {
						t.Fatal(err)
					}
					if !v.isEOS(tok) {
						text = append(text, v.TokenBytes(tok)...)
					}
				}
				if !m.Done() {
					t.Fatalf("%s/%s run %d: no EOS within %d tokens: %q", tc.name, lc.name, run, limit, text)
				}
				ended++
				if len(text) > len(longest) {
					longest = string(text)
				}
				if !utf8.Valid(text) {
					t.Fatalf("%s/%s run %d: invalid UTF-8 %q", tc.name, lc.name, run, text)
				}
				if lc.check != nil && !lc.check(string(text)) {
					t.Fatalf("%s/%s run %d: recogniser refuses %q", tc.name, lc.name, run, text)
				}
				if (lc.name == "arith" && !arithValid(string(text), 2)) || (lc.name == "kv-ignore" && !kvValid(string(text), 2)) {
					t.Fatalf("%s: a gap of more than 2 bytes: %q", lc.name, text)
				}
			}
			t.Logf("%s/%s: %d of 6 runs ended; longest %q", tc.name, lc.name, ended, longest)
		}
	}
}

// TestLarkJSONCoversJSONObject: every text the json_object grammar
// accepts (the corpus's object instances, and random walks of json_object
// itself) is accepted by the JSON grammar written in Lark.
func TestLarkJSONCoversJSONObject(t *testing.T) {
	files := loadBenchFiles(t, "corpus")
	rng := rand.New(rand.NewPCG(9, 10))
	for _, tc := range tokenizers(t) {
		v := tc.vocab
		obj, err := CompileJSONObject(v, Options{})
		if err != nil {
			t.Fatal(err)
		}
		lark := compileLark(t, v, larkJSON, Options{})
		var texts []string
		for _, name := range sortedKeys(files) {
			for _, test := range files[name].Tests {
				val, err := ParseValue(test.Data)
				if err != nil || val.Kind != Object {
					continue
				}
				text, err := DumpsPython(val)
				if err == nil && tokenWalk(t, obj, tc, text) {
					texts = append(texts, text)
				}
			}
		}
		mask := make([]uint64, (v.Size()+63)/64)
		for range 20 {
			m := obj.NewMatcher()
			var text []byte
			for n := 0; n < 300 && !m.Done(); n++ {
				if err := m.FillMask(mask); err != nil {
					t.Fatal(err)
				}
				var allowed []int32
				for id := int32(0); int(id) < v.Size(); id++ {
					if mask[id>>6]&(1<<(id&63)) != 0 {
						allowed = append(allowed, id)
					}
				}
				tok := allowed[rng.IntN(len(allowed))]
				if err := m.Consume(tok); err != nil {
					t.Fatal(err)
				}
				if !v.isEOS(tok) {
					text = append(text, v.TokenBytes(tok)...)
				}
			}
			if m.Done() {
				texts = append(texts, string(text))
			}
		}
		t.Logf("%s: %d json_object texts", tc.name, len(texts))
		if len(texts) < 20 {
			t.Fatalf("%s: only %d json_object texts", tc.name, len(texts))
		}
		for _, s := range texts {
			if !walkText(t, lark, s) {
				t.Errorf("%s: json_object accepts %q, the Lark JSON grammar does not", tc.name, s)
			}
		}
	}
}

func TestLarkFeatures(t *testing.T) {
	v := tokenizers(t)[0].vocab
	for _, c := range []struct {
		src      string
		yes, no  []string
		maxSpace int
	}{
		{src: `start: "select"i /ab[c-d]/i`, yes: []string{"selectabc", "SeLeCTABD"}, no: []string{"selectab", "selectabe"}},
		{src: `start: "a".."c"+ "é"`, yes: []string{"abcé", "cé"}, no: []string{"é", "dé"}},
		{src: `start: X ~ 2 Y ~ 1..2
X: "x"
Y: "y"`, yes: []string{"xxy", "xxyy"}, no: []string{"xy", "xxyyy", "xx"}},
		{src: `start: a [b] c?
a: "a"
b: "b"
c: "c"`, yes: []string{"a", "ab", "abc", "ac"}, no: []string{"", "bc", "abb"}},
		{src: `start: "\x41\u00e9\n\"\\"`, yes: []string{"Aé\n\"\\"}},
		// Immediate left recursion with several recursive and base
		// alternatives, and an empty base.
		{src: `start: list
list: list "," ITEM | list ";" | ITEM |
ITEM: /[0-9]/`, yes: []string{"", "1", "1,2", "1;;,3", ";", ",1"}, no: []string{"1,", "1,,2", "12"}},
		// Center recursion through references.
		{src: `start: "(" start ")" | "x"`, yes: []string{"x", "((x))"}, no: []string{"(x", "()"}},
		// Imports with an alias and in a list; %ignore of a literal.
		{src: `start: N ("," N)*
%import common.SIGNED_NUMBER -> N
%ignore " "`, yes: []string{"1, -2.5e3 ,+.5", " 1 "}, no: []string{"1,,2", "1 e3"}},
		{src: `start: CNAME WS_INLINE WORD ESCAPED_STRING HEXDIGIT
%import common (CNAME, WS_INLINE, WORD, ESCAPED_STRING, HEXDIGIT)`,
			yes: []string{"_a1 \txy\"a\\\"b\"F"}, no: []string{"1a xy\"\"F", "a xy\"a\nb\"F", "a x1\"\"F"}},
		{src: `start: (C_COMMENT | CPP_COMMENT | SH_COMMENT) NEWLINE
%import common (C_COMMENT, CPP_COMMENT, SH_COMMENT, NEWLINE)`,
			yes: []string{"/* a * / **/\n", "// x\r\n\n", "# y\n"}, no: []string{"/* a */ */\n", "/* a\n"}},
		// The example of vLLM's structured outputs documentation.
		{src: `start: select_statement
select_statement: "SELECT " column " from " table " where " condition
column: "col_1" | "col_2"
table: "table_1" | "table_2"
condition: column "=" number
number: "1" | "2"`, yes: []string{"SELECT col_1 from table_2 where col_2=1"}, no: []string{"SELECT col_3 from table_2 where col_2=1", "SELECT col_1 from table_2 where col_2 = 1"}},
		// Newlines inside parentheses, | on continuation lines, ! and ?
		// prefixes, aliases.
		{src: `!start: ( "a"
    | "b" )
  | "c" -> cee
?unused: "d"`, yes: []string{"a", "b", "c"}, no: []string{"d", "ab"}},
		// No whitespace allowed when MaxWhitespace is negative.
		{src: "start: \"a\" \"b\"\n%import common.WS\n%ignore WS", yes: []string{"ab"}, no: []string{"a b"}, maxSpace: -1},
		{src: "start: \"a\" \"b\"\n%import common.WS\n%ignore WS", yes: []string{"a   b", " a b "}, no: []string{"a    b"}, maxSpace: 3},
	} {
		g, err := CompileGrammar(v, c.src, Options{MaxWhitespace: c.maxSpace})
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		for _, s := range c.yes {
			if !walkText(t, g, s) {
				t.Errorf("%q: %q refused", c.src, s)
			}
		}
		for _, s := range c.no {
			if walkText(t, g, s) {
				t.Errorf("%q: %q accepted", c.src, s)
			}
		}
	}
}

func TestLarkRefusals(t *testing.T) {
	v := tokenizers(t)[0].vocab
	for src, want := range map[string]string{
		`a: "x"`:       "no start rule",
		"START: \"x\"": "no start rule",
		"start: a\na: b \"x\" | \"y\"\nb: a \"z\"":           "line 2: left recursion through rules a -> b -> a",
		"start: a\na: b? a \"x\" | \"y\"\nb: \"z\"":          "line 2: left recursion through rules a -> a",
		"start: start \"a\"":                                 "line 1: rule start is left-recursive in every alternative",
		"start: _sep{\"a\", \",\"}":                          "line 1: templates",
		"start: \"a\"\n_sep{x, sep}: x (sep x)*":             "line 2: templates",
		"start: \"a\"\n%declare FOO":                         "line 2: %declare is not supported",
		"start: \"a\"\n%override start: \"b\"":               "line 2: %override is not supported",
		"start: \"a\"\n%extend start: \"b\"":                 "line 2: %extend is not supported",
		"start.2: \"a\"":                                     "line 1: priorities",
		"start: A\nA.2: \"a\"":                               "line 2: priorities",
		"start: A\nA: /a(?=b)/":                              `line 2: regex "a(?=b)": lookaround`,
		"start: A\nA: /a/s":                                  "line 2: regex flag s is not supported",
		"start: A\nA: /^a/":                                  "line 2: regex: anchors",
		"start: A\nA: /(a)\\1/":                              "backreferences",
		"root ::= \"a\"":                                     "line 1: GBNF",
		"start: NAME\n%import python.NAME":                   `line 2: %import from "python" is not supported`,
		"start: FOO\n%import common.FOO":                     "line 2: common.FOO is not one of the supported",
		"start: foo":                                         "line 1: foo is not defined",
		"start: A\nA: \"a\" B":                               "line 2: B is not defined",
		"start: \"a\"\nb: ( \"x\"":                           "line 2: expected )",
		"start: \"a\"\n\n b: \"x":                            "line 3: unterminated string",
		"start: \"a\"\nb: /x":                                "line 2: unterminated regular expression",
		"start: A\nA: /a*/":                                  "line 2: terminal A matches the empty string",
		"start: \"\"":                                        "line 1: empty string literal",
		"start: A\nA: b\nb: \"x\"":                           "line 2: terminal A refers to rule b",
		"start: A\nA: \"a\" A":                               "line 2: terminal A refers to itself",
		"start: fooBar":                                      "line 1: name \"fooBar\" mixes cases",
		"start: \"a\"\nstart: \"b\"":                         "line 2: start is defined twice (first on line 1)",
		"start: a\na: \"x\"\n%ignore a":                      "line 3: %ignore a: only terminals",
		"start: \"a\" ~ 3..1":                                "line 1: repetition ~ 3..1",
		"start: \"a\"**":                                     "line 1: unexpected \"*\" after a repetition",
		"start: \"a\"..B":                                    "line 1: expected a string after ..",
		"start: \"ab\"..\"c\"":                               "one character on each side",
		"start: <|eos|>":                                     "line 1: special tokens",
		"start: \"a\"\n%json {}":                             "line 2: %json is not supported",
		"start: \"a\" \"\\q\"":                               `line 1: unknown escape \q`,
		"start: \"a\"\nx[max_tokens=3]: \"b\"":               "line 2: rule attributes",
		"start: \"a\"\n\n\nb: \"x\" :":                       "line 4: unexpected \":\"",
		"start: \"a\" -> ":                                   "line 1: expected an alias name",
		"start: \"a\"\n%import common.WS -> ws":              "line 2: %import common.WS -> ws: a terminal needs an uppercase name",
		"start: \"a\"\n%import common.WS\n%import common.WS": "line 3: WS is defined twice",
	} {
		_, err := CompileGrammar(v, src, Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", src, err, want)
		}
	}
}

// TestLarkParserNoPanic feeds mangled grammars: errors, never panics.
func TestLarkParserNoPanic(t *testing.T) {
	v := tokenizers(t)[0].vocab
	rng := rand.New(rand.NewPCG(11, 12))
	pieces := []string{"start", ":", "a", "A", "|", "(", ")", "[", "]", "\"x\"", "/y/", "?", "*", "+", "~", "2", "..", "\n", "%ignore", "%import", "common", ".", "WS", "->", "{", "}", ",", "!", "\"", "/", " "}
	for range 3000 {
		var sb strings.Builder
		for range 1 + rng.IntN(14) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
			sb.WriteByte(' ')
		}
		src := sb.String()
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Fatalf("%q: panic %v", src, r)
				}
			}()
			_, _ = CompileGrammar(v, src, Options{})
		}()
	}
}
