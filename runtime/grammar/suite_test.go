package grammar

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The JSON-Schema-Test-Suite conversion. The npm package
// json-schema-test-suite (0.0.10, MIT, Julian Berman's suite) ships the
// draft 3 and draft 4 files; the draft 4 files are rewritten into the
// 2020-12 keywords the compiler reads, and written one MaskBench file per
// test group to testdata/suite. Regenerate with
//
//	D=$(mktemp -d); npm install --prefix $D json-schema-test-suite
//	GRAMMAR_SUITE_DIR=$D/node_modules/json-schema-test-suite/tests/draft4 \
//	    go test ./runtime/grammar -run TestConvertSuite
var suiteFiles = []string{
	"additionalItems", "additionalProperties", "allOf", "anyOf", "definitions", "enum", "items",
	"maxItems", "maxLength", "maximum", "minItems", "minLength", "minimum", "multipleOf", "oneOf",
	"pattern", "properties", "ref", "required", "type", "default", "optional/format",
	"optional/zeroTerminatedFloats", "optional/bignum",
}

func TestConvertSuite(t *testing.T) {
	dir := os.Getenv("GRAMMAR_SUITE_DIR")
	if dir == "" {
		t.Skip("GRAMMAR_SUITE_DIR not set")
	}
	out := filepath.Join("testdata", "suite")
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var skipped []string
	for _, name := range suiteFiles {
		raw, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		groups, err := ParseValue(raw)
		if err != nil {
			t.Fatal(err)
		}
		for gi, g := range groups.Items {
			schema := draft4To2020(g.Get("schema"))
			file := fmt.Sprintf("%s_%02d.json", strings.ReplaceAll(name, "/", "_"), gi)
			var tests []*Value
			for _, tc := range g.Get("tests").Items {
				if reason := skipReason(schema, tc.Get("data"), tc.Get("valid").Bool, tc.Get("description").String); reason != "" {
					skipped = append(skipped, fmt.Sprintf("| %s | %s | %s |", file, tc.Get("description").String, reason))
					continue
				}
				tests = append(tests, &Value{Kind: Object, Keys: []string{"description", "valid", "data"},
					Vals: []*Value{tc.Get("description"), tc.Get("valid"), tc.Get("data")}})
			}
			if len(tests) == 0 {
				continue
			}
			doc := &Value{Kind: Object, Keys: []string{"description", "schema", "tests"},
				Vals: []*Value{g.Get("description"), schema, {Kind: Array, Items: tests}}}
			if err := os.WriteFile(filepath.Join(out, file), []byte(writeJSON(doc, "")+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	report := "# Skipped JSON-Schema-Test-Suite cases\n\nWritten by TestConvertSuite.\n\n| file | test | reason |\n|---|---|---|\n" +
		strings.Join(skipped, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(out, "SKIPPED.md"), []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
}

// draft4To2020 rewrites draft 4 keywords into their 2020-12 forms:
// items: [...] → prefixItems (and additionalItems → items), boolean
// exclusiveMinimum/Maximum → numeric, and $ref's siblings dropped (draft 4
// ignores them, Core draft 4 §7).
func draft4To2020(s *Value) *Value {
	if s == nil || s.Kind != Object {
		return s
	}
	out := &Value{Kind: Object}
	put := func(k string, v *Value) { out.Keys = append(out.Keys, k); out.Vals = append(out.Vals, v) }
	hasRef := s.Get("$ref") != nil
	itemsArray := s.Get("items") != nil && s.Get("items").Kind == Array
	for i, k := range s.Keys {
		v := s.Vals[i]
		if hasRef && k != "$ref" && k != "definitions" {
			continue
		}
		switch k {
		case "items":
			if itemsArray {
				put("prefixItems", mapSchemas(v))
				if a := s.Get("additionalItems"); a != nil {
					put("items", draft4To2020(a))
				}
			} else {
				put("items", draft4To2020(v))
			}
		case "additionalItems":
			// Only meaningful after an items array (handled there).
		case "exclusiveMinimum", "exclusiveMaximum":
			if v.Kind == Bool && v.Bool {
				base := strings.Replace(k, "exclusiveM", "m", 1)
				put(k, s.Get(base))
			}
		case "minimum", "maximum":
			ex := s.Get("exclusiveM" + k[1:])
			if ex == nil || !ex.Bool {
				put(k, v)
			}
		case "properties", "definitions":
			m := &Value{Kind: Object}
			for j, name := range v.Keys {
				m.Keys = append(m.Keys, name)
				m.Vals = append(m.Vals, draft4To2020(v.Vals[j]))
			}
			put(k, m)
		case "additionalProperties", "not":
			put(k, draft4To2020(v))
		case "allOf", "anyOf", "oneOf":
			put(k, mapSchemas(v))
		case "$ref":
			put(k, &Value{Kind: String, String: itemsRef.ReplaceAllString(v.String, "/prefixItems/$1")})
		default:
			put(k, v)
		}
	}
	return out
}

var itemsRef = regexp.MustCompile(`/items/([0-9]+)`)

func mapSchemas(v *Value) *Value {
	out := &Value{Kind: Array}
	for _, s := range v.Items {
		out.Items = append(out.Items, draft4To2020(s))
	}
	return out
}

// skipReason says why a case cannot be checked under MaskBench's protocol
// with this compiler's documented semantics, or "".
func skipReason(schema, data *Value, valid bool, description string) string {
	if description == "a valid protocol-relative URI" {
		return "the suite (0.0.10) takes a protocol-relative reference as a uri; RFC 3986 §3 requires a scheme"
	}
	if valid {
		if orders := propertyOrders(schema, nil); !keysFollow(data, orders) {
			return "valid instance lists properties out of the schema's order (the matcher fixes property order)"
		}
		if hasIntegralFloat(data) {
			return "valid instance has an integral float (json.dumps writes 1.0, which the integer/enum grammar does not take)"
		}
		if hasBigNumber(data) {
			return "valid instance has a number beyond the 18-digit bound"
		}
		return ""
	}
	vl := &validator{root: schema, oneOfAsAnyOf: true}
	if strings.Contains(writeJSON(schema, ""), `"oneOf"`) && vl.valid(schema, data) {
		return "invalid only because several oneOf branches match (oneOf is compiled as anyOf)"
	}
	return ""
}

// propertyOrders collects every "properties" key list in the schema.
func propertyOrders(s *Value, acc [][]string) [][]string {
	switch s.Kind {
	case Object:
		if p := s.Get("properties"); p != nil && p.Kind == Object {
			acc = append(acc, p.Keys)
		}
		if a := s.Get("allOf"); a != nil {
			// A merged allOf lists its branches' properties in branch order.
			var merged []string
			if p := s.Get("properties"); p != nil && p.Kind == Object {
				merged = append(merged, p.Keys...)
			}
			for _, b := range a.Items {
				if p := b.Get("properties"); p != nil {
					merged = append(merged, p.Keys...)
				}
			}
			acc = append(acc, merged)
		}
		for _, v := range s.Vals {
			acc = propertyOrders(v, acc)
		}
	case Array:
		for _, v := range s.Items {
			acc = propertyOrders(v, acc)
		}
	}
	return acc
}

// keysFollow reports whether every object in x lists the names of each
// order in that order.
func keysFollow(x *Value, orders [][]string) bool {
	switch x.Kind {
	case Object:
		for _, order := range orders {
			last := -1
			for _, k := range x.Keys {
				if i := slices.Index(order, k); i >= 0 {
					if i < last {
						return false
					}
					last = i
				}
			}
		}
		for _, v := range x.Vals {
			if !keysFollow(v, orders) {
				return false
			}
		}
	case Array:
		for _, v := range x.Items {
			if !keysFollow(v, orders) {
				return false
			}
		}
	}
	return true
}

func hasIntegralFloat(x *Value) bool {
	switch x.Kind {
	case Number:
		if strings.ContainsAny(x.Number, ".eE") {
			r, ok := parseRat(x.Number)
			return ok && r.IsInt()
		}
	case Array:
		return slices.ContainsFunc(x.Items, hasIntegralFloat)
	case Object:
		return slices.ContainsFunc(x.Vals, hasIntegralFloat)
	}
	return false
}

func hasBigNumber(x *Value) bool {
	switch x.Kind {
	case Number:
		digits := strings.TrimLeft(x.Number, "-")
		if i := strings.IndexAny(digits, ".eE"); i >= 0 {
			digits = digits[:i]
		}
		return len(digits) > maxIntDigits
	case Array:
		return slices.ContainsFunc(x.Items, hasBigNumber)
	case Object:
		return slices.ContainsFunc(x.Vals, hasBigNumber)
	}
	return false
}

// writeJSON writes v with two-space indentation, keeping member order and
// number literals.
func writeJSON(v *Value, indent string) string {
	switch v.Kind {
	case Null:
		return "null"
	case Bool:
		return fmt.Sprint(v.Bool)
	case Number:
		return v.Number
	case String:
		b, _ := json.Marshal(v.String)
		return string(b)
	case Array:
		if len(v.Items) == 0 {
			return "[]"
		}
		parts := make([]string, len(v.Items))
		for i, it := range v.Items {
			parts[i] = indent + "  " + writeJSON(it, indent+"  ")
		}
		return "[\n" + strings.Join(parts, ",\n") + "\n" + indent + "]"
	}
	if len(v.Keys) == 0 {
		return "{}"
	}
	parts := make([]string, len(v.Keys))
	for i, k := range v.Keys {
		kb, _ := json.Marshal(k)
		parts[i] = indent + "  " + string(kb) + ": " + writeJSON(v.Vals[i], indent+"  ")
	}
	return "{\n" + strings.Join(parts, ",\n") + "\n" + indent + "}"
}
