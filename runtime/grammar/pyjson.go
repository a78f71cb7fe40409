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
// is written as repr(float).
func DumpsPython(v *Value) (string, error) {
	var sb strings.Builder
	if err := dumpPython(&sb, v); err != nil {
		return "", err
	}
	return sb.String(), nil
}

func dumpPython(sb *strings.Builder, v *Value) error {
	switch v.Kind {
	case Null:
		sb.WriteString("null")
	case Bool:
		if v.Bool {
			sb.WriteString("true")
		} else {
			sb.WriteString("false")
		}
	case Number:
		s, err := pyNumber(v.Number)
		if err != nil {
			return err
		}
		sb.WriteString(s)
	case String:
		sb.WriteString(pyString(v.String))
	case Array:
		sb.WriteByte('[')
		for i, it := range v.Items {
			if i > 0 {
				sb.WriteString(", ")
			}
			if err := dumpPython(sb, it); err != nil {
				return err
			}
		}
		sb.WriteByte(']')
	case Object:
		sb.WriteByte('{')
		for i, k := range v.Keys {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(pyString(k))
			sb.WriteString(": ")
			if err := dumpPython(sb, v.Vals[i]); err != nil {
				return err
			}
		}
		sb.WriteByte('}')
	}
	return nil
}

// pyString is a JSON string literal as json.dumps(ensure_ascii=False)
// writes it: only '"', '\' and controls are escaped.
func pyString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		if r < 0x20 || r == '"' || r == '\\' {
			sb.WriteString(jsonEscape(r))
		} else {
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// pyNumber is how Python re-serialises a JSON number literal: integers
// exactly (arbitrary size), floats as repr(float) (the shortest digits
// that round-trip; fixed notation when -4 <= exponent < 16, else d.ddde±XX).
func pyNumber(lit string) (string, error) {
	if !strings.ContainsAny(lit, ".eE") {
		n, ok := new(big.Int).SetString(lit, 10)
		if !ok {
			return "", fmt.Errorf("grammar: bad integer %q", lit)
		}
		return n.String(), nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !math.IsInf(f, 0) {
		return "", fmt.Errorf("grammar: bad number %q: %w", lit, err)
	}
	if math.IsInf(f, 0) {
		return "", fmt.Errorf("grammar: number %q overflows a float (Python writes Infinity)", lit)
	}
	return pyFloatRepr(f), nil
}

func pyFloatRepr(f float64) string {
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	s := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expS, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expS)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	sign := ""
	if neg {
		sign = "-"
	}
	if exp >= -4 && exp < 16 {
		var out string
		switch {
		case exp < 0:
			out = "0." + strings.Repeat("0", -exp-1) + digits
		case exp+1 >= len(digits):
			out = digits + strings.Repeat("0", exp+1-len(digits)) + ".0"
		default:
			out = digits[:exp+1] + "." + digits[exp+1:]
		}
		return sign + out
	}
	m := digits[:1]
	if len(digits) > 1 {
		m += "." + digits[1:]
	}
	es := "+"
	if exp < 0 {
		es, exp = "-", -exp
	}
	return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp)
}
