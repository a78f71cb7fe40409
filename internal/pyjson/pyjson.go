// Package pyjson writes JSON byte for byte as Python's json.dumps does, so
// that files Python tools compare, hash or diff (config.json from
// transformers, adapter_config.json from PEFT, the bitsandbytes quant_state)
// come out the same when written from Go: Python's separators and
// indentation, its string escaping (ensure_ascii or not) and repr(float)
// spelling of numbers (1e-05, 16.0, 0.0569254569709301).
package pyjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Object is a JSON object whose members are written in their order, as a
// Python dict keeps insertion order.
type Object []Member

// Member is one key and value of an Object.
type Member struct {
	Key   string
	Value any
}

// Options are the json.dumps arguments that change the output.
type Options struct {
	// Indent is the number of spaces per nesting level, each item on its
	// own line ending in "," (json.dumps(indent=n), n > 0). 0 writes one
	// line with ", " and ": " separators, as json.dumps(indent=None).
	Indent int
	// EnsureASCII escapes every non-ASCII character as \uXXXX (a UTF-16
	// surrogate pair above U+FFFF), json.dumps' default; without it they
	// are written as UTF-8.
	EnsureASCII bool
}

// Marshal encodes v as json.dumps(v, indent=o.Indent or None,
// ensure_ascii=o.EnsureASCII) does, with no trailing newline. It accepts
// nil, bool, string, the Go integer kinds, float32 and float64 (see
// FloatRepr; a float32 is written as the repr of its exact value, as torch's
// .item() hands it to Python), json.Number (written as is, e.g. to keep a
// number's spelling as read), Object, map[string]any, []any, []string and
// []int. A map's keys are written sorted (as sort_keys=True; a Go map has no
// order to keep): Go's byte order on UTF-8 is Python's code point order.
func Marshal(v any, o Options) ([]byte, error) {
	if o.Indent < 0 {
		return nil, fmt.Errorf("pyjson: negative indent %d", o.Indent)
	}
	e := encoder{opts: o}
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

type encoder struct {
	buf  bytes.Buffer
	opts Options
}

func (e *encoder) value(v any, depth int) error {
	switch x := v.(type) {
	case nil:
		e.buf.WriteString("null")
	case bool:
		e.buf.WriteString(strconv.FormatBool(x))
	case string:
		e.str(x)
	case int:
		e.buf.WriteString(strconv.Itoa(x))
	case int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		fmt.Fprintf(&e.buf, "%d", x)
	case float32:
		e.buf.WriteString(FloatRepr(float64(x)))
	case float64:
		e.buf.WriteString(FloatRepr(x))
	case json.Number:
		if !isNumber(string(x)) {
			return fmt.Errorf("pyjson: invalid number %q", string(x))
		}
		e.buf.WriteString(string(x))
	case []string:
		return e.list(len(x), func(i int) any { return x[i] }, depth)
	case []int:
		return e.list(len(x), func(i int) any { return x[i] }, depth)
	case []any:
		return e.list(len(x), func(i int) any { return x[i] }, depth)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		obj := make(Object, len(keys))
		for i, k := range keys {
			obj[i] = Member{Key: k, Value: x[k]}
		}
		return e.object(obj, depth)
	case Object:
		return e.object(x, depth)
	default:
		return fmt.Errorf("pyjson: cannot encode %T", v)
	}
	return nil
}

// sep starts item i of a container at depth: a newline and indentation
// when indenting, else ", " between items.
func (e *encoder) sep(i, depth int) {
	if i > 0 {
		e.buf.WriteByte(',')
	}
	if e.opts.Indent > 0 {
		e.newline(depth + 1)
	} else if i > 0 {
		e.buf.WriteByte(' ')
	}
}

func (e *encoder) newline(depth int) {
	e.buf.WriteByte('\n')
	e.buf.WriteString(strings.Repeat(" ", depth*e.opts.Indent))
}

func (e *encoder) list(n int, item func(int) any, depth int) error {
	if n == 0 {
		e.buf.WriteString("[]")
		return nil
	}
	e.buf.WriteByte('[')
	for i := range n {
		e.sep(i, depth)
		if err := e.value(item(i), depth+1); err != nil {
			return err
		}
	}
	if e.opts.Indent > 0 {
		e.newline(depth)
	}
	e.buf.WriteByte(']')
	return nil
}

func (e *encoder) object(obj Object, depth int) error {
	if len(obj) == 0 {
		e.buf.WriteString("{}")
		return nil
	}
	e.buf.WriteByte('{')
	for i, m := range obj {
		e.sep(i, depth)
		e.str(m.Key)
		e.buf.WriteString(": ")
		if err := e.value(m.Value, depth+1); err != nil {
			return fmt.Errorf("%w (in %q)", err, m.Key)
		}
	}
	if e.opts.Indent > 0 {
		e.newline(depth)
	}
	e.buf.WriteByte('}')
	return nil
}

// str writes s quoted as json.dumps does: '"', '\\' and the C0 controls
// escaped (short forms where JSON has them); DEL and non-ASCII escaped only
// with EnsureASCII. Invalid UTF-8 is written as U+FFFD.
func (e *encoder) str(s string) {
	b := &e.buf
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\f':
			b.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(b, `\u%04x`, r)
		case r < 0x7F || !e.opts.EnsureASCII:
			b.WriteRune(r)
		case r < 0x10000:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		}
	}
	b.WriteByte('"')
}

// isNumber reports whether s is one JSON number.
func isNumber(s string) bool {
	return s != "" && (s[0] == '-' || s[0] >= '0' && s[0] <= '9') && json.Valid([]byte(s))
}

// FloatRepr formats f as Python's repr(float), and so json.dumps, does: the
// shortest digits that round-trip, in positional notation when the decimal
// exponent is in [-4, 16) ("0.0001", "100.0", "0.0569254569709301") and in
// scientific notation otherwise, with a signed exponent of at least two
// digits ("1e-05", "1.5e+16"). Non-finite values print as json.dumps
// (allow_nan=True) writes them: NaN, Infinity, -Infinity.
func FloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	// Shortest round-trip digits: "-d.ddde±XX".
	s := strconv.FormatFloat(f, 'e', -1, 64)
	sign := ""
	if s[0] == '-' {
		sign, s = "-", s[1:]
	}
	mant, expStr, _ := strings.Cut(s, "e")
	exp, _ := strconv.Atoi(expStr)
	digits := strings.Replace(mant, ".", "", 1)
	if f == 0 {
		return sign + "0.0"
	}
	// Python's rule (float_repr_style 'short'): with the value written as
	// 0.DIGITS × 10^decpt, scientific iff decpt <= -4 or decpt > 16.
	decpt := exp + 1
	if decpt <= -4 || decpt > 16 {
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
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	default:
		return sign + digits[:decpt] + "." + digits[decpt:]
	}
}
