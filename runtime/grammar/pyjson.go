package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"

	"github.com/parrot-llm/parrot/internal/pyjson"
)

// Value is a decoded JSON value that keeps the order of object members, as
// schemas (property order) and MaskBench instances need.
type Value struct {
	Kind   ValueKind
	Bool   bool
	Number string // the literal as written
	String string
	Items  []*Value
	Keys   []string // object member names, in order
	Vals   []*Value // object member values, parallel to Keys
}

// ValueKind is the JSON type of a Value.
type ValueKind uint8

const (
	Null ValueKind = iota
	Bool
	Number
	String
	Array
	Object
)

// Get is the value of object member key, or nil.
func (v *Value) Get(key string) *Value {
	if v == nil || v.Kind != Object {
		return nil
	}
	for i, k := range v.Keys {
		if k == key {
			return v.Vals[i]
		}
	}
	return nil
}

// ParseValue decodes one JSON text, keeping member order.
func ParseValue(data []byte) (*Value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("grammar: trailing data after JSON value")
	}
	return v, nil
}

func parseValue(dec *json.Decoder) (*Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &Value{Kind: Null}, nil
	case bool:
		return &Value{Kind: Bool, Bool: t}, nil
	case json.Number:
		return &Value{Kind: Number, Number: string(t)}, nil
	case string:
		return &Value{Kind: String, String: t}, nil
	case json.Delim:
		switch t {
		case '[':
			v := &Value{Kind: Array}
			for dec.More() {
				item, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				v.Items = append(v.Items, item)
			}
			_, err := dec.Token()
			return v, err
		case '{':
			v := &Value{Kind: Object}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				val, err := parseValue(dec)
				if err != nil {
					return nil, err
				}
				v.Keys = append(v.Keys, key)
				v.Vals = append(v.Vals, val)
			}
			_, err := dec.Token()
			return v, err
		}
	}
	return nil, fmt.Errorf("grammar: unexpected JSON token %v", tok)
}

// DumpsPython writes v as Python's json.dumps(v, ensure_ascii=False) does
// (separators ", " and ": ", Lib/json/encoder.py), after json.loads: an
// integer literal stays an integer, any other number becomes a float and
// is written as repr(float). The writing is internal/pyjson's; this only
// turns v into what Python's json.loads would have made of the text.
func DumpsPython(v *Value) (string, error) {
	x, err := pyValue(v)
	if err != nil {
		return "", err
	}
	b, err := pyjson.Marshal(x, pyjson.Options{})
	if err != nil {
		return "", fmt.Errorf("grammar: %w", err)
	}
	return string(b), nil
}

// pyValue is v as pyjson types: objects as pyjson.Object in member order,
// integer literals as json.Number of their int() value, other numbers as
// float64.
func pyValue(v *Value) (any, error) {
	switch v.Kind {
	case Null:
		return nil, nil
	case Bool:
		return v.Bool, nil
	case Number:
		return pyNumber(v.Number)
	case String:
		return v.String, nil
	case Array:
		items := make([]any, len(v.Items))
		for i, it := range v.Items {
			x, err := pyValue(it)
			if err != nil {
				return nil, err
			}
			items[i] = x
		}
		return items, nil
	case Object:
		obj := make(pyjson.Object, len(v.Keys))
		for i, k := range v.Keys {
			x, err := pyValue(v.Vals[i])
			if err != nil {
				return nil, err
			}
			obj[i] = pyjson.Member{Key: k, Value: x}
		}
		return obj, nil
	}
	return nil, fmt.Errorf("grammar: bad value kind %d", v.Kind)
}

// pyNumber is what Python's json.loads makes of a JSON number literal: an
// int (arbitrary size, written as int() prints it, so "-0" is 0) or a float.
// A literal that overflows a float is refused, where Python would write
// Infinity, which is not JSON.
func pyNumber(lit string) (any, error) {
	if !strings.ContainsAny(lit, ".eE") {
		n, ok := new(big.Int).SetString(lit, 10)
		if !ok {
			return nil, fmt.Errorf("grammar: bad integer %q", lit)
		}
		return json.Number(n.String()), nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if math.IsInf(f, 0) {
		return nil, fmt.Errorf("grammar: number %q overflows a float (Python writes Infinity)", lit)
	}
	if err != nil {
		return nil, fmt.Errorf("grammar: bad number %q: %w", lit, err)
	}
	return f, nil
}

// pyString is a JSON string literal as json.dumps(ensure_ascii=False)
// writes it: only '"', '\' and controls below U+0020 are escaped.
func pyString(s string) string {
	b, _ := pyjson.Marshal(s, pyjson.Options{}) // a string never fails
	return string(b)
}

// jsonEscape is how json.dumps writes c, one of the characters it escapes
// (Lib/json/encoder.py ESCAPE_DCT).
func jsonEscape(c rune) string {
	s := pyString(string(c))
	return s[1 : len(s)-1]
}
