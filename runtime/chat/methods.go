package chat

import (
	"fmt"
	"strings"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// Python methods callable on values inside templates ("x".strip(),
// d.items(), ...). As in transformers' ImmutableSandboxedEnvironment, no
// method that mutates a list or dict is offered.

func newMethods() exec.Methods {
	str := map[string]exec.Method[string]{
		"strip":      stripMethod("strip", true, true),
		"lstrip":     stripMethod("lstrip", true, false),
		"rstrip":     stripMethod("rstrip", false, true),
		"split":      splitMethod("split", pySplit),
		"rsplit":     splitMethod("rsplit", pyRSplit),
		"replace":    strReplace,
		"startswith": affixMethod("startswith", strings.HasPrefix),
		"endswith":   affixMethod("endswith", strings.HasSuffix),
		"upper":      noArgMethod("upper", pyUpper),
		"lower":      noArgMethod("lower", pyLower),
		"title":      noArgMethod("title", pyTitle),
		"capitalize": noArgMethod("capitalize", pyCapitalize),
		"find":       findMethod("find", false),
		"rfind":      findMethod("rfind", true),
		"count":      strCount,
		"join":       strJoin,
	}
	// The remaining str methods come from gonja as they are.
	for _, name := range []string{"casefold", "center", "expandtabs", "format", "format_map", "isalnum",
		"isalpha", "isascii", "isdecimal", "isdigit", "islower", "isnumeric", "isprintable", "isspace",
		"istitle", "isupper", "ljust", "partition", "removeprefix", "removesuffix", "rjust", "rpartition",
		"splitlines", "swapcase", "zfill"} {
		if m, ok := builtins.Methods.Str.Get(name); ok {
			str[name] = m
		}
	}
	dict := map[string]exec.Method[map[string]any]{
		"keys":   dictView("keys", func(p pair) any { return unwrap(p.key) }),
		"values": dictView("values", func(p pair) any { return unwrap(p.value) }),
		"items":  dictView("items", func(p pair) any { return []any{unwrap(p.key), unwrap(p.value)} }),
		"get":    dictGet,
	}
	list := map[string]exec.Method[[]any]{}
	if m, ok := builtins.Methods.List.Get("copy"); ok {
		list["copy"] = m
	}
	return exec.Methods{
		Bool:  builtins.Methods.Bool,
		Int:   builtins.Methods.Int,
		Float: builtins.Methods.Float,
		Str:   exec.NewMethodSet(str),
		Dict:  exec.NewMethodSet(dict),
		List:  exec.NewMethodSet(list),
	}
}

func stripMethod(name string, left, right bool) exec.Method[string] {
	return func(s string, _ *exec.Value, va *exec.VarArgs) (any, error) {
		a, err := args(name, va, "chars")
		if err != nil {
			return nil, err
		}
		chars, err := optString(name, "chars", a[0])
		if err != nil {
			return nil, err
		}
		return pyStrip(s, chars, left, right), nil
	}
}

func splitMethod(name string, split func(string, *string, int) ([]string, error)) exec.Method[string] {
	return func(s string, _ *exec.Value, va *exec.VarArgs) (any, error) {
		a, err := args(name, va, "sep", "maxsplit")
		if err != nil {
			return nil, err
		}
		sep, err := optString(name, "sep", a[0])
		if err != nil {
			return nil, err
		}
		maxsplit, err := optInt(name, "maxsplit", a[1], -1)
		if err != nil {
			return nil, err
		}
		parts, err := split(s, sep, maxsplit)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(parts))
		for i, p := range parts {
			out[i] = p
		}
		return out, nil
	}
}

func strReplace(s string, _ *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("replace", va, "old", "new", "count")
	if err != nil {
		return nil, err
	}
	if !given(a[0]) || !given(a[1]) || !a[0].IsString() || !a[1].IsString() {
		return nil, fmt.Errorf("replace() takes two string arguments")
	}
	count, err := optInt("replace", "count", a[2], -1)
	if err != nil {
		return nil, err
	}
	return pyReplace(s, a[0].String(), a[1].String(), count), nil
}

// runeSlice applies Python's s[start:end] bounds (negative from the end).
func runeSlice(s string, start, end *exec.Value) string {
	r := []rune(s)
	n := len(r)
	clamp := func(v *exec.Value, def int) int {
		if !given(v) {
			return def
		}
		i := v.Integer()
		if i < 0 {
			i += n
		}
		return min(max(i, 0), n)
	}
	lo, hi := clamp(start, 0), clamp(end, n)
	if lo >= hi {
		return ""
	}
	return string(r[lo:hi])
}

// affixMethod implements startswith/endswith; the affix may be a tuple.
func affixMethod(name string, has func(s, affix string) bool) exec.Method[string] {
	return func(s string, _ *exec.Value, va *exec.VarArgs) (any, error) {
		a, err := args(name, va, "affix", "start", "end")
		if err != nil {
			return nil, err
		}
		if !given(a[0]) {
			return nil, fmt.Errorf("%s() takes at least 1 argument", name)
		}
		if given(a[1]) || given(a[2]) {
			s = runeSlice(s, a[1], a[2])
		}
		affixes := []*exec.Value{a[0]}
		if items, ok := listItems(a[0]); ok {
			affixes = items
		}
		for _, x := range affixes {
			if !x.IsString() {
				return nil, fmt.Errorf("%s() arguments must be str or a tuple of str", name)
			}
			if has(s, x.String()) {
				return true, nil
			}
		}
		return false, nil
	}
}

func noArgMethod(name string, f func(string) string) exec.Method[string] {
	return func(s string, _ *exec.Value, va *exec.VarArgs) (any, error) {
		if _, err := args(name, va); err != nil {
			return nil, err
		}
		return f(s), nil
	}
}

func findMethod(name string, reverse bool) exec.Method[string] {
	return func(s string, _ *exec.Value, va *exec.VarArgs) (any, error) {
		a, err := args(name, va, "sub")
		if err != nil {
			return nil, err
		}
		if !given(a[0]) || !a[0].IsString() {
			return nil, fmt.Errorf("%s() argument must be str", name)
		}
		return pyFind(s, a[0].String(), reverse), nil
	}
}

func strCount(s string, _ *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("count", va, "sub", "start", "end")
	if err != nil {
		return nil, err
	}
	if !given(a[0]) || !a[0].IsString() {
		return nil, fmt.Errorf("count() argument must be str")
	}
	if given(a[1]) || given(a[2]) {
		s = runeSlice(s, a[1], a[2])
	}
	return strings.Count(s, a[0].String()), nil
}

func strJoin(sep string, _ *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("join", va, "iterable")
	if err != nil {
		return nil, err
	}
	if !given(a[0]) {
		return nil, fmt.Errorf("join() takes exactly one argument")
	}
	var items []*exec.Value
	switch {
	case a[0].IsDict():
		for _, p := range dictPairs(a[0]) {
			items = append(items, p.key)
		}
	case a[0].IsString():
		for _, r := range a[0].String() {
			items = append(items, exec.AsValue(string(r)))
		}
	default:
		var ok bool
		if items, ok = listItems(a[0]); !ok {
			return nil, fmt.Errorf("join() argument must be iterable")
		}
	}
	parts := make([]string, len(items))
	for i, it := range items {
		if !it.IsString() {
			return nil, fmt.Errorf("sequence item %d: expected str instance", i)
		}
		parts[i] = it.String()
	}
	return strings.Join(parts, sep), nil
}

func dictView(name string, f func(pair) any) exec.Method[map[string]any] {
	return func(_ map[string]any, self *exec.Value, va *exec.VarArgs) (any, error) {
		if _, err := args(name, va); err != nil {
			return nil, err
		}
		ps := dictPairs(self)
		out := make([]any, len(ps))
		for i, p := range ps {
			out[i] = f(p)
		}
		return out, nil
	}
}

func dictGet(_ map[string]any, self *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("get", va, "key", "default")
	if err != nil {
		return nil, err
	}
	if a[0] == nil {
		return nil, fmt.Errorf("get() takes at least 1 argument")
	}
	for _, p := range dictPairs(self) {
		if p.key.EqualValueTo(a[0]) {
			return unwrap(p.value), nil
		}
	}
	return unwrap(a[1]), nil
}
