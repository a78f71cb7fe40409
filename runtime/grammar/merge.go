package grammar

import (
	"math/big"
	"slices"
)

// mergeAllOf folds the subschemas of allOf into one schema where their
// keywords combine without loss (JSON Schema 2020-12 Core §10.2.1.1: the
// instance must validate against every subschema). ok is false when some
// keyword pair has no exact merge; the caller then intersects the compiled
// expressions instead, which is exact but builds larger automata.
func mergeAllOf(base *Value, subs []*Value) (*Value, bool) {
	acc := &Value{Kind: Object}
	for i, k := range base.Keys {
		if k != "allOf" {
			acc.Keys = append(acc.Keys, k)
			acc.Vals = append(acc.Vals, base.Vals[i])
		}
	}
	for _, s := range subs {
		var ok bool
		if acc, ok = mergeTwo(acc, s); !ok {
			return nil, false
		}
	}
	return acc, true
}

func set(v *Value, k string, x *Value) {
	for i, kk := range v.Keys {
		if kk == k {
			v.Vals[i] = x
			return
		}
	}
	v.Keys = append(v.Keys, k)
	v.Vals = append(v.Vals, x)
}

func sameJSON(a, b *Value) bool {
	x, err1 := DumpsPython(a)
	y, err2 := DumpsPython(b)
	return err1 == nil && err2 == nil && x == y
}

func mergeTwo(a, b *Value) (*Value, bool) {
	if b.Kind == Bool {
		if b.Bool {
			return a, true
		}
		return b, true
	}
	if a.Kind == Bool {
		if a.Bool {
			return b, true
		}
		return a, true
	}
	if b.Kind != Object || a.Kind != Object {
		return nil, false
	}
	out := &Value{Kind: Object, Keys: slices.Clone(a.Keys), Vals: slices.Clone(a.Vals)}
	for i, k := range b.Keys {
		bv := b.Vals[i]
		av := a.Get(k)
		if av == nil {
			switch k {
			case "additionalProperties":
				if !namesCovered(b, a) {
					return nil, false
				}
			case "allOf", "anyOf", "oneOf", "$ref":
				return nil, false
			}
			if k == "properties" && a.Get("additionalProperties") != nil && !namesCovered(a, b) {
				return nil, false
			}
			set(out, k, bv)
			continue
		}
		if annotationKeywords[k] {
			continue
		}
		switch k {
		case "type":
			t := intersectTypes(av, bv)
			if t == nil {
				return nil, false
			}
			set(out, k, t)
		case "required":
			r := &Value{Kind: Array, Items: slices.Clone(av.Items)}
			for _, x := range bv.Items {
				if !slices.ContainsFunc(r.Items, func(y *Value) bool { return sameJSON(x, y) }) {
					r.Items = append(r.Items, x)
				}
			}
			set(out, k, r)
		case "properties":
			if av.Kind != Object || bv.Kind != Object {
				return nil, false
			}
			if (a.Get("additionalProperties") != nil && !namesCovered(a, b)) ||
				(b.Get("additionalProperties") != nil && !namesCovered(b, a)) {
				return nil, false
			}
			p := &Value{Kind: Object, Keys: slices.Clone(av.Keys), Vals: slices.Clone(av.Vals)}
			for j, name := range bv.Keys {
				if x := av.Get(name); x != nil {
					set(p, name, &Value{Kind: Object, Keys: []string{"allOf"},
						Vals: []*Value{{Kind: Array, Items: []*Value{x, bv.Vals[j]}}}})
				} else {
					set(p, name, bv.Vals[j])
				}
			}
			set(out, k, p)
		case "additionalProperties":
			if !namesCovered(a, b) || !namesCovered(b, a) {
				return nil, false
			}
			set(out, k, &Value{Kind: Object, Keys: []string{"allOf"}, Vals: []*Value{{Kind: Array, Items: []*Value{av, bv}}}})
		case "minLength", "minItems", "minimum", "exclusiveMinimum":
			if numLess(av, bv) {
				set(out, k, bv)
			}
		case "maxLength", "maxItems", "maximum", "exclusiveMaximum":
			if numLess(bv, av) {
				set(out, k, bv)
			}
		default:
			if !sameJSON(av, bv) {
				return nil, false
			}
		}
	}
	return out, true
}

// namesCovered reports whether every property name of o is listed in the
// properties of s (so s's additionalProperties does not apply to them).
func namesCovered(s, o *Value) bool {
	sp := s.Get("properties")
	if op := o.Get("properties"); op != nil {
		for _, n := range op.Keys {
			if sp.Get(n) == nil {
				return false
			}
		}
	}
	if r := o.Get("required"); r != nil {
		for _, x := range r.Items {
			if sp.Get(x.String) == nil {
				return false
			}
		}
	}
	return true
}

func parseRat(s string) (*big.Rat, bool) { return new(big.Rat).SetString(s) }

func numLess(a, b *Value) bool {
	if a.Kind != Number || b.Kind != Number {
		return false
	}
	x, ok1 := parseRat(a.Number)
	y, ok2 := parseRat(b.Number)
	return ok1 && ok2 && x.Cmp(y) < 0
}

func typeList(t *Value) []string {
	if t.Kind == String {
		return []string{t.String}
	}
	var out []string
	for _, x := range t.Items {
		out = append(out, x.String)
	}
	return out
}

// intersectTypes is the types both allow (integer ⊂ number); nil if none.
func intersectTypes(a, b *Value) *Value {
	as, bs := typeList(a), typeList(b)
	has := func(list []string, t string) bool {
		return slices.Contains(list, t) || (t == "integer" && slices.Contains(list, "number"))
	}
	out := &Value{Kind: Array}
	for _, t := range as {
		if has(bs, t) {
			out.Items = append(out.Items, &Value{Kind: String, String: t})
		}
	}
	for _, t := range bs {
		if t == "integer" && slices.Contains(as, "number") && !slices.Contains(as, "integer") {
			out.Items = append(out.Items, &Value{Kind: String, String: t})
		}
	}
	if len(out.Items) == 0 {
		return nil
	}
	return out
}
