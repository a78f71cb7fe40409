package chat

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nikolalohinski/gonja/v2/builtins"
	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// This file adapts gonja to the environment transformers renders chat
// templates in: ImmutableSandboxedEnvironment(trim_blocks=True,
// lstrip_blocks=True, extensions=[loopcontrols]) plus the tojson filter,
// raise_exception and strftime_now globals. gonja's own versions of the
// filters, tests and str methods that differ from Python are replaced here.

const rootName = "chat_template"

// newEngineConfig returns the lexer/parser settings Hugging Face uses.
func newEngineConfig() *config.Config {
	c := config.New()
	c.TrimBlocks = true
	c.LeftStripBlocks = true
	c.KeepTrailingNewline = false
	return c
}

// sourceLoader serves the one template source and refuses every other
// name, so {% include %} and friends cannot read files.
type sourceLoader struct{ source string }

func (l sourceLoader) Read(path string) (io.Reader, error) {
	if path != rootName {
		return nil, fmt.Errorf("template %q not found (chat templates cannot load other templates)", path)
	}
	return strings.NewReader(l.source), nil
}

func (l sourceLoader) Resolve(path string) (string, error) { return path, nil }

func (l sourceLoader) Inherit(string) (loaders.Loader, error) { return l, nil }

// newEnvironment builds a fresh engine environment. gonja's package-level
// sets are copied or only read, never modified.
func newEnvironment() *exec.Environment {
	return &exec.Environment{
		Context:           newGlobals(),
		Filters:           newFilters(),
		Tests:             newTests(),
		ControlStructures: newControlStructures(),
		Methods:           newMethods(),
	}
}

// newGlobals holds Jinja's default globals, minus gettext and lipsum.
func newGlobals() *exec.Context {
	g := map[string]any{"range": pyRange}
	for _, name := range []string{"cycler", "dict", "joiner", "namespace"} {
		if fn, ok := builtins.GlobalFunctions.Get(name); ok {
			g[name] = fn
		}
	}
	return exec.NewContext(g)
}

// pyRange returns a list: gonja's range streams through a goroutine that
// leaks when a loop breaks early.
func pyRange(va *exec.VarArgs) (any, error) {
	if len(va.KwArgs) > 0 {
		return nil, errors.New("range() takes no keyword arguments")
	}
	var n [3]int
	for i, a := range va.Args {
		if i >= 3 || !a.IsInteger() {
			return nil, errors.New("range() takes 1 to 3 integer arguments")
		}
		n[i] = a.Integer()
	}
	start, stop, step := 0, 0, 1
	switch len(va.Args) {
	case 1:
		stop = n[0]
	case 2:
		start, stop = n[0], n[1]
	case 3:
		start, stop, step = n[0], n[1], n[2]
	default:
		return nil, errors.New("range() takes 1 to 3 integer arguments")
	}
	if step == 0 {
		return nil, errors.New("range() arg 3 must not be zero")
	}
	count := 0
	if step > 0 && stop > start {
		count = (stop - start + step - 1) / step
	} else if step < 0 && stop < start {
		count = (start - stop - step - 1) / -step
	}
	const maxRange = 1 << 20 // a template has no business looping longer than this
	if count > maxRange {
		return nil, fmt.Errorf("range() of %d items is too long", count)
	}
	out := make([]any, count)
	for i := range out {
		out[i] = start + i*step
	}
	return out, nil
}

func newControlStructures() *exec.ControlStructureSet {
	m := map[string]parser.ControlStructureParser{"generation": generationParser, "macro": boundedMacroParser}
	// Left out: "do" and "trans" (Jinja extensions transformers does not
	// load) and include/import/from/extends (transformers compiles the
	// template without a loader, so they cannot work there either).
	for _, name := range []string{"autoescape", "block", "break", "call", "continue", "filter", "for", "if",
		"raw", "set", "with"} {
		if p, ok := builtins.ControlStructures.Get(name); ok {
			m[name] = p
		}
	}
	return exec.NewControlStructureSet(m)
}

// maxMacroDepth bounds macro recursion: unbounded recursion would overflow
// the goroutine stack, which Go cannot recover from (Python raises
// RecursionError at a similar depth).
const maxMacroDepth = 200

// boundedMacro is gonja's {% macro %} with a recursion limit.
type boundedMacro struct {
	*controlStructures.MacroControlStructure
}

func (m boundedMacro) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	macro, err := exec.MacroNodeToFunc(m.Macro, r)
	if err != nil {
		return fmt.Errorf("macro %s: %w", m.Name, err)
	}
	depth := 0 // one render runs on one goroutine
	r.Environment.Context.Set(m.Name, func(va *exec.VarArgs) *exec.Value {
		if depth >= maxMacroDepth {
			return exec.AsValue(fmt.Errorf("macro %s: recursion deeper than %d calls", m.Name, maxMacroDepth))
		}
		depth++
		defer func() { depth-- }()
		return macro(va)
	})
	return nil
}

func boundedMacroParser(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	parse, ok := builtins.ControlStructures.Get("macro")
	if !ok {
		return nil, errors.New("macro statement unavailable")
	}
	cs, err := parse(p, args)
	if err != nil {
		return nil, err
	}
	mcs, ok := cs.(*controlStructures.MacroControlStructure)
	if !ok {
		return nil, fmt.Errorf("unexpected macro node %T", cs)
	}
	return boundedMacro{mcs}, nil
}

// generationBlock is transformers' {% generation %}...{% endgeneration %}
// (AssistantTracker), which marks assistant tokens for training masks; for
// rendering it outputs its body unchanged.
type generationBlock struct {
	location *tokens.Token
	wrapper  *nodes.Wrapper
}

func (g *generationBlock) Position() *tokens.Token { return g.location }
func (g *generationBlock) String() string {
	return fmt.Sprintf("GenerationControlStructure(Line=%d Col=%d)", g.location.Line, g.location.Col)
}
func (g *generationBlock) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	return r.Inherit().ExecuteWrapper(g.wrapper)
}

func generationParser(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	location := p.Current()
	if !args.End() {
		return nil, args.Error("generation takes no arguments", args.Current())
	}
	wrapper, endargs, err := p.WrapUntil("endgeneration")
	if err != nil {
		return nil, err
	}
	if !endargs.End() {
		return nil, endargs.Error("endgeneration takes no arguments", endargs.Current())
	}
	return &generationBlock{location: location, wrapper: wrapper}, nil
}

func newTests() *exec.TestSet {
	t := exec.NewTestSet(map[string]exec.TestFunction{})
	t.Update(builtins.Tests)
	// Python: str, list, tuple and dict are all sequences (they have len and []).
	_ = t.Replace("sequence", func(_ *exec.Context, in *exec.Value, _ *exec.VarArgs) (bool, error) {
		return in.IsString() || in.IsList() || in.IsDict(), nil
	})
	return t
}

// args binds positional and keyword arguments to names, Python-style.
// Missing arguments are nil.
func args(fn string, va *exec.VarArgs, names ...string) ([]*exec.Value, error) {
	out := make([]*exec.Value, len(names))
	if len(va.Args) > len(names) {
		return nil, fmt.Errorf("%s() takes at most %d arguments (%d given)", fn, len(names), len(va.Args))
	}
	copy(out, va.Args)
	for k, v := range va.KwArgs {
		i := indexOf(names, k)
		if i < 0 {
			return nil, fmt.Errorf("%s() got an unexpected keyword argument '%s'", fn, k)
		}
		if out[i] != nil {
			return nil, fmt.Errorf("%s() got multiple values for argument '%s'", fn, k)
		}
		out[i] = v
	}
	return out, nil
}

func indexOf(names []string, k string) int {
	for i, n := range names {
		if n == k {
			return i
		}
	}
	return -1
}

func given(v *exec.Value) bool { return v != nil && !v.IsNil() }

// optString returns nil for a missing/None argument, else its string.
func optString(fn, name string, v *exec.Value) (*string, error) {
	if !given(v) {
		return nil, nil
	}
	if !v.IsString() {
		return nil, fmt.Errorf("%s(): %s must be a string, not %s", fn, name, v.String())
	}
	s := v.String()
	return &s, nil
}

func optInt(fn, name string, v *exec.Value, def int) (int, error) {
	if !given(v) {
		return def, nil
	}
	if !v.IsInteger() {
		return 0, fmt.Errorf("%s(): %s must be an integer, not %s", fn, name, v.String())
	}
	return v.Integer(), nil
}

// filter adapts a Go function with an error result to gonja's filter type.
func filter(f func(in *exec.Value, va *exec.VarArgs) (any, error)) exec.FilterFunction {
	return func(_ *exec.Evaluator, in *exec.Value, va *exec.VarArgs) *exec.Value {
		if in.IsError() {
			return in
		}
		out, err := f(in, va)
		if err != nil {
			return exec.AsValue(err)
		}
		if v, ok := out.(*exec.Value); ok {
			return v
		}
		return exec.AsValue(out)
	}
}
