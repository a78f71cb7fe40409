package openai

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/parrot-llm/parrot/runtime/grammar"
	"github.com/parrot-llm/parrot/runtime/llama"
)

// structuredFields are the request fields that constrain the output, on
// both endpoints: OpenAI's response_format, and vLLM's structured_outputs
// (and its older guided_* names).
type structuredFields struct {
	ResponseFormat    json.RawMessage    `json:"response_format"`
	StructuredOutputs *structuredOutputs `json:"structured_outputs"`
	GuidedJSON        json.RawMessage    `json:"guided_json"`
	GuidedRegex       *string            `json:"guided_regex"`
	GuidedChoice      []string           `json:"guided_choice"`
	GuidedGrammar     *string            `json:"guided_grammar"`
}

// structuredOutputs is vLLM's structured_outputs request field.
type structuredOutputs struct {
	JSON       json.RawMessage `json:"json"`
	Regex      *string         `json:"regex"`
	Choice     []string        `json:"choice"`
	Grammar    *string         `json:"grammar"`
	JSONObject *bool           `json:"json_object"`
}

// constraintSpec is what a request asks the output to match: one of a JSON
// schema, any JSON object, a regular expression, a choice list or a Lark
// grammar.
type constraintSpec struct {
	param      string // the request field, for errors
	schema     []byte
	jsonObject bool
	regex      *string
	choice     []string
	grammar    *string // Lark EBNF
}

// constraint reads the structured-output fields; nil when there are none.
func (f *structuredFields) constraint() (*constraintSpec, error) {
	var specs []*constraintSpec
	add := func(s *constraintSpec) { specs = append(specs, s) }
	if !isNull(f.ResponseFormat) {
		s, err := parseResponseFormat(f.ResponseFormat)
		if err != nil {
			return nil, err
		}
		if s != nil {
			add(s)
		}
	}
	if so := f.StructuredOutputs; so != nil {
		if !isNull(so.JSON) {
			add(jsonSpec("structured_outputs.json", so.JSON))
		}
		if so.Regex != nil {
			add(&constraintSpec{param: "structured_outputs.regex", regex: so.Regex})
		}
		if so.Choice != nil {
			add(&constraintSpec{param: "structured_outputs.choice", choice: so.Choice})
		}
		if so.JSONObject != nil && *so.JSONObject {
			add(&constraintSpec{param: "structured_outputs.json_object", jsonObject: true})
		}
		if so.Grammar != nil {
			add(&constraintSpec{param: "structured_outputs.grammar", grammar: so.Grammar})
		}
	}
	if !isNull(f.GuidedJSON) {
		add(jsonSpec("guided_json", f.GuidedJSON))
	}
	if f.GuidedRegex != nil {
		add(&constraintSpec{param: "guided_regex", regex: f.GuidedRegex})
	}
	if f.GuidedChoice != nil {
		add(&constraintSpec{param: "guided_choice", choice: f.GuidedChoice})
	}
	if f.GuidedGrammar != nil {
		add(&constraintSpec{param: "guided_grammar", grammar: f.GuidedGrammar})
	}
	switch len(specs) {
	case 0:
		return nil, nil
	case 1:
		return specs[0], nil
	}
	return nil, perr(specs[1].param, "Give one output constraint: '%s' and '%s' are both set.", specs[0].param, specs[1].param)
}

// jsonSpec is a schema given as a JSON object, or as a string holding one
// (vLLM accepts both).
func jsonSpec(param string, raw json.RawMessage) *constraintSpec {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		raw = json.RawMessage(s)
	}
	return &constraintSpec{param: param, schema: raw}
}

// parseResponseFormat reads OpenAI's response_format: {"type": "text"},
// {"type": "json_object"} or {"type": "json_schema", "json_schema":
// {"name", "schema", "strict"}}.
func parseResponseFormat(raw json.RawMessage) (*constraintSpec, error) {
	var rf struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Name   string          `json:"name"`
			Schema json.RawMessage `json:"schema"`
			Strict *bool           `json:"strict"`
		} `json:"json_schema"`
	}
	if err := json.Unmarshal(raw, &rf); err != nil {
		return nil, perr("response_format", "'response_format' must be an object with a 'type'.")
	}
	switch rf.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return &constraintSpec{param: "response_format", jsonObject: true}, nil
	case "json_schema":
		if rf.JSONSchema == nil {
			return nil, perr("response_format.json_schema", "'response_format.json_schema' is required with type json_schema.")
		}
		schema := rf.JSONSchema.Schema
		if isNull(schema) {
			schema = json.RawMessage(`{}`)
		}
		return &constraintSpec{param: "response_format.json_schema.schema", schema: schema}, nil
	}
	return nil, perr("response_format.type", "Response format %q is not supported: use text, json_object or json_schema.", rf.Type)
}

// vocabularies builds each served model's grammar vocabulary once, on the
// first structured request (tokenizer.json read again: a few MB, once).
type vocabularies struct {
	mu sync.Mutex
	m  map[*llama.Loaded]*vocabEntry
}

type vocabEntry struct {
	once  sync.Once
	vocab *grammar.Vocab
	err   error
}

func (vs *vocabularies) get(l *llama.Loaded) (*grammar.Vocab, error) {
	vs.mu.Lock()
	if vs.m == nil {
		vs.m = map[*llama.Loaded]*vocabEntry{}
	}
	e := vs.m[l]
	if e == nil {
		e = &vocabEntry{}
		vs.m[l] = e
	}
	vs.mu.Unlock()
	e.once.Do(func() { e.vocab, e.err = grammar.LoadVocab(l.Dir) })
	return e.vocab, e.err
}

// compile turns a constraint into a grammar for the model's vocabulary;
// an unsupported schema is the client's 400, naming what is unsupported.
func (s *Server) compile(l *llama.Loaded, spec *constraintSpec) (*grammar.Grammar, *APIError) {
	vocab, err := s.vocabs.get(l)
	if err != nil {
		s.log.Error("building the grammar vocabulary", "err", err)
		return nil, badRequest(spec.param, "Structured outputs are not available for this model's tokenizer.")
	}
	var g *grammar.Grammar
	o := grammar.Options{StrictProperties: true} // as vLLM (xgrammar's strict mode): listed properties only
	switch {
	case spec.jsonObject:
		g, err = grammar.CompileJSONObject(vocab, o)
	case spec.regex != nil:
		g, err = grammar.CompileRegex(vocab, *spec.regex, o)
	case spec.grammar != nil:
		g, err = grammar.CompileGrammar(vocab, *spec.grammar, o)
	case spec.choice != nil:
		if len(spec.choice) == 0 {
			return nil, badRequest(spec.param, "'%s' must list at least one choice.", spec.param)
		}
		g, err = grammar.CompileChoice(vocab, spec.choice, o)
	default:
		if !json.Valid(spec.schema) || !bytes.HasPrefix(bytes.TrimSpace(spec.schema), []byte("{")) && !bytes.Equal(bytes.TrimSpace(spec.schema), []byte("true")) {
			return nil, badRequest(spec.param, "'%s' must be a JSON Schema object.", spec.param)
		}
		g, err = grammar.CompileJSONSchema(vocab, spec.schema, o)
	}
	if err != nil {
		return nil, badRequest(spec.param, "The output constraint cannot be enforced: %v.", err)
	}
	return g, nil
}
