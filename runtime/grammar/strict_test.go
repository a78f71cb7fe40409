package grammar

import "testing"

// StrictProperties closes objects that list properties and say nothing of
// additionalProperties; an explicit additionalProperties, and objects that
// list no properties, keep JSON Schema's meaning.
func TestStrictProperties(t *testing.T) {
	v := tokenizers(t)[0].vocab
	for _, tc := range []struct {
		schema string
		cases  map[string]bool
	}{
		{`{"type": "object", "properties": {"a": {"type": "integer"}}}`,
			map[string]bool{`{"a":1}`: true, `{}`: true, `{"a":1,"b":2}`: false, `{"x":0,"a":1}`: false}},
		{`{"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}}`,
			map[string]bool{`{"a":1,"b":"x"}`: true, `{"a":1,"b":2}`: false}},
		{`{"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "null"}}}}}`,
			map[string]bool{`{"a":{"b":null}}`: true, `{"a":{"b":null,"c":1}}`: false}},
		{`{"type": "object"}`,
			map[string]bool{`{"x":0}`: true, `{}`: true}},
	} {
		strict, err := CompileJSONSchema(v, []byte(tc.schema), Options{MaxWhitespace: -1, StrictProperties: true})
		if err != nil {
			t.Fatal(err)
		}
		for s, want := range tc.cases {
			if got := walkText(t, strict, s); got != want {
				t.Errorf("strict %s on %s: %v, want %v", tc.schema, s, got, want)
			}
		}
	}
	lenient, err := CompileJSONSchema(v, []byte(`{"type": "object", "properties": {"a": {"type": "integer"}}}`), Options{MaxWhitespace: -1})
	if err != nil {
		t.Fatal(err)
	}
	if !walkText(t, lenient, `{"a":1,"b":2}`) {
		t.Error("without StrictProperties an unlisted member is refused")
	}
}
