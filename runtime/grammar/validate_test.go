package grammar

import (
	"math/big"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// validator is an independent JSON Schema validator for the subset the
// compiler supports (written from JSON Schema 2020-12 Validation, not from
// the compiler), used to check generated outputs and converted test data.
// oneOfAsAnyOf gives the compiler's reading of oneOf.
type validator struct {
	root         *Value
	oneOfAsAnyOf bool
}

func (vl *validator) valid(s, x *Value) bool {
	if s.Kind == Bool {
		return s.Bool
	}
	if r := s.Get("$ref"); r != nil {
		t := vl.resolve(r.String)
		if t == nil || !vl.valid(t, x) {
			return false
		}
	}
	if t := s.Get("type"); t != nil {
		if !slices.ContainsFunc(typeList(t), func(tn string) bool { return hasType(x, tn) }) {
			return false
		}
	}
	if c := s.Get("const"); c != nil && !jsonEqual(c, x) {
		return false
	}
	if e := s.Get("enum"); e != nil && !slices.ContainsFunc(e.Items, func(c *Value) bool { return jsonEqual(c, x) }) {
		return false
	}
	if a := s.Get("allOf"); a != nil {
		for _, sub := range a.Items {
			if !vl.valid(sub, x) {
				return false
			}
		}
	}
	if a := s.Get("anyOf"); a != nil && !slices.ContainsFunc(a.Items, func(sub *Value) bool { return vl.valid(sub, x) }) {
		return false
	}
	if a := s.Get("oneOf"); a != nil {
		n := 0
		for _, sub := range a.Items {
			if vl.valid(sub, x) {
				n++
			}
		}
		if n == 0 || (n > 1 && !vl.oneOfAsAnyOf) {
			return false
		}
	}
	switch x.Kind {
	case String:
		n := utf8.RuneCountInString(x.String)
		if v := s.Get("minLength"); v != nil && n < intOf(v) {
			return false
		}
		if v := s.Get("maxLength"); v != nil && n > intOf(v) {
			return false
		}
		if p := s.Get("pattern"); p != nil {
			re, err := regexp.Compile(p.String)
			if err != nil || !re.MatchString(x.String) {
				return false
			}
		}
		if f := s.Get("format"); f != nil {
			re, ok := formats[f.String]
			if !ok || !regexp.MustCompile(`^(?:`+re+`)$`).MatchString(x.String) {
				return false
			}
		}
	case Number:
		n, _ := new(big.Rat).SetString(x.Number)
		cmp := func(k string, ok func(c int) bool) bool {
			v := s.Get(k)
			if v == nil {
				return true
			}
			b, _ := new(big.Rat).SetString(v.Number)
			return ok(n.Cmp(b))
		}
		if !cmp("minimum", func(c int) bool { return c >= 0 }) || !cmp("maximum", func(c int) bool { return c <= 0 }) ||
			!cmp("exclusiveMinimum", func(c int) bool { return c > 0 }) || !cmp("exclusiveMaximum", func(c int) bool { return c < 0 }) {
			return false
		}
		if m := s.Get("multipleOf"); m != nil {
			k, _ := new(big.Rat).SetString(m.Number)
			q := new(big.Rat).Quo(n, k)
			if !q.IsInt() {
				return false
			}
		}
	case Array:
		prefix := s.Get("prefixItems")
		for i, it := range x.Items {
			var sub *Value
			if prefix != nil && i < len(prefix.Items) {
				sub = prefix.Items[i]
			} else {
				sub = s.Get("items")
			}
			if sub != nil && !vl.valid(sub, it) {
				return false
			}
		}
		if v := s.Get("minItems"); v != nil && len(x.Items) < intOf(v) {
			return false
		}
		if v := s.Get("maxItems"); v != nil && len(x.Items) > intOf(v) {
			return false
		}
	case Object:
		props := s.Get("properties")
		if r := s.Get("required"); r != nil {
			for _, name := range r.Items {
				if !slices.Contains(x.Keys, name.String) {
					return false
				}
			}
		}
		for i, k := range x.Keys {
			if p := props.Get(k); p != nil {
				if !vl.valid(p, x.Vals[i]) {
					return false
				}
			} else if a := s.Get("additionalProperties"); a != nil && !vl.valid(a, x.Vals[i]) {
				return false
			}
		}
	}
	return true
}

func (vl *validator) resolve(ref string) *Value {
	t := vl.root
	if ref == "#" {
		return t
	}
	for _, tok := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		if t.Kind == Array {
			i := 0
			for _, c := range tok {
				i = i*10 + int(c-'0')
			}
			if i >= len(t.Items) {
				return nil
			}
			t = t.Items[i]
			continue
		}
		if t = t.Get(tok); t == nil {
			return nil
		}
	}
	return t
}

func intOf(v *Value) int {
	r, _ := new(big.Rat).SetString(v.Number)
	f, _ := r.Float64()
	return int(f)
}

func hasType(x *Value, t string) bool {
	switch t {
	case "null":
		return x.Kind == Null
	case "boolean":
		return x.Kind == Bool
	case "string":
		return x.Kind == String
	case "array":
		return x.Kind == Array
	case "object":
		return x.Kind == Object
	case "number":
		return x.Kind == Number
	case "integer":
		if x.Kind != Number {
			return false
		}
		r, ok := new(big.Rat).SetString(x.Number)
		return ok && r.IsInt()
	}
	return false
}

// jsonEqual is JSON Schema equality (Core §4.2.2): numbers by value,
// objects regardless of member order.
func jsonEqual(a, b *Value) bool {
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case Null:
		return true
	case Bool:
		return a.Bool == b.Bool
	case String:
		return a.String == b.String
	case Number:
		x, _ := new(big.Rat).SetString(a.Number)
		y, _ := new(big.Rat).SetString(b.Number)
		return x.Cmp(y) == 0
	case Array:
		return slices.EqualFunc(a.Items, b.Items, jsonEqual)
	}
	if len(a.Keys) != len(b.Keys) {
		return false
	}
	for i, k := range a.Keys {
		if v := b.Get(k); v == nil || !jsonEqual(a.Vals[i], v) {
			return false
		}
	}
	return true
}
