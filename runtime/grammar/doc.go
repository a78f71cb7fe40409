// Package grammar is the constrained-decoding engine behind structured
// outputs: it compiles a JSON Schema, OpenAI's json_object, a regular
// expression or a choice list into a matcher over a model's token
// vocabulary, which says before each sampling step which tokens may come
// next.
//
// # API
//
//	v, err := grammar.LoadVocab(modelDir)            // once per tokenizer
//	g, err := grammar.CompileJSONSchema(v, schema, grammar.Options{})
//	//  or CompileJSONObject(v, o), CompileRegex(v, re, o), CompileChoice(v, list, o),
//	//  CompileGrammar(v, larkSource, o)
//	m := g.NewMatcher()                               // one per sequence
//	mask := make([]uint64, (v.Size()+63)/64)
//	for !m.Done() {
//		err = m.FillMask(mask) // bit i set: token i allowed; EOS exactly when m.Accepting()
//		tok := sample(logits, mask)
//		err = m.Consume(tok)   // error if tok was not allowed; the matcher is unchanged
//	}
//
// Vocab holds each token id's bytes (byte-level BPE: the GPT-2
// bytes_to_unicode mapping undone; SentencePiece with byte fallback: "▁" is
// a space, "<0xNN>" byte NN), the special ids (never allowed in constrained
// text) and the EOS ids (allowed exactly when the text so far is complete).
// NewVocab builds one from raw byte strings. Matcher.Clone copies a matcher
// (a state number), for n > 1 or speculation; Reset starts over. A Grammar's
// automaton grows lazily and is guarded by a mutex, so matchers of one
// Grammar may run on several goroutines (they serialise on it).
//
// # Design
//
// There is one level, not two: every constraint becomes an extended regular
// expression over bytes (concatenation, union, intersection, complement,
// bounded repetition) plus named references, which carry recursion ($ref
// cycles). Expressions are hash-consed in a DAG, and the matcher's state is
// one expression: the Brzozowski derivative of the start by the text so far
// (Brzozowski 1964; Owens, Reppy and Turon, "Regular-expression derivatives
// re-examined", 2009). Derivative states are numbered and their transitions
// cached in a table built lazily, one entry per byte class (bytes no byte set
// of the grammar distinguishes), so after warm-up a step is a table load.
// This is the lexer of llguidance (guidance-ai/llguidance, derivre) applied
// to the whole grammar: JSON needs no separate parser because JSON Schema's
// structure is regular up to $ref recursion, and references expanded by the
// derivative keep the pending closers in the expression itself, like a
// pushdown stack. Left recursion (a $ref reachable from itself without
// consuming a byte) is refused at compile time. A state is dead when its
// expression matches nothing: syntactically, except under intersection or
// complement, where a bounded search for an accepting continuation decides.
//
// FillMask walks a byte trie of the vocabulary (llguidance's toktrie
// layout: nodes in pre-order, each with the index past its subtree),
// carrying the state per depth, and skips a subtree as soon as its prefix
// is dead. It walks walk states, not exact ones (widen.go): a leading run
// X{0,n} with n at least the longest token walked behaves like X* for
// one mask, so all the positions of a long string or format counter
// share one walk state, its successors and its mask. The main trie holds
// the tokens of at most 32 bytes, so runs are widened from 32; the few
// hundred longer tokens are walked apart from states widened for the
// longest token. Inside strings most of the vocabulary is allowed, so a
// bulk path sets all string-safe tokens (whole UTF-8 characters, no
// quote, backslash or control) of at most k characters from a
// precomputed mask when the state lets any k such characters through
// (recognised from the expression, "c{m,n} then a closing quote", or
// probed byte by byte), and the walk skips their subtrees; in a plain
// string run a string-safe token is allowed exactly when it has at most
// n characters, so the walk skips every subtree of string-safe tokens.
// The closure path covers all string-safe tokens from a state whose safe
// characters keep it within a small set of live states (a pattern such
// as "a+"). The loop path sets a whole subtree without stepping when the
// state at its root steps to itself on every byte below (a class run
// such as [A-Za-z0-9._%+-]+ in an e-mail address). A state's mask
// depends on its walk states alone, so masks that cost a long walk are
// kept per Grammar (least recently used first out, 4 MiB at most) and
// copied when a matcher returns to them.
//
// # JSON Schema
//
// Supported (draft 2020-12 keyword names): type (a name or a list,
// including "null"; integer ⊂ number); properties, required,
// additionalProperties (false, true or a schema); items (a schema or
// false), prefixItems, minItems, maxItems, uniqueItems: false; enum, const;
// anyOf; oneOf, compiled as anyOf (an instance matching several branches is
// accepted); allOf, merged into one schema where keywords combine exactly
// (properties, required, type, bounds), else intersected; $ref to local JSON
// Pointers ("#", "#/$defs/x", "#/definitions/x", "#/properties/a", ...),
// recursion included; minLength, maxLength (characters); pattern (an
// ECMA-262 subset, unanchored as the spec says: literals, ., classes with
// ranges and negation, \d \w \s and their negations, escapes \n \t \xHH
// \uHHHH \u{...}, groups (?:) and named groups, | * + ? {n} {n,} {n,m},
// lazy quantifiers, ^ and $ at the ends of top-level alternatives); format
// date-time, date, time, uuid, email, uri, ipv4 as regular expressions;
// minimum, maximum, exclusiveMinimum, exclusiveMaximum on integers and
// numbers (numbers under bounds are written without exponent); multipleOf
// of an integer 1..1000. Annotations (title, description, default,
// examples, $comment, $schema, deprecated, readOnly, writeOnly, content*)
// are ignored; $id only at the root.
//
// Refused, with an error naming the keyword: not, if/then/else,
// patternProperties, propertyNames, minProperties, maxProperties,
// dependentRequired, dependentSchemas, unevaluated*, contains, uniqueItems:
// true, $anchor, $dynamicRef, remote $ref, other formats, non-integer or
// large multipleOf, regex lookaround, backreferences, \b, \p{...}, and any
// unknown keyword. Nothing unsupported yields unconstrained output.
//
// The text follows Python's json.dumps(ensure_ascii=False): strings escape
// exactly '"', '\' and controls (\n \r \t \b \f, others \u00XX), everything
// else raw, so each string has one spelling; enum and const values are
// matched in that spelling with separators ", " and ": ". Properties follow
// the order of the schema's "properties" (required ones must appear,
// optional ones may be skipped); additional properties, where allowed, may
// appear between them but never reuse a listed name. Whitespace (space,
// tab, newline, carriage return) is allowed between tokens and around the
// value, at most Options.MaxWhitespace bytes each time (default 8).
//
// Bounds, so that a random model ends in a bounded number of tokens on a
// bounded schema (all in Options): strings without maxLength at most 256
// characters (none under enum/const); arrays without maxItems at most 16
// items; at most 8 additional properties per gap; values the schema leaves
// open ({}, true, json_object) nested at most 4 deep; integers at most 18
// digits, fractions 20, exponents 3. A grammar builds at most 20000 states
// (Options.MaxStates); FillMask then fails rather than grow further.
//
// CompileRegex matches the whole output (implicitly anchored, as vLLM's
// guided_regex), on raw UTF-8. CompileChoice accepts exactly one of its
// strings.
//
// # Context-free grammars
//
// CompileGrammar takes vLLM's structured_outputs.grammar (guided_grammar):
// the Lark EBNF dialect (lark-parser.readthedocs.io, "Grammar Reference")
// as xgrammar and llguidance users write it. Rules become references and
// terminals regular expressions, so the grammar is one expression like any
// other constraint and the same matcher runs it. The whole output must
// derive from the rule start. Terminals are matched scannerless (as Lark's
// Earley parser with the dynamic lexer): a text is accepted when some split
// into terminals derives from start, which accepts a little more than
// Lark's standard lexer when two terminals can touch (with %ignore WS,
// "SELECTa" for "SELECT" NAME).
//
// Supported: rules "name: a | b" (lowercase; ? and ! prefixes and
// "-> alias" accepted, as they only shape Lark's trees), continued on lines
// starting with |; terminals "NAME: ..." (uppercase, regular: made of
// terminals only); literals "..." with Python escapes and the i suffix;
// /regex/ with the i flag (the ECMA-262 subset above); ranges "a".."z";
// ( ), [ ] and ? (optional), * and +, ~ n and ~ n..m, alternatives |,
// comments // and #;
// %ignore (ignored text may stand before and after every terminal of a
// rule, at most Options.MaxWhitespace bytes each time, so a model cannot
// pad forever; none when it is negative); %import common.X [-> Y] and
// %import common (X, Y) for WS, WS_INLINE, NEWLINE, CR, LF, DIGIT,
// HEXDIGIT, INT, SIGNED_INT, DECIMAL, FLOAT, SIGNED_FLOAT, NUMBER,
// SIGNED_NUMBER, LETTER, LCASE_LETTER, UCASE_LETTER, WORD, CNAME,
// ESCAPED_STRING, SH_COMMENT, CPP_COMMENT, C_COMMENT (the meanings of
// Lark's common.lark). Immediate left recursion (a: a x | y, as in every
// Lark arithmetic grammar) is rewritten to y x*.
//
// Refused, with the line and the feature named: no start rule, indirect
// left recursion (the cycle of rules is named), templates, priorities,
// %declare, %override, %extend and any other directive, imports from other
// modules, regex flags other than i, lookaround, anchors and
// backreferences in regexes, terminals that match the empty string,
// llguidance extensions (special tokens <...>, &, rule attributes [...],
// %json), GBNF ("::=") syntax. Terminals are not bounded for the author:
// an unbounded terminal (WORD, ESCAPED_STRING) lets a model write on
// until it chooses to stop, so bound them with ~ n..m or {n,m} where that
// matters.
//
// The MaskBench protocol (RunBench, Walk, DumpsPython) is here too, for
// tests and cmd/grammarbench.
package grammar
