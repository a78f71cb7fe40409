package chat

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/exec"
)

// Filters that replace gonja's where it differs from Jinja2 or Python.

func newFilters() *exec.FilterSet {
	f := exec.NewFilterSet(map[string]exec.FilterFunction{})
	f.Update(builtins.Filters)
	replace := map[string]exec.FilterFunction{
		"tojson":     filter(filterToJSON),
		"items":      filter(filterItems),
		"dictsort":   filter(filterDictSort),
		"trim":       filter(filterTrim),
		"reverse":    filter(filterReverse),
		"round":      filter(filterRound),
		"upper":      filter(stringFilter("upper", pyUpper)),
		"lower":      filter(stringFilter("lower", pyLower)),
		"capitalize": filter(stringFilter("capitalize", pyCapitalize)),
		"title":      filter(stringFilter("title", jinjaTitle)),
	}
	for name, fn := range replace {
		_ = f.Replace(name, fn)
	}
	return f
}

// filterToJSON is transformers' tojson:
// json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
func filterToJSON(in *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("tojson", va, "ensure_ascii", "indent", "separators", "sort_keys")
	if err != nil {
		return nil, err
	}
	var indent *string
	if given(a[1]) {
		var s string
		switch {
		case a[1].IsInteger():
			s = strings.Repeat(" ", max(a[1].Integer(), 0))
		case a[1].IsString():
			s = a[1].String()
		default:
			return nil, fmt.Errorf("tojson(): indent must be an int or a string")
		}
		indent = &s
	}
	var seps []string
	if given(a[2]) {
		items, ok := listItems(a[2])
		if !ok || len(items) != 2 || !items[0].IsString() || !items[1].IsString() {
			return nil, fmt.Errorf("tojson(): separators must be a pair of strings")
		}
		seps = []string{items[0].String(), items[1].String()}
	}
	o := newJSONOpts(given(a[0]) && a[0].IsTrue(), indent, seps, given(a[3]) && a[3].IsTrue())
	s, err := pyDumps(in, o)
	if err != nil {
		return nil, err
	}
	return exec.AsSafeValue(s), nil
}

// filterItems keeps dict insertion order.
func filterItems(in *exec.Value, va *exec.VarArgs) (any, error) {
	if _, err := args("items", va); err != nil {
		return nil, err
	}
	if in.IsNil() {
		return []any{}, nil
	}
	if !in.IsDict() {
		return nil, fmt.Errorf("items(): can only get item pairs from a mapping")
	}
	return pairList(dictPairs(in)), nil
}

func pairList(ps []pair) []any {
	out := make([]any, len(ps))
	for i, p := range ps {
		out[i] = []any{unwrap(p.key), unwrap(p.value)}
	}
	return out
}

// filterDictSort sorts by key (or value), case-insensitively by default.
func filterDictSort(in *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("dictsort", va, "case_sensitive", "by", "reverse")
	if err != nil {
		return nil, err
	}
	if !in.IsDict() {
		return nil, fmt.Errorf("dictsort(): can only sort a mapping")
	}
	caseSensitive := given(a[0]) && a[0].IsTrue()
	byValue := given(a[1]) && a[1].String() == "value"
	if given(a[1]) && !byValue && a[1].String() != "key" {
		return nil, fmt.Errorf("dictsort(): 'by' must be 'key' or 'value'")
	}
	ps := dictPairs(in)
	sortKey := func(p pair) *exec.Value {
		if byValue {
			return p.value
		}
		return p.key
	}
	sort.SliceStable(ps, func(i, j int) bool {
		return lessValues(sortKey(ps[i]), sortKey(ps[j]), caseSensitive)
	})
	if given(a[2]) && a[2].IsTrue() {
		for i, j := 0, len(ps)-1; i < j; i, j = i+1, j-1 {
			ps[i], ps[j] = ps[j], ps[i]
		}
	}
	return pairList(ps), nil
}

func lessValues(x, y *exec.Value, caseSensitive bool) bool {
	if x.IsNumber() && y.IsNumber() {
		return x.Float() < y.Float()
	}
	xs, ys := x.String(), y.String()
	if !caseSensitive {
		xs, ys = pyLower(xs), pyLower(ys)
	}
	return xs < ys
}

func filterTrim(in *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("trim", va, "chars")
	if err != nil {
		return nil, err
	}
	chars, err := optString("trim", "chars", a[0])
	if err != nil {
		return nil, err
	}
	return pyStrip(in.String(), chars, true, true), nil
}

func filterReverse(in *exec.Value, va *exec.VarArgs) (any, error) {
	if _, err := args("reverse", va); err != nil {
		return nil, err
	}
	if in.IsString() {
		return reverseString(in.String()), nil
	}
	if in.IsDict() {
		ps := dictPairs(in)
		out := make([]any, len(ps))
		for i, p := range ps {
			out[len(ps)-1-i] = unwrap(p.key)
		}
		return out, nil
	}
	items, ok := listItems(in)
	if !ok {
		return nil, fmt.Errorf("reverse(): argument must be iterable")
	}
	out := make([]any, len(items))
	for i, it := range items {
		out[len(items)-1-i] = unwrap(it)
	}
	return out, nil
}

// filterRound is Jinja's round(value, precision=0, method='common'), where
// 'common' is Python's round (ties to even on the exact binary value).
func filterRound(in *exec.Value, va *exec.VarArgs) (any, error) {
	a, err := args("round", va, "precision", "method")
	if err != nil {
		return nil, err
	}
	prec, err := optInt("round", "precision", a[0], 0)
	if err != nil {
		return nil, err
	}
	method := "common"
	if given(a[1]) {
		method = a[1].String()
	}
	if !in.IsNumber() {
		return nil, fmt.Errorf("round(): value must be a number")
	}
	x := in.Float()
	scale := math.Pow(10, float64(prec))
	switch method {
	case "common":
		if prec >= 0 {
			// FormatFloat rounds the exact binary value correctly, ties to even.
			r, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', prec, 64), 64)
			return r, nil
		}
		return math.RoundToEven(x*scale) / scale, nil
	case "ceil":
		return math.Ceil(x*scale) / scale, nil
	case "floor":
		return math.Floor(x*scale) / scale, nil
	}
	return nil, fmt.Errorf("round(): method must be 'common', 'ceil' or 'floor'")
}

func stringFilter(name string, f func(string) string) func(*exec.Value, *exec.VarArgs) (any, error) {
	return func(in *exec.Value, va *exec.VarArgs) (any, error) {
		if _, err := args(name, va); err != nil {
			return nil, err
		}
		return f(in.String()), nil
	}
}
