package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// The engine sees Python-like values built from these Go types:
//
//	None  -> nil            bool -> bool          int -> int
//	float -> float64        str  -> string        list -> []any
//	dict  -> *exec.Dict (non-empty, insertion-ordered) or map[string]any{} (empty)
//
// Dicts are ordered because Python dicts are: tojson and |items print keys in
// insertion order, so a tools schema must reach the template in request order.
// Empty dicts are plain maps because the engine treats every *exec.Dict as
// truthy, while Python's {} is falsy.

// toEngine converts a caller-supplied Go value to an engine value.
// json.RawMessage keeps the key order and number spelling of its source;
// Go maps are visited in sorted key order and integral floats become ints
// (see goFloat); other types (structs, named types) go through
// encoding/json, which keeps struct field order.
func toEngine(v any) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool, string:
		return x, nil
	case float64:
		return goFloat(x), nil
	case int:
		return x, nil
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		i := reflect.ValueOf(x)
		if i.CanInt() {
			return int(i.Int()), nil
		}
		return int(i.Uint()), nil
	case float32:
		return goFloat(float64(x)), nil
	case json.Number:
		return numberToEngine(x), nil
	case json.RawMessage:
		return decodeOrdered(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			ev, err := toEngine(e)
			if err != nil {
				return nil, err
			}
			out[i] = ev
		}
		return out, nil
	case []string:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = e
		}
		return out, nil
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			ev, err := toEngine(e)
			if err != nil {
				return nil, err
			}
			out[i] = ev
		}
		return out, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := newDict()
		for _, k := range keys {
			ev, err := toEngine(x[k])
			if err != nil {
				return nil, err
			}
			d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(ev)})
		}
		return finishDict(d), nil
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = e
		}
		return toEngine(m)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("chat: cannot pass %T to a template: %w", v, err)
	}
	return decodeOrdered(raw)
}

// goFloat maps an integral float64 to an int: Go code usually holds JSON
// numbers as float64 (encoding/json into any), where Python's json.loads
// would have given int 2, not 2.0. Use json.Number or json.RawMessage to
// keep a number's exact JSON spelling.
func goFloat(f float64) any {
	const exact = 1 << 53
	if f == math.Trunc(f) && f > -exact && f < exact && !(f == 0 && math.Signbit(f)) {
		return int(f)
	}
	return f
}

func newDict() *exec.Dict { return &exec.Dict{Pairs: []*exec.Pair{}} }

// finishDict returns d, or an empty (falsy) map when d has no pairs.
func finishDict(d *exec.Dict) any {
	if len(d.Pairs) == 0 {
		return map[string]any{}
	}
	return d
}

func numberToEngine(n json.Number) any {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil && i >= math.MinInt && i <= math.MaxInt {
			return int(i)
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		// Out of range: Python would keep a big int or inf; inf is the closest we have.
		return f
	}
	return f
}

// decodeOrdered decodes JSON keeping object key order.
func decodeOrdered(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, fmt.Errorf("chat: decoding JSON value: %w", err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("chat: decoding JSON value: trailing data")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '[':
			out := []any{}
			for dec.More() {
				e, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				out = append(out, e)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return out, nil
		case '{':
			d := newDict()
			index := map[string]int{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				e, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				// A repeated key keeps its first position and last value, as in Python.
				if i, ok := index[k]; ok {
					d.Pairs[i].Value = exec.AsValue(e)
					continue
				}
				index[k] = len(d.Pairs)
				d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(e)})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return finishDict(d), nil
		}
		return nil, fmt.Errorf("unexpected delimiter %v", t)
	case json.Number:
		return numberToEngine(t), nil
	default: // string, bool, nil
		return t, nil
	}
}

// dictPairs lists the key/value pairs of an engine dict in Python order:
// insertion order for *exec.Dict, sorted keys for a Go map.
func dictPairs(v *exec.Value) []pair {
	var out []pair
	switch d := v.Interface().(type) {
	case *exec.Dict:
		for _, p := range d.Pairs {
			out = append(out, pair{p.Key, p.Value})
		}
		return out
	case exec.Dict:
		for _, p := range d.Pairs {
			out = append(out, pair{p.Key, p.Value})
		}
		return out
	}
	rv := reflect.ValueOf(v.Interface())
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Map {
		return nil
	}
	keys := rv.MapKeys()
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	for _, k := range keys {
		out = append(out, pair{exec.ToValue(k), exec.ToValue(rv.MapIndex(k))})
	}
	return out
}

type pair struct{ key, value *exec.Value }

// unwrap returns the plain Go value behind an engine value, resolving
// nested *exec.Value wrappers.
func unwrap(v *exec.Value) any {
	if v == nil || v.IsNil() {
		return nil
	}
	x := v.Interface()
	for {
		inner, ok := x.(*exec.Value)
		if !ok {
			return x
		}
		if inner == nil || inner.IsNil() {
			return nil
		}
		x = inner.Interface()
	}
}

// listItems returns the elements of an engine list (or nil if v is not one).
func listItems(v *exec.Value) ([]*exec.Value, bool) {
	if !v.IsList() {
		return nil, false
	}
	var out []*exec.Value
	rv := reflect.ValueOf(unwrap(v))
	for i := 0; i < rv.Len(); i++ {
		out = append(out, exec.ToValue(rv.Index(i)))
	}
	return out, true
}
