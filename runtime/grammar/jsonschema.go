package grammar

import (
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// The JSON Schema compiler: each schema becomes an expression matching the
// JSON texts of the values it accepts (JSON Schema 2020-12 Core and
// Validation, json-schema.org/draft/2020-12), written with Python
// json.dumps's escaping and with flexible, bounded whitespace.

// annotation keywords carry no constraint and are ignored
// (Validation §9 "meta-data", Core §8.3 $comment, §10 content).
var annotationKeywords = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true, "$comment": true,
	"$schema": true, "deprecated": true, "readOnly": true, "writeOnly": true,
	"$defs": true, "definitions": true, "contentEncoding": true, "contentMediaType": true,
}

var constraintKeywords = map[string]bool{
	"type": true, "enum": true, "const": true, "anyOf": true, "oneOf": true, "allOf": true, "$ref": true,
	// string
	"minLength": true, "maxLength": true, "pattern": true, "format": true,
	// number
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
	// array
	"items": true, "prefixItems": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	// object
	"properties": true, "required": true, "additionalProperties": true,
}

var stringKeywords = []string{"minLength", "maxLength", "pattern", "format"}
var numberKeywords = []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
var arrayKeywords = []string{"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}
var objectKeywords = []string{"properties", "required", "additionalProperties"}

// formats are the "format" values enforced, as regular expressions over
// the string's characters (Validation §7.3; RFC 3339 §5.6 for date-time,
// date and time; RFC 4122 for uuid; RFC 791 dotted quads for ipv4; email
// and uri are simplified: a dot-atom local part and a domain (RFC 5322
// §3.4.1), and scheme ":" followed by RFC 3986 characters).
var formats = map[string]string{
	"date":      `[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])`,
	"time":      `([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])`,
	"date-time": `[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])`,
	"uuid":      `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`,
	"email":     `[A-Za-z0-9!#$%&'*+/=?^_{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*`,
	"uri":       `[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]*`,
	"ipv4":      `(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}`,
}

// maxIntDigits bounds integers: up to 18 digits, so every bound fits an int64.
const maxIntDigits = 18

const maxIntMagnitude = 999_999_999_999_999_999

type schemaCompiler struct {
	b        *builder
	o        Options
	root     *Value
	refs     map[string]expr
	ws       expr
	char     expr // one character inside a JSON string
	anyMemo  map[int]expr
	numMemo  expr
	litBound bool // compiling under enum/const: no default string bound
	keyMemo  expr
}

func newSchemaCompiler(b *builder, o Options, root *Value) *schemaCompiler {
	c := &schemaCompiler{b: b, o: o, root: root, refs: map[string]expr{}, anyMemo: map[int]expr{}}
	var ws byteSet
	for _, x := range []byte(" \t\n\r") {
		ws.add(x)
	}
	c.ws = b.repeat(b.bytes(ws), 0, o.MaxWhitespace)
	c.char = b.classExpr(anyRune, jsonString)
	b.strChar = c.char
	return c
}

// document is a whole JSON text: the value with whitespace around it.
func (c *schemaCompiler) document(v expr) expr { return c.b.seq(c.ws, v, c.ws) }

func errAt(path, format string, args ...any) error {
	if path == "" {
		path = "#"
	}
	return fmt.Errorf("grammar: schema %s: %s", path, fmt.Sprintf(format, args...))
}

// compile is the expression of the values schema s accepts.
func (c *schemaCompiler) compile(s *Value, path string) (expr, error) {
	switch s.Kind {
	case Bool:
		if s.Bool {
			return c.anyValue(c.o.MaxDepth), nil
		}
		return exprEmpty, nil
	case Object:
	default:
		return exprEmpty, errAt(path, "a schema must be an object or a boolean")
	}
	if all := s.Get("allOf"); all != nil && all.Kind == Array && len(all.Items) > 0 {
		if merged, ok := mergeAllOf(s, all.Items); ok {
			return c.compile(merged, path)
		}
	}
	for _, k := range s.Keys {
		if !annotationKeywords[k] && !constraintKeywords[k] {
			if k == "$id" && path == "" {
				continue
			}
			return exprEmpty, errAt(path, "unsupported keyword %q", k)
		}
	}
	var parts []expr
	if r := s.Get("$ref"); r != nil {
		e, err := c.ref(r, path)
		if err != nil {
			return exprEmpty, err
		}
		parts = append(parts, e)
	}
	lits := s.Get("enum") != nil || s.Get("const") != nil
	onlyType := lits && !slices.ContainsFunc(s.Keys, func(k string) bool {
		return constraintKeywords[k] && k != "type" && k != "enum" && k != "const" &&
			k != "anyOf" && k != "oneOf" && k != "allOf" && k != "$ref"
	})
	if !onlyType {
		// Under enum/const the literals bound the text, so strings take
		// no default length bound.
		saved := c.litBound
		c.litBound = c.litBound || lits
		typed, err := c.typed(s, path)
		c.litBound = saved
		if err != nil {
			return exprEmpty, err
		}
		if typed >= 0 {
			parts = append(parts, typed)
		}
	}
	typeOK := func(v *Value) bool {
		t := s.Get("type")
		if !onlyType || t == nil {
			return true
		}
		return slices.ContainsFunc(typeList(t), func(tn string) bool { return valueHasType(v, tn) })
	}
	if e := s.Get("const"); e != nil {
		if !typeOK(e) {
			return exprEmpty, nil
		}
		lit, err := c.literal(e, path+"/const")
		if err != nil {
			return exprEmpty, err
		}
		parts = append(parts, lit)
	}
	if e := s.Get("enum"); e != nil {
		if e.Kind != Array {
			return exprEmpty, errAt(path, "enum must be an array")
		}
		var alts []expr
		for i, v := range e.Items {
			if !typeOK(v) {
				continue
			}
			lit, err := c.literal(v, fmt.Sprintf("%s/enum/%d", path, i))
			if err != nil {
				return exprEmpty, err
			}
			alts = append(alts, lit)
		}
		parts = append(parts, c.b.or(alts...))
	}
	// oneOf is compiled as anyOf: an instance matching several branches is
	// accepted (exclusivity is not expressible without complementing
	// whole-value languages).
	for _, kw := range []string{"anyOf", "oneOf"} {
		if e := s.Get(kw); e != nil {
			subs, err := c.schemaList(e, path+"/"+kw)
			if err != nil {
				return exprEmpty, err
			}
			parts = append(parts, c.b.or(subs...))
		}
	}
	if e := s.Get("allOf"); e != nil {
		subs, err := c.schemaList(e, path+"/allOf")
		if err != nil {
			return exprEmpty, err
		}
		parts = append(parts, subs...)
	}
	switch len(parts) {
	case 0:
		return c.anyValue(c.o.MaxDepth), nil
	case 1:
		return parts[0], nil
	}
	return c.b.and(parts...), nil
}

func (c *schemaCompiler) schemaList(v *Value, path string) ([]expr, error) {
	if v.Kind != Array || len(v.Items) == 0 {
		return nil, errAt(path, "must be a non-empty array of schemas")
	}
	out := make([]expr, len(v.Items))
	for i, s := range v.Items {
		e, err := c.compile(s, fmt.Sprintf("%s/%d", path, i))
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

// literal matches v as json.dumps writes it (enum and const).
func (c *schemaCompiler) literal(v *Value, path string) (expr, error) {
	s, err := DumpsPython(v)
	if err != nil {
		return exprEmpty, errAt(path, "%v", err)
	}
	return c.b.lit(s), nil
}

// ref resolves a local JSON Pointer reference (Core §8.2.3.1, RFC 6901);
// the target compiles once, and a reference inside its own target becomes
// recursion.
func (c *schemaCompiler) ref(r *Value, path string) (expr, error) {
	if r.Kind != String {
		return exprEmpty, errAt(path, "$ref must be a string")
	}
	if e, ok := c.refs[r.String]; ok {
		return e, nil
	}
	if !strings.HasPrefix(r.String, "#") || (len(r.String) > 1 && r.String[1] != '/') {
		return exprEmpty, errAt(path, "unsupported $ref %q: only local JSON Pointers (#/...) are supported", r.String)
	}
	frag, err := url.PathUnescape(r.String[1:])
	if err != nil {
		return exprEmpty, errAt(path, "$ref %q: %v", r.String, err)
	}
	target := c.root
	if frag != "" {
		for _, tok := range strings.Split(frag[1:], "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch target.Kind {
			case Object:
				target = target.Get(tok)
			case Array:
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(target.Items) {
					target = nil
				} else {
					target = target.Items[i]
				}
			default:
				target = nil
			}
			if target == nil {
				return exprEmpty, errAt(path, "$ref %q does not resolve", r.String)
			}
		}
	}
	id, e := c.b.newRef(r.String)
	c.refs[r.String] = e
	body, err := c.compile(target, frag)
	if err != nil {
		return exprEmpty, err
	}
	c.b.define(id, body)
	return e, nil
}

// typed is the union, over the types s allows, of each type's values
// under s's keywords for that type; -1 when s says nothing type-specific.
func (c *schemaCompiler) typed(s *Value, path string) (expr, error) {
	all := []string{"null", "boolean", "object", "array", "string", "number"}
	types := all
	hasType := false
	if t := s.Get("type"); t != nil {
		hasType = true
		switch t.Kind {
		case String:
			types = []string{t.String}
		case Array:
			types = nil
			for _, x := range t.Items {
				if x.Kind != String {
					return exprEmpty, errAt(path, "type must be a string or an array of strings")
				}
				types = append(types, x.String)
			}
		default:
			return exprEmpty, errAt(path, "type must be a string or an array of strings")
		}
		if slices.Contains(types, "number") {
			types = slices.DeleteFunc(types, func(x string) bool { return x == "integer" })
		}
	}
	has := func(kws []string) bool {
		return slices.ContainsFunc(kws, func(k string) bool { return s.Get(k) != nil })
	}
	if !hasType && !has(stringKeywords) && !has(numberKeywords) && !has(arrayKeywords) && !has(objectKeywords) {
		return -1, nil
	}
	var alts []expr
	for _, t := range types {
		var e expr
		var err error
		switch t {
		case "null":
			e = c.b.lit("null")
		case "boolean":
			e = c.b.or(c.b.lit("true"), c.b.lit("false"))
		case "string":
			e, err = c.stringValue(s, path)
		case "integer":
			e, err = c.integerValue(s, path)
		case "number":
			if has(numberKeywords) {
				e, err = c.boundedNumber(s, path)
			} else {
				e = c.number()
			}
		case "array":
			e, err = c.arrayValue(s, path)
		case "object":
			e, err = c.objectValue(s, path)
		default:
			return exprEmpty, errAt(path, "unknown type %q", t)
		}
		if err != nil {
			return exprEmpty, err
		}
		alts = append(alts, e)
	}
	return c.b.or(alts...), nil
}

func firstOf(s *Value, kws []string) string {
	for _, k := range kws {
		if s.Get(k) != nil {
			return k
		}
	}
	return ""
}

// nonNegInt reads keyword k as a non-negative integer; def if absent.
func nonNegInt(s *Value, k, path string, def int) (int, bool, error) {
	v := s.Get(k)
	if v == nil {
		return def, false, nil
	}
	if v.Kind != Number {
		return 0, false, errAt(path, "%s must be a non-negative integer", k)
	}
	r, ok := new(big.Rat).SetString(v.Number)
	if !ok || !r.IsInt() || r.Sign() < 0 || !r.Num().IsInt64() || r.Num().Int64() > 1<<20 {
		return 0, false, errAt(path, "%s must be a non-negative integer no larger than %d", k, 1<<20)
	}
	return int(r.Num().Int64()), true, nil
}

// sizeBounds reads a minimum/maximum pair such as minLength/maxLength
// (minimum 0 when absent; hasMax false when the maximum is absent).
func sizeBounds(s *Value, minKey, maxKey, path string) (lo, hi int, hasMax bool, err error) {
	if lo, _, err = nonNegInt(s, minKey, path, 0); err != nil {
		return 0, 0, false, err
	}
	hi, hasMax, err = nonNegInt(s, maxKey, path, 0)
	return lo, hi, hasMax, err
}

// stringValue is a JSON string under minLength/maxLength (in characters,
// Validation §6.3.1), pattern and format. Without maxLength, length is
// bounded by Options.MaxStringLength.
func (c *schemaCompiler) stringValue(s *Value, path string) (expr, error) {
	minL, maxL, hasMax, err := sizeBounds(s, "minLength", "maxLength", path)
	if err != nil {
		return exprEmpty, err
	}
	if !hasMax {
		maxL = max(c.o.MaxStringLength, minL)
		if c.litBound {
			maxL = -1
		}
	}
	body := c.b.repeat(c.char, minL, maxL)
	if f := s.Get("format"); f != nil {
		if f.Kind != String {
			return exprEmpty, errAt(path, "format must be a string")
		}
		re, ok := formats[f.String]
		if !ok {
			return exprEmpty, errAt(path, "unsupported format %q", f.String)
		}
		ast, err := parseRegex(re)
		if err != nil {
			return exprEmpty, errAt(path, "format %q: %v", f.String, err)
		}
		fe, err := c.b.lowerFull(ast, jsonString)
		if err != nil {
			return exprEmpty, errAt(path, "format %q: %v", f.String, err)
		}
		if s.Get("minLength") == nil && !hasMax {
			body = fe
		} else {
			body = c.b.and(body, fe)
		}
	}
	if p := s.Get("pattern"); p != nil {
		if p.Kind != String {
			return exprEmpty, errAt(path, "pattern must be a string")
		}
		ast, err := parseRegex(p.String)
		if err != nil {
			return exprEmpty, errAt(path, "pattern: %v", err)
		}
		pe, err := c.b.lowerSearch(ast, jsonString)
		if err != nil {
			return exprEmpty, errAt(path, "pattern %q: %v", p.String, err)
		}
		body = c.b.and(body, pe)
	}
	q := c.b.byte1('"')
	return c.b.seq(q, body, q), nil
}

// number is any JSON number (RFC 8259 §6), with at most 18 integer
// digits, 20 fraction digits and 3 exponent digits.
func (c *schemaCompiler) number() expr {
	if c.numMemo != 0 {
		return c.numMemo
	}
	b := c.b
	digit := b.byteRange('0', '9')
	intPart := b.or(b.byte1('0'), b.cat(b.byteRange('1', '9'), b.repeat(digit, 0, maxIntDigits-1)))
	frac := b.opt(b.seq(b.byte1('.'), b.repeat(digit, 1, 20)))
	var e, pm byteSet
	e.add('e')
	e.add('E')
	pm.add('+')
	pm.add('-')
	exp := b.opt(b.seq(b.bytes(e), b.opt(b.bytes(pm)), b.repeat(digit, 1, 3)))
	c.numMemo = b.seq(b.opt(b.byte1('-')), intPart, frac, exp)
	return c.numMemo
}

// bound reads a numeric keyword as a rational.
func bound(s *Value, k, path string) (*big.Rat, error) {
	v := s.Get(k)
	if v == nil {
		return nil, nil
	}
	if v.Kind != Number {
		if v.Kind == Bool {
			return nil, errAt(path, "%s must be a number (draft 4 boolean form is not supported)", k)
		}
		return nil, errAt(path, "%s must be a number", k)
	}
	r, ok := new(big.Rat).SetString(v.Number)
	if !ok {
		return nil, errAt(path, "%s: bad number %q", k, v.Number)
	}
	return r, nil
}

// integerValue is a JSON integer in [minimum, maximum] (exclusive forms
// per Validation §6.2), and a multiple of multipleOf when that is a small
// positive integer.
func (c *schemaCompiler) integerValue(s *Value, path string) (expr, error) {
	lo, hi := big.NewInt(-maxIntMagnitude), big.NewInt(maxIntMagnitude)
	floor := func(r *big.Rat) *big.Int {
		q := new(big.Int)
		m := new(big.Int)
		q.DivMod(r.Num(), r.Denom(), m) // Euclidean: floor for a positive denominator
		return q
	}
	for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		r, err := bound(s, k, path)
		if err != nil {
			return exprEmpty, err
		}
		if r == nil {
			continue
		}
		f := floor(r)
		switch k {
		case "minimum": // ceil
			if !r.IsInt() {
				f.Add(f, big.NewInt(1))
			}
			if f.Cmp(lo) > 0 {
				lo = f
			}
		case "exclusiveMinimum": // floor + 1
			f.Add(f, big.NewInt(1))
			if f.Cmp(lo) > 0 {
				lo = f
			}
		case "maximum": // floor
			if f.Cmp(hi) < 0 {
				hi = f
			}
		case "exclusiveMaximum": // ceil - 1
			if r.IsInt() {
				f.Sub(f, big.NewInt(1))
			}
			if f.Cmp(hi) < 0 {
				hi = f
			}
		}
	}
	// Integers are bounded to maxIntDigits digits either way.
	if lo.Cmp(big.NewInt(-maxIntMagnitude)) < 0 {
		lo = big.NewInt(-maxIntMagnitude)
	}
	if hi.Cmp(big.NewInt(maxIntMagnitude)) > 0 {
		hi = big.NewInt(maxIntMagnitude)
	}
	if lo.Cmp(hi) > 0 {
		return exprEmpty, nil
	}
	e := intRange(c.b, lo.Int64(), hi.Int64())
	if m := s.Get("multipleOf"); m != nil {
		r, err := bound(s, "multipleOf", path)
		if err != nil {
			return exprEmpty, err
		}
		if !r.IsInt() || r.Sign() <= 0 || r.Num().Cmp(big.NewInt(1000)) > 0 {
			return exprEmpty, errAt(path, "multipleOf %s is not supported (only integers 1..1000 on integers)", m.Number)
		}
		if k := r.Num().Int64(); k > 1 {
			e = c.b.and(e, multipleOf(c.b, int(k)))
		}
	}
	return e, nil
}

// boundedNumber is a number under minimum/maximum/exclusive bounds,
// written in fixed notation (no exponent; Python writes floats below 1e-4
// or from 1e16 with one, so those are refused under bounds). multipleOf is
// accepted when it is a small integer (the number is then an integer
// multiple, written as an integer or with a zero fraction).
func (c *schemaCompiler) boundedNumber(s *Value, path string) (expr, error) {
	var mult expr
	if m := s.Get("multipleOf"); m != nil {
		r, err := bound(s, "multipleOf", path)
		if err != nil {
			return exprEmpty, err
		}
		if !r.IsInt() || r.Sign() <= 0 || r.Num().Cmp(big.NewInt(1000)) > 0 {
			return exprEmpty, errAt(path, "multipleOf %s is not supported on numbers (only integers 1..1000)", m.Number)
		}
		// An integer multiple, possibly written with a zero fraction (4.0).
		mult = c.b.cat(multipleOf(c.b, int(r.Num().Int64())),
			c.b.opt(c.b.seq(c.b.byte1('.'), c.b.repeat(c.b.byte1('0'), 1, maxFracDigits))))
	}
	if s.Get("minimum") == nil && s.Get("maximum") == nil && s.Get("exclusiveMinimum") == nil && s.Get("exclusiveMaximum") == nil {
		return mult, nil
	}
	var lo, hi *big.Rat
	loExcl, hiExcl := false, false
	for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		r, err := bound(s, k, path)
		if err != nil {
			return exprEmpty, err
		}
		if r == nil {
			continue
		}
		switch k {
		case "minimum", "exclusiveMinimum":
			ex := k == "exclusiveMinimum"
			if lo == nil || r.Cmp(lo) > 0 || (r.Cmp(lo) == 0 && ex) {
				lo, loExcl = r, ex
			}
		default:
			ex := k == "exclusiveMaximum"
			if hi == nil || r.Cmp(hi) < 0 || (r.Cmp(hi) == 0 && ex) {
				hi, hiExcl = r, ex
			}
		}
	}
	if lo != nil && hi != nil && (lo.Cmp(hi) > 0 || (lo.Cmp(hi) == 0 && (loExcl || hiExcl))) {
		return exprEmpty, nil
	}
	e, err := numberRange(c.b, lo, hi, loExcl, hiExcl)
	if err != nil {
		return exprEmpty, errAt(path, "%v", err)
	}
	if mult != 0 {
		e = c.b.and(e, mult)
	}
	return e, nil
}

// arrayValue is a JSON array: prefixItems in order, then items (a schema,
// or false for none), minItems..maxItems long (maxItems defaults to
// Options.MaxItems beyond the prefix). uniqueItems: true is refused.
func (c *schemaCompiler) arrayValue(s *Value, path string) (expr, error) {
	b := c.b
	if u := s.Get("uniqueItems"); u != nil && !(u.Kind == Bool && !u.Bool) {
		return exprEmpty, errAt(path, "uniqueItems is not supported")
	}
	var prefix []expr
	if p := s.Get("prefixItems"); p != nil {
		var err error
		if prefix, err = c.schemaList(p, path+"/prefixItems"); err != nil {
			return exprEmpty, err
		}
	}
	rest := c.anyValue(c.o.MaxDepth - 1)
	restAllowed := true
	if it := s.Get("items"); it != nil {
		if it.Kind == Bool && !it.Bool {
			restAllowed = false
		} else {
			var err error
			if rest, err = c.compile(it, path+"/items"); err != nil {
				return exprEmpty, err
			}
		}
	}
	minI, maxI, hasMax, err := sizeBounds(s, "minItems", "maxItems", path)
	if err != nil {
		return exprEmpty, err
	}
	if !hasMax {
		maxI = max(c.o.MaxItems, minI, len(prefix))
		if !restAllowed {
			maxI = len(prefix)
		}
	}
	if !restAllowed {
		maxI = min(maxI, len(prefix))
	}
	if minI > maxI {
		return exprEmpty, nil
	}
	elem := func(i int) expr {
		if i < len(prefix) {
			return prefix[i]
		}
		if !restAllowed {
			return exprEmpty
		}
		return rest
	}
	comma := b.seq(c.ws, b.byte1(','), c.ws)
	closeB := b.cat(c.ws, b.byte1(']'))
	// tail(i): the rest of the array after i ≥ 1 elements. From
	// position u on every element is rest, so the tail is a bounded repeat.
	u := max(len(prefix), minI)
	memo := map[int]expr{}
	var tail func(i int) expr
	tail = func(i int) expr {
		if e, ok := memo[i]; ok {
			return e
		}
		var e expr
		if i >= u {
			if restAllowed {
				e = b.cat(b.repeat(b.cat(comma, rest), 0, maxI-i), closeB)
			} else {
				e = closeB
			}
		} else {
			var alts []expr
			if i >= minI {
				alts = append(alts, closeB)
			}
			if i < maxI {
				alts = append(alts, b.seq(comma, elem(i), tail(i+1)))
			}
			e = b.or(alts...)
		}
		memo[i] = e
		return e
	}
	body := []expr{}
	if minI == 0 {
		body = append(body, b.byte1(']'))
	}
	if maxI >= 1 {
		body = append(body, b.seq(elem(0), tail(1)))
	}
	return b.seq(b.byte1('['), c.ws, b.or(body...)), nil
}

// objectValue is a JSON object: the members of "properties" in the
// schema's order (required ones present, optional ones skippable), and,
// unless additionalProperties is false, up to Options.MaxAdditionalProperties
// other members anywhere between them, whose names are none of the listed
// ones. Names in "required" but not in "properties" are listed after the
// properties, with the additionalProperties schema.
func (c *schemaCompiler) objectValue(s *Value, path string) (expr, error) {
	b := c.b
	addl := c.anyValue(c.o.MaxDepth - 1)
	addlAllowed := true
	if c.o.StrictProperties && s.Get("properties") != nil && s.Get("additionalProperties") == nil {
		addlAllowed = false
	}
	if a := s.Get("additionalProperties"); a != nil {
		if a.Kind == Bool && !a.Bool {
			addlAllowed = false
		} else {
			var err error
			if addl, err = c.compile(a, path+"/additionalProperties"); err != nil {
				return exprEmpty, err
			}
		}
	}
	required := map[string]bool{}
	var reqOrder []string
	if r := s.Get("required"); r != nil {
		if r.Kind != Array {
			return exprEmpty, errAt(path, "required must be an array of strings")
		}
		for _, x := range r.Items {
			if x.Kind != String {
				return exprEmpty, errAt(path, "required must be an array of strings")
			}
			if !required[x.String] {
				required[x.String] = true
				reqOrder = append(reqOrder, x.String)
			}
		}
	}
	type prop struct {
		name     string
		value    expr
		required bool
	}
	var props []prop
	var names []string
	if p := s.Get("properties"); p != nil {
		if p.Kind != Object {
			return exprEmpty, errAt(path, "properties must be an object")
		}
		for i, name := range p.Keys {
			if slices.Contains(names, name) {
				continue
			}
			v, err := c.compile(p.Vals[i], path+"/properties/"+name)
			if err != nil {
				return exprEmpty, err
			}
			names = append(names, name)
			props = append(props, prop{name, v, required[name]})
		}
	}
	for _, name := range reqOrder {
		if !slices.Contains(names, name) {
			v := addl
			if !addlAllowed {
				v = exprEmpty
			}
			names = append(names, name)
			props = append(props, prop{name, v, true})
		}
	}
	colon := b.seq(c.ws, b.byte1(':'), c.ws)
	comma := b.seq(c.ws, b.byte1(','), c.ws)
	sep := func(first bool) expr {
		if first {
			return exprEps
		}
		return comma
	}
	var addlMember expr
	if addlAllowed {
		key := c.stringKey()
		if len(names) > 0 {
			lits := make([]expr, len(names))
			for i, n := range names {
				lits[i] = b.lit(pyString(n))
			}
			key = b.and(key, b.not(b.or(lits...)))
		}
		addlMember = b.seq(key, colon, addl)
	}
	// E(i, first) for the units after the i-th listed property; unit
	// 2i is the additional block before property i, 2i+1 property i.
	type memoKey struct {
		unit  int
		first bool
	}
	memo := map[memoKey]expr{}
	var E func(unit int, first bool) expr
	E = func(unit int, first bool) expr {
		if e, ok := memo[memoKey{unit, first}]; ok {
			return e
		}
		var e expr
		switch {
		case unit == 2*len(props)+1:
			if first {
				e = b.byte1('}')
			} else {
				e = b.cat(c.ws, b.byte1('}'))
			}
		case unit%2 == 0: // additional block
			next := E(unit+1, first)
			if addlAllowed && c.o.MaxAdditionalProperties > 0 {
				block := b.seq(sep(first), addlMember, b.repeat(b.cat(comma, addlMember), 0, c.o.MaxAdditionalProperties-1))
				e = b.or(b.cat(block, E(unit+1, false)), next)
			} else {
				e = next
			}
		default:
			p := props[unit/2]
			present := b.seq(sep(first), b.lit(pyString(p.name)), colon, p.value, E(unit+1, false))
			if p.required {
				e = present
			} else {
				e = b.or(present, E(unit+1, first))
			}
		}
		memo[memoKey{unit, first}] = e
		return e
	}
	return b.seq(b.byte1('{'), c.ws, E(0, true)), nil
}

// stringKey is any JSON string of at most MaxStringLength characters.
func (c *schemaCompiler) stringKey() expr {
	if c.keyMemo == 0 {
		q := c.b.byte1('"')
		c.keyMemo = c.b.seq(q, c.b.repeat(c.char, 0, c.o.MaxStringLength), q)
	}
	return c.keyMemo
}

// anyValue is any JSON value nested at most depth levels (depth 0:
// scalars only), with the default bounds on strings, arrays and objects.
func (c *schemaCompiler) anyValue(depth int) expr {
	if depth < 0 {
		depth = 0
	}
	if e, ok := c.anyMemo[depth]; ok {
		return e
	}
	b := c.b
	alts := []expr{b.lit("null"), b.lit("true"), b.lit("false"), c.number(), c.stringKey()}
	if depth > 0 {
		inner := c.anyValue(depth - 1)
		alts = append(alts, c.anyArray(inner), c.anyObject(inner))
	}
	e := b.or(alts...)
	c.anyMemo[depth] = e
	return e
}

func (c *schemaCompiler) anyArray(inner expr) expr {
	b := c.b
	comma := b.seq(c.ws, b.byte1(','), c.ws)
	items := b.seq(inner, b.repeat(b.cat(comma, inner), 0, max(c.o.MaxItems-1, 0)), c.ws)
	return b.seq(b.byte1('['), c.ws, b.or(b.byte1(']'), b.cat(items, b.byte1(']'))))
}

func (c *schemaCompiler) anyObject(inner expr) expr {
	b := c.b
	comma := b.seq(c.ws, b.byte1(','), c.ws)
	member := b.seq(c.stringKey(), c.ws, b.byte1(':'), c.ws, inner)
	members := b.seq(member, b.repeat(b.cat(comma, member), 0, max(c.o.MaxAdditionalProperties-1, 0)), c.ws)
	return b.seq(b.byte1('{'), c.ws, b.or(b.byte1('}'), b.cat(members, b.byte1('}'))))
}

// valueHasType reports whether v is of JSON Schema type t (an integer is
// a number whose value is whole, Validation §6.1.1).
func valueHasType(v *Value, t string) bool {
	switch t {
	case "null":
		return v.Kind == Null
	case "boolean":
		return v.Kind == Bool
	case "string":
		return v.Kind == String
	case "array":
		return v.Kind == Array
	case "object":
		return v.Kind == Object
	case "number":
		return v.Kind == Number
	case "integer":
		if v.Kind != Number {
			return false
		}
		r, ok := parseRat(v.Number)
		return ok && r.IsInt()
	}
	return false
}
