package chat

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/nikolalohinski/gonja/v2/exec"

	"github.com/parrot-llm/parrot/internal/pyjson"
)

// jsonOpts are the arguments of Python's json.dumps that transformers'
// tojson filter forwards.
type jsonOpts struct {
	ensureASCII bool
	indent      *string // nil: single line
	itemSep     string
	keySep      string
	sortKeys    bool
}

// newJSONOpts applies json.dumps defaults: separators are (", ", ": ")
// on one line and (",", ": ") when indenting.
func newJSONOpts(ensureASCII bool, indent *string, seps []string, sortKeys bool) jsonOpts {
	o := jsonOpts{ensureASCII: ensureASCII, indent: indent, itemSep: ", ", keySep: ": ", sortKeys: sortKeys}
	if indent != nil {
		o.itemSep = ","
	}
	if seps != nil {
		o.itemSep, o.keySep = seps[0], seps[1]
	}
	return o
}

// pyDumps renders v the way Python's json.dumps does.
func pyDumps(v *exec.Value, o jsonOpts) (string, error) {
	var b strings.Builder
	if err := o.write(&b, v, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (o jsonOpts) newline(b *strings.Builder, level int) {
	if o.indent == nil {
		return
	}
	b.WriteByte('\n')
	for range level {
		b.WriteString(*o.indent)
	}
}

func (o jsonOpts) write(b *strings.Builder, v *exec.Value, level int) error {
	if level > 1000 {
		return fmt.Errorf("tojson: value nested too deeply")
	}
	x := unwrap(v)
	switch t := x.(type) {
	case nil:
		b.WriteString("null")
		return nil
	case bool:
		if t {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
		return nil
	case string:
		writeJSONString(b, t, o.ensureASCII)
		return nil
	case float64:
		b.WriteString(pyjson.FloatRepr(t))
		return nil
	case float32:
		b.WriteString(pyjson.FloatRepr(float64(t)))
		return nil
	}
	ev := exec.AsValue(x)
	switch {
	case ev.IsInteger():
		b.WriteString(ev.String())
		return nil
	case ev.IsDict():
		pairs := dictPairs(ev)
		if len(pairs) == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := make([]string, len(pairs))
		for i, p := range pairs {
			k, err := jsonKey(p.key)
			if err != nil {
				return err
			}
			keys[i] = k
		}
		order := make([]int, len(pairs))
		for i := range order {
			order[i] = i
		}
		if o.sortKeys {
			sort.SliceStable(order, func(i, j int) bool { return keys[order[i]] < keys[order[j]] })
		}
		b.WriteByte('{')
		for n, i := range order {
			if n > 0 {
				b.WriteString(o.itemSep)
			}
			o.newline(b, level+1)
			writeJSONString(b, keys[i], o.ensureASCII)
			b.WriteString(o.keySep)
			if err := o.write(b, pairs[i].value, level+1); err != nil {
				return err
			}
		}
		o.newline(b, level)
		b.WriteByte('}')
		return nil
	case ev.IsList():
		items, _ := listItems(ev)
		if len(items) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				b.WriteString(o.itemSep)
			}
			o.newline(b, level+1)
			if err := o.write(b, it, level+1); err != nil {
				return err
			}
		}
		o.newline(b, level)
		b.WriteByte(']')
		return nil
	}
	return fmt.Errorf("tojson: object of type %s is not JSON serializable", reflect.TypeOf(x))
}

// jsonKey converts a dict key as json.dumps does (str, int, float, bool, None).
func jsonKey(k *exec.Value) (string, error) {
	switch t := unwrap(k).(type) {
	case string:
		return t, nil
	case nil:
		return "null", nil
	case bool:
		if t {
			return "true", nil
		}
		return "false", nil
	case float64:
		return pyjson.FloatRepr(t), nil
	}
	if k.IsInteger() {
		return k.String(), nil
	}
	return "", fmt.Errorf("tojson: keys must be str, int, float, bool or None, not %T", unwrap(k))
}

// writeJSONString quotes s like json.dumps: only '"', '\\' and control
// characters are escaped unless ensureASCII, which escapes every non-ASCII
// code point as \uXXXX (UTF-16 surrogate pairs above the BMP).
func writeJSONString(b *strings.Builder, s string, ensureASCII bool) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			switch {
			case r < 0x20 || (ensureASCII && r > 0x7e && r < 0x10000):
				b.WriteString(`\u`)
				b.WriteByte(hex[r>>12&0xf])
				b.WriteByte(hex[r>>8&0xf])
				b.WriteByte(hex[r>>4&0xf])
				b.WriteByte(hex[r&0xf])
			case ensureASCII && r >= 0x10000:
				r1, r2 := utf16.EncodeRune(r)
				for _, u := range []rune{r1, r2} {
					b.WriteString(`\u`)
					b.WriteByte(hex[u>>12&0xf])
					b.WriteByte(hex[u>>8&0xf])
					b.WriteByte(hex[u>>4&0xf])
					b.WriteByte(hex[u&0xf])
				}
			default:
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}
