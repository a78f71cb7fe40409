package grammar

import (
	"errors"
	"fmt"
)

// Options bound what a constraint lets a model write. Zero fields take the
// defaults below.
type Options struct {
	// MaxWhitespace is the most whitespace bytes (space, tab, newline,
	// carriage return) allowed between two JSON tokens and around the
	// value; negative means none (compact JSON).
	MaxWhitespace int
	// MaxStringLength bounds strings (in characters) whose schema has no
	// maxLength, and the names of additional properties.
	MaxStringLength int
	// MaxItems bounds arrays whose schema has no maxItems.
	MaxItems int
	// MaxAdditionalProperties bounds the members an object may have beyond
	// its listed properties (per gap between listed properties, and in
	// total for objects of unconstrained values).
	MaxAdditionalProperties int
	// MaxDepth bounds the nesting of values the schema leaves
	// unconstrained ({}, true, json_object members).
	MaxDepth int
	// MaxStates bounds the automaton states built lazily per Grammar.
	MaxStates int
	// StrictProperties makes an object schema that lists properties but
	// does not say additionalProperties allow no other members, as
	// xgrammar's strict_mode (vLLM's default) does: a model then writes the
	// listed properties only, as a caller of a structured-output API
	// expects. False follows JSON Schema (other members allowed).
	StrictProperties bool
}

// Defaults for Options.
const (
	DefaultMaxWhitespace           = 8
	DefaultMaxStringLength         = 256
	DefaultMaxItems                = 16
	DefaultMaxAdditionalProperties = 8
	DefaultMaxDepth                = 4
)

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MaxWhitespace, DefaultMaxWhitespace)
	if o.MaxWhitespace < 0 {
		o.MaxWhitespace = 0
	}
	def(&o.MaxStringLength, DefaultMaxStringLength)
	def(&o.MaxItems, DefaultMaxItems)
	def(&o.MaxAdditionalProperties, DefaultMaxAdditionalProperties)
	def(&o.MaxDepth, DefaultMaxDepth)
	def(&o.MaxStates, DefaultMaxStates)
	return o
}

func (o Options) validate() error {
	if o.MaxStringLength < 0 || o.MaxItems < 0 || o.MaxAdditionalProperties < 0 || o.MaxDepth < 0 || o.MaxStates < 0 {
		return errors.New("grammar: negative limit in Options")
	}
	return nil
}

// CompileJSONSchema compiles a JSON Schema (draft 2020-12 keywords; see
// the package documentation for what is supported) for vocab. Any keyword
// it cannot enforce fails compilation with an error naming it.
func CompileJSONSchema(vocab *Vocab, schema []byte, o Options) (*Grammar, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	root, err := ParseValue(schema)
	if err != nil {
		return nil, fmt.Errorf("grammar: schema is not JSON: %w", err)
	}
	b := newBuilder(defaultMaxNodes)
	c := newSchemaCompiler(b, o, root)
	e, err := c.compile(root, "")
	if err != nil {
		return nil, err
	}
	return newGrammar(vocab, b, c.document(e), o.MaxStates)
}

// CompileJSONObject compiles OpenAI's response_format {"type":
// "json_object"}: any JSON object (within the Options bounds).
func CompileJSONObject(vocab *Vocab, o Options) (*Grammar, error) {
	return CompileJSONSchema(vocab, []byte(`{"type": "object"}`), o)
}

// CompileRegex compiles a regular expression that the whole output must
// match (as vLLM's guided_regex: implicitly anchored at both ends). The
// syntax is the ECMA-262 subset described in the package documentation.
func CompileRegex(vocab *Vocab, re string, o Options) (*Grammar, error) {
	o = o.withDefaults()
	ast, err := parseRegex(re)
	if err != nil {
		return nil, fmt.Errorf("grammar: %w", err)
	}
	b := newBuilder(defaultMaxNodes)
	e, err := b.lowerFull(ast, rawUTF8)
	if err != nil {
		return nil, fmt.Errorf("grammar: regex %q: %w", re, err)
	}
	return newGrammar(vocab, b, e, o.MaxStates)
}

// CompileChoice compiles a choice list: the output must be exactly one of
// choices.
func CompileChoice(vocab *Vocab, choices []string, o Options) (*Grammar, error) {
	o = o.withDefaults()
	if len(choices) == 0 {
		return nil, errors.New("grammar: empty choice list")
	}
	b := newBuilder(defaultMaxNodes)
	alts := make([]expr, len(choices))
	for i, s := range choices {
		alts[i] = b.lit(s)
	}
	return newGrammar(vocab, b, b.or(alts...), o.MaxStates)
}
