package pyjson

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
)

// testdata/pyfloat_repr.json holds [float64 LE hex, Python repr] pairs
// written by testdata/gen_pyfloat_repr.py.
func TestFloatRepr(t *testing.T) {
	raw, err := os.ReadFile("testdata/pyfloat_repr.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases [][2]string
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 400 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		b, err := hex.DecodeString(c[0])
		if err != nil {
			t.Fatal(err)
		}
		f := math.Float64frombits(binary.LittleEndian.Uint64(b))
		if got := FloatRepr(f); got != c[1] {
			t.Errorf("%v: %q, want %q", f, got, c[1])
		}
	}
}

// testdata/dumps.json holds json.dumps outputs written by
// testdata/gen_dumps.py; each document is decoded keeping its key order
// (into an Object, or a map when sort_keys) and its int/float distinction.
func TestMarshalMatchesPython(t *testing.T) {
	raw, err := os.ReadFile("testdata/dumps.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Doc         json.RawMessage
		Float       string
		Indent      *int
		EnsureASCII bool `json:"ensure_ascii"`
		SortKeys    bool `json:"sort_keys"`
		Out         string
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 300 {
		t.Fatalf("only %d cases", len(cases))
	}
	for i, c := range cases {
		var doc any
		if c.Float != "" {
			if doc, err = strconv.ParseFloat(c.Float, 64); err != nil {
				t.Fatal(err)
			}
		} else {
			dec := json.NewDecoder(bytes.NewReader(c.Doc))
			dec.UseNumber()
			if doc, err = decodeOrdered(dec, c.SortKeys); err != nil {
				t.Fatalf("case %d: %v", i, err)
			}
		}
		o := Options{EnsureASCII: c.EnsureASCII}
		if c.Indent != nil {
			o.Indent = *c.Indent
		}
		got, err := Marshal(doc, o)
		if err != nil {
			t.Errorf("case %d: %v", i, err)
		} else if string(got) != c.Out {
			t.Errorf("case %d (%+v):\n got %s\nwant %s", i, o, got, c.Out)
		}
	}
}

// decodeOrdered reads one JSON value from dec: objects as Objects in file
// order (maps if asMap), numbers as int or float64 as Python would read them.
func decodeOrdered(dec *json.Decoder, asMap bool) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch x := tok.(type) {
	case json.Number:
		if strings.ContainsAny(string(x), ".eE") {
			return x.Float64()
		}
		n, err := x.Int64()
		return int(n), err
	case json.Delim:
		switch x {
		case '[':
			list := []any{}
			for dec.More() {
				v, err := decodeOrdered(dec, asMap)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token()
			return list, err
		case '{':
			obj := Object{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeOrdered(dec, asMap)
				if err != nil {
					return nil, err
				}
				obj = append(obj, Member{Key: k.(string), Value: v})
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			if !asMap {
				return obj, nil
			}
			m := make(map[string]any, len(obj))
			for _, kv := range obj {
				m[kv.Key] = kv.Value
			}
			return m, nil
		}
		return nil, fmt.Errorf("unexpected %v", x)
	default:
		return x, nil // nil, bool, string
	}
}

// Go-only inputs: typed slices, float32, json.Number, and the errors.
func TestMarshalGoTypes(t *testing.T) {
	f32 := float32(0.1) // its exact value, 0.100000001490116119384765625
	got, err := Marshal(Object{
		{Key: "ints", Value: []int{1, -2}}, {Key: "strs", Value: []string{"a"}},
		{Key: "f32", Value: f32}, {Key: "u8", Value: uint8(255)}, {Key: "i64", Value: int64(-1) << 62},
		{Key: "num", Value: json.Number("16.0")}, {Key: "none", Value: []int{}},
	}, Options{})
	want := `{"ints": [1, -2], "strs": ["a"], "f32": 0.10000000149011612, "u8": 255, "i64": -4611686018427387904, "num": 16.0, "none": []}`
	if err != nil || string(got) != want {
		t.Errorf("got %s, %v\nwant %s", got, err, want)
	}
	for _, v := range []any{json.Number(""), json.Number("1 2"), json.Number("NaN"), Object{{Key: "x", Value: struct{}{}}}, []float32{1}} {
		if b, err := Marshal(v, Options{}); err == nil {
			t.Errorf("Marshal(%#v) = %s, want an error", v, b)
		}
	}
	if _, err := Marshal(1, Options{Indent: -1}); err == nil {
		t.Error("negative indent accepted")
	}
}
