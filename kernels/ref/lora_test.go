package ref

import (
	"slices"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

// Hand-computed: A = [[1,2],[3,4]] (rank 2, in 2), B = [[1,0],[0,2],[1,1]] (out 3).
func TestLoRAHandComputed(t *testing.T) {
	s, err := kernels.NewLoRAStack(Backend{}, 2, 2, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteSlot(Backend{}, 1, []float32{1, 2, 3, 4}, []float32{1, 0, 0, 2, 1, 1}) // slot 0 stays zero
	x := []float32{1, 1, 2, -1}                                                   // two tokens
	slots := hi([]int32{1, -1})
	z := []float32{0, 0, 9, 9}
	Backend{}.LoRAShrink(hb(z), hb(x), s, slots)
	if !slices.Equal(z, []float32{3, 7, 9, 9}) {
		t.Fatalf("shrink z = %v", z)
	}
	y := []float32{10, 10, 10, 5, 5, 5}
	Backend{}.LoRAExpand(hb(y), hb(z), s, slots)
	if !slices.Equal(y, []float32{13, 24, 20, 5, 5, 5}) {
		t.Fatalf("expand y = %v", y)
	}
}
