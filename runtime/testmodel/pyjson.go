package testmodel

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"

	"github.com/parrot-llm/parrot/runtime/quant"
)

// object is a JSON object whose keys keep their order.
type object []member

type member struct {
	key   string
	value any
}

// prettyJSON encodes v with a 2-space indent and ": " separators, the layout
// of Python's json.dumps(indent=2) and of serde_json's pretty printer. Maps
// are written with sorted keys (transformers uses sort_keys=True), objects
// in their order; float64 values print as Python floats (1e-05, 500000.0).
// With ensureASCII, non-ASCII characters are \u-escaped as Python's default
// does; otherwise they are written raw.
func prettyJSON(v any, ensureASCII bool) ([]byte, error) {
	e := &jsonEncoder{ensureASCII: ensureASCII}
	if err := e.value(v, 0); err != nil {
		return nil, err
	}
	e.buf.WriteByte('\n')
	return e.buf.Bytes(), nil
}

type jsonEncoder struct {
	buf         bytes.Buffer
	ensureASCII bool
}

func (e *jsonEncoder) newline(depth int) {
	e.buf.WriteByte('\n')
	for i := 0; i < depth; i++ {
		e.buf.WriteString("  ")
	}
}

func (e *jsonEncoder) value(v any, depth int) error {
	switch v := v.(type) {
	case nil:
		e.buf.WriteString("null")
	case bool:
		e.buf.WriteString(strconv.FormatBool(v))
	case int:
		e.buf.WriteString(strconv.Itoa(v))
	case float64:
		e.buf.WriteString(quant.PyFloatRepr(v))
	case string:
		e.str(v)
	case []int:
		items := make([]any, len(v))
		for i, x := range v {
			items[i] = x
		}
		return e.array(items, depth)
	case []string:
		items := make([]any, len(v))
		for i, x := range v {
			items[i] = x
		}
		return e.array(items, depth)
	case []any:
		return e.array(v, depth)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		obj := make(object, len(keys))
		for i, k := range keys {
			obj[i] = member{k, v[k]}
		}
		return e.object(obj, depth)
	case object:
		return e.object(v, depth)
	default:
		return fmt.Errorf("testmodel: cannot encode %T as JSON", v)
	}
	return nil
}

func (e *jsonEncoder) array(items []any, depth int) error {
	if len(items) == 0 {
		e.buf.WriteString("[]")
		return nil
	}
	e.buf.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.newline(depth + 1)
		if err := e.value(it, depth+1); err != nil {
			return err
		}
	}
	e.newline(depth)
	e.buf.WriteByte(']')
	return nil
}

func (e *jsonEncoder) object(obj object, depth int) error {
	if len(obj) == 0 {
		e.buf.WriteString("{}")
		return nil
	}
	e.buf.WriteByte('{')
	for i, m := range obj {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.newline(depth + 1)
		e.str(m.key)
		e.buf.WriteString(": ")
		if err := e.value(m.value, depth+1); err != nil {
			return err
		}
	}
	e.newline(depth)
	e.buf.WriteByte('}')
	return nil
}

// str writes a JSON string escaped as Python's json module does.
func (e *jsonEncoder) str(s string) {
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
		case r < 0x20 || (e.ensureASCII && r > 0x7E && r < 0x10000):
			fmt.Fprintf(b, `\u%04x`, r)
		case e.ensureASCII && r >= 0x10000:
			r -= 0x10000
			fmt.Fprintf(b, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}
