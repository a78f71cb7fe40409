package quant

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"testing"
)

// testdata/pyfloat_repr.json holds [float64 LE hex, Python repr] pairs
// written by testdata/gen_pyfloat_repr.py.
func TestPyFloatRepr(t *testing.T) {
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
		if got := PyFloatRepr(f); got != c[1] {
			t.Errorf("%v: %q, want %q", f, got, c[1])
		}
	}
}
