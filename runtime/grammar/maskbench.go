package grammar

import (
	"encoding/json"
	"fmt"
	"time"
)

// This file is MaskBench's protocol (guidance-ai/jsonschemabench, the
// "maskbench" harness): a schema file {"schema": ..., "tests": [{"description",
// "valid", "data"}]}; each instance is serialised as json.dumps(data,
// ensure_ascii=False), tokenized without special tokens, and walked token by
// token through the matcher. A valid instance must have every token allowed
// and end accepting (EOS allowed); an invalid one must meet a disallowed
// token or end non-accepting.

// Encoder tokenizes text (runtime/tokenizer.Tokenizer is one).
type Encoder interface {
	Encode(text string, addSpecial bool) ([]int32, error)
}

// MaskMatcher is what the walk needs of a matcher (Matcher is one).
type MaskMatcher interface {
	FillMask(mask []uint64) error
	Consume(token int32) error
	Accepting() bool
}

// Walk runs tokens through m as a sampler would: before each token the
// mask must allow it, then Consume must take it. It returns the index of
// the first refused token (len(tokens) if none), whether the end is
// accepting with EOS allowed, and the time of each mask+consume step.
// err is an inconsistency between FillMask and Consume, or a matcher error.
func Walk(m MaskMatcher, v *Vocab, tokens []int32, times []time.Duration) (refused int, accepted bool, _ []time.Duration, err error) {
	mask := make([]uint64, (v.Size()+63)/64)
	for i, t := range tokens {
		start := time.Now()
		if err := m.FillMask(mask); err != nil {
			return i, false, times, err
		}
		allowed := t >= 0 && int(t) < v.Size() && mask[t>>6]&(1<<(t&63)) != 0
		cerr := m.Consume(t)
		times = append(times, time.Since(start))
		if allowed != (cerr == nil) {
			return i, false, times, fmt.Errorf("token %d (%q): mask says allowed=%v but Consume says %v", t, v.TokenBytes(t), allowed, cerr)
		}
		if !allowed {
			return i, false, times, nil
		}
	}
	if err := m.FillMask(mask); err != nil {
		return len(tokens), false, times, err
	}
	eosOK := len(v.eos) > 0
	for _, id := range v.eos {
		eosOK = eosOK && mask[id>>6]&(1<<(id&63)) != 0
	}
	if eosOK != m.Accepting() {
		return len(tokens), false, times, fmt.Errorf("EOS allowed=%v but Accepting()=%v", eosOK, m.Accepting())
	}
	return len(tokens), eosOK, times, nil
}

// BenchFile is one MaskBench schema file.
type BenchFile struct {
	Schema json.RawMessage `json:"schema"`
	Tests  []struct {
		Description string          `json:"description"`
		Valid       bool            `json:"valid"`
		Data        json.RawMessage `json:"data"`
	} `json:"tests"`
}

// Statuses of a schema file, as MaskBench reports them.
const (
	StatusPassing           = "passing"
	StatusCompileError      = "compile_error"
	StatusValidationError   = "validation_error"   // a valid instance was refused
	StatusInvalidationError = "invalidation_error" // an invalid instance was accepted
)

// BenchResult is the outcome of one schema file.
type BenchResult struct {
	Status string
	Error  string
	TTFM   time.Duration   // compile + first FillMask
	Tokens int             // tokens walked over all instances
	TBM    []time.Duration // each FillMask+Consume
}

// Compiler turns a schema into a matcher factory.
type Compiler func(schema []byte) (func() MaskMatcher, error)

// SchemaCompiler is the Compiler of CompileJSONSchema.
func SchemaCompiler(v *Vocab, o Options) Compiler {
	return func(schema []byte) (func() MaskMatcher, error) {
		g, err := CompileJSONSchema(v, schema, o)
		if err != nil {
			return nil, err
		}
		return func() MaskMatcher { return g.NewMatcher() }, nil
	}
}

// RunBench runs one MaskBench file's tests.
func RunBench(f *BenchFile, v *Vocab, enc Encoder, compile Compiler) BenchResult {
	var r BenchResult
	start := time.Now()
	newM, err := compile(f.Schema)
	if err != nil {
		return BenchResult{Status: StatusCompileError, Error: err.Error()}
	}
	first := newM()
	mask := make([]uint64, (v.Size()+63)/64)
	if err := first.FillMask(mask); err != nil {
		return BenchResult{Status: StatusCompileError, Error: err.Error()}
	}
	r.TTFM = time.Since(start)
	r.Status = StatusPassing
	fail := func(status, msg string) {
		if r.Status == StatusPassing || (r.Status == StatusInvalidationError && status == StatusValidationError) {
			r.Status, r.Error = status, msg
		}
	}
	for i, t := range f.Tests {
		val, err := ParseValue(t.Data)
		if err != nil {
			fail(StatusValidationError, fmt.Sprintf("test %d (%s): data: %v", i, t.Description, err))
			continue
		}
		text, err := DumpsPython(val)
		if err != nil {
			fail(StatusValidationError, fmt.Sprintf("test %d (%s): %v", i, t.Description, err))
			continue
		}
		tokens, err := enc.Encode(text, false)
		if err != nil {
			fail(StatusValidationError, fmt.Sprintf("test %d (%s): tokenize: %v", i, t.Description, err))
			continue
		}
		m := first
		if i > 0 {
			m = newM()
		}
		refused, accepted, times, err := Walk(m, v, tokens, r.TBM)
		r.TBM = times
		r.Tokens += min(refused+1, len(tokens))
		switch {
		case err != nil:
			fail(StatusValidationError, fmt.Sprintf("test %d (%s): %v", i, t.Description, err))
		case t.Valid && refused < len(tokens):
			fail(StatusValidationError, fmt.Sprintf("test %d (%s): valid instance %s: token %d (%q) refused after %q",
				i, t.Description, text, refused, v.TokenBytes(tokens[refused]), prefixBytes(v, tokens[:refused])))
		case t.Valid && !accepted:
			fail(StatusValidationError, fmt.Sprintf("test %d (%s): valid instance %s: not accepting at the end", i, t.Description, text))
		case !t.Valid && accepted:
			fail(StatusInvalidationError, fmt.Sprintf("test %d (%s): invalid instance %s accepted", i, t.Description, text))
		}
	}
	return r
}

func prefixBytes(v *Vocab, tokens []int32) string {
	var b []byte
	for _, t := range tokens {
		b = append(b, v.TokenBytes(t)...)
	}
	return string(b)
}
