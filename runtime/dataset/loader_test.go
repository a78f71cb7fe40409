package dataset

import (
	"reflect"
	"slices"
	"testing"
)

// examples of distinct lengths 1..n: example i has Input [i+1 tokens] of value i.
func lengthExamples(n int) []Example {
	out := make([]Example, n)
	for i := range out {
		in := make([]int32, i%7+1+i/7) // lengths repeat a little
		lab := make([]int32, len(in))
		for t := range in {
			in[t], lab[t] = int32(i), int32(i)
		}
		lab[0] = IgnoreIndex
		out[i] = Example{Input: in, Labels: lab}
	}
	return out
}

func TestLoaderEpochs(t *testing.T) {
	const n, bs = 23, 2
	exs := lengthExamples(n)
	l, err := NewLoader(exs, LoaderOptions{BatchSize: bs, Seed: 3407, Pad: -7})
	if err != nil {
		t.Fatal(err)
	}
	if l.BatchesPerEpoch() != 12 {
		t.Fatalf("batches per epoch %d, want 12", l.BatchesPerEpoch())
	}
	var orders [][]int32
	for epoch := 0; epoch < 3; epoch++ {
		var seen []int32
		var lens []int
		for b := 0; b < l.BatchesPerEpoch(); b++ {
			batch := l.Next()
			if len(batch) != bs && !(b == l.BatchesPerEpoch()-1 && len(batch) == n%bs) {
				t.Fatalf("epoch %d batch %d has %d examples", epoch, b, len(batch))
			}
			longest := 0
			for _, ex := range batch {
				id := ex.Input[0]
				orig := exs[id]
				longest = max(longest, len(orig.Input))
				// Right padding: the example, then pad / IgnoreIndex.
				if !slices.Equal(ex.Input[:len(orig.Input)], orig.Input) || !slices.Equal(ex.Labels[:len(orig.Labels)], orig.Labels) {
					t.Fatalf("example %d changed by batching", id)
				}
				for t2 := len(orig.Input); t2 < len(ex.Input); t2++ {
					if ex.Input[t2] != -7 || ex.Labels[t2] != IgnoreIndex {
						t.Fatalf("padding of example %d: %v / %v", id, ex.Input, ex.Labels)
					}
				}
				seen = append(seen, id)
				lens = append(lens, len(orig.Input))
			}
			for _, ex := range batch {
				if len(ex.Input) != longest {
					t.Fatalf("batch not padded to its longest (%d): %d", longest, len(ex.Input))
				}
			}
		}
		if want := float64(epoch + 1); l.Epoch() != want {
			t.Errorf("Epoch() = %v after epoch %d", l.Epoch(), epoch)
		}
		// Every example once per epoch.
		sorted := slices.Clone(seen)
		slices.Sort(sorted)
		for i, v := range sorted {
			if v != int32(i) {
				t.Fatalf("epoch %d is not a permutation: %v", epoch, seen)
			}
		}
		// Mega-batches of min(23/8, 50) = 2 micro-batches (4 examples) are sorted longest first.
		for start := 0; start < n; start += 4 {
			group := lens[start:min(start+4, n)]
			if !slices.IsSortedFunc(group, func(a, b int) int { return b - a }) {
				t.Errorf("epoch %d mega-batch at %d not sorted by length: %v", epoch, start, group)
			}
		}
		orders = append(orders, seen)
	}
	if reflect.DeepEqual(orders[0], orders[1]) || reflect.DeepEqual(orders[1], orders[2]) {
		t.Error("epochs repeat the same order")
	}

	// Same seed, same order; another seed, another order.
	l2, _ := NewLoader(exs, LoaderOptions{BatchSize: bs, Seed: 3407})
	l3, _ := NewLoader(exs, LoaderOptions{BatchSize: bs, Seed: 1})
	var o2, o3 []int32
	for range l.BatchesPerEpoch() {
		for _, ex := range l2.Next() {
			o2 = append(o2, ex.Input[0])
		}
		for _, ex := range l3.Next() {
			o3 = append(o3, ex.Input[0])
		}
	}
	if !slices.Equal(o2, orders[0]) {
		t.Error("the same seed gave another order")
	}
	if slices.Equal(o3, orders[0]) {
		t.Error("another seed gave the same order")
	}
}

// A loader restored from a saved state yields exactly what the original
// yields next, across epoch boundaries.
func TestLoaderRestore(t *testing.T) {
	exs := lengthExamples(9)
	opts := LoaderOptions{BatchSize: 2, Seed: 42, Pad: 0}
	for _, k := range []int{0, 3, 5, 7} { // 5 batches per epoch: 5 is exactly an epoch end
		a, _ := NewLoader(exs, opts)
		for range k {
			a.Next()
		}
		st := a.State()
		b, _ := NewLoader(exs, opts)
		if err := b.Restore(st); err != nil {
			t.Fatal(err)
		}
		if a.Epoch() != b.Epoch() {
			t.Errorf("k=%d: epoch %v vs %v", k, a.Epoch(), b.Epoch())
		}
		for i := range 12 {
			if x, y := a.Next(), b.Next(); !reflect.DeepEqual(x, y) {
				t.Fatalf("k=%d: batch %d differs after restore", k, i)
			}
		}
	}
	b, _ := NewLoader(exs, opts)
	if err := b.Restore(State{Seed: 42, Examples: 8}); err == nil {
		t.Error("restore on another dataset size: no error")
	}
	if err := b.Restore(State{Seed: 1, Examples: 9}); err == nil {
		t.Error("restore with another seed: no error")
	}
	if _, err := NewLoader(nil, opts); err == nil {
		t.Error("empty loader: no error")
	}
}

func TestPad(t *testing.T) {
	got := Pad([]Example{{Input: []int32{1, 2, 3}, Labels: []int32{m, 2, 3}}, {Input: []int32{4}, Labels: []int32{4}}}, 9)
	want := []Example{{Input: []int32{1, 2, 3}, Labels: []int32{m, 2, 3}}, {Input: []int32{4, 9, 9}, Labels: []int32{4, m, m}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Pad = %v, want %v", got, want)
	}
}
