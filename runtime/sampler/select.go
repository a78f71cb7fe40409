package sampler

import (
	"math/bits"
	"slices"
)

// candidate is a token still in the running, with its unnormalised
// probability v = exp((logit-max)/T).
type candidate struct {
	id int32
	v  float32
}

// before is the rank order used by every filter: larger v first, then lower
// id. It is a strict total order (ids are distinct), so selections are
// deterministic and match a stable sort by (v desc, id asc).
func before(a, b candidate) bool {
	return a.v > b.v || (a.v == b.v && a.id < b.id)
}

func compareRank(a, b candidate) int {
	if before(a, b) {
		return -1
	}
	if before(b, a) {
		return 1
	}
	return 0
}

// partition reorders c (len >= 2) around a median-of-three pivot and returns
// the pivot's final index p: c[:p] rank before c[p], c[p+1:] after it.
func partition(c []candidate) int {
	n := len(c)
	a, m, z := 0, n/2, n-1
	if before(c[m], c[a]) {
		c[a], c[m] = c[m], c[a]
	}
	if before(c[z], c[m]) {
		c[m], c[z] = c[z], c[m]
		if before(c[m], c[a]) {
			c[a], c[m] = c[m], c[a]
		}
	}
	c[m], c[z] = c[z], c[m] // pivot (the median) to the end
	pivot := c[z]
	p := 0
	for i := 0; i < z; i++ {
		if before(c[i], pivot) {
			c[i], c[p] = c[p], c[i]
			p++
		}
	}
	c[p], c[z] = c[z], c[p]
	return p
}

// partitionBudget bounds the quickselect passes before falling back to a
// sort, so adversarial inputs cost O(n log n), not O(n²).

func partitionBudget(n int) int { return 2*bits.Len(uint(n)) + 8 }

// kthLargest returns the k-th largest of the values in x that are >= lo
// (NaN never is), or lo when fewer than k are. heap is scratch space with
// capacity >= k. It streams x through a size-k min-heap: most values fail
// the comparison with the heap's minimum, so this is one pass, O(n) in
// practice and O(n log k) at worst.
func kthLargest(x []float32, lo float32, k int, heap []float32) float32 {
	h := heap[:0]
	for _, v := range x {
		if !(v >= lo) {
			continue
		}
		if len(h) < k {
			h = append(h, v)
			siftUp(h, len(h)-1)
		} else if v > h[0] {
			h[0] = v
			siftDown(h, 0)
		}
	}
	if len(h) < k {
		return lo
	}
	return h[0]
}

func siftUp(h []float32, i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent] <= h[i] {
			return
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
}

func siftDown(h []float32, i int) {
	for {
		small := i
		if l := 2*i + 1; l < len(h) && h[l] < h[small] {
			small = l
		}
		if r := 2*i + 2; r < len(h) && h[r] < h[small] {
			small = r
		}
		if small == i {
			return
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
}

// nucleusSortBelow is the range size under which nucleus sorts instead of
// partitioning.
const nucleusSortBelow = 32

// nucleus reorders c (v = unnormalised probabilities) so that c[:m] is the
// top_p nucleus and returns m: the fewest first-ranked candidates whose mass
// reaches need (= top_p × total mass). Equivalently, a candidate is kept iff
// the mass ranked strictly above it is < need, which is HF's and vLLM's
// `cumsum(ascending) <= 1-top_p` mask. Returns at least 1 when len(c) > 0.
//
// It is a quickselect on mass rather than on rank: partition, sum the upper
// part, and continue in whichever part holds the boundary. O(n) expected.
func nucleus(c []candidate, need float64) int {
	lo, hi := 0, len(c)
	acc := 0.0 // mass of c[:lo], all inside the nucleus
	// Invariant: c[:lo] rank before c[lo:hi], which rank before c[hi:];
	// acc < need; the boundary lies in c[lo:hi] (or is hi).
	for budget := partitionBudget(len(c)); hi-lo > nucleusSortBelow && budget > 0; budget-- {
		p := lo + partition(c[lo:hi])
		upper := 0.0
		for _, x := range c[lo:p] {
			upper += float64(x.v)
		}
		switch {
		case acc+upper >= need:
			hi = p
		case acc+upper+float64(c[p].v) >= need:
			return p + 1
		default:
			acc += upper + float64(c[p].v)
			lo = p + 1
		}
	}
	slices.SortFunc(c[lo:hi], compareRank)
	for i := lo; i < hi; i++ {
		acc += float64(c[i].v)
		if acc >= need {
			return i + 1
		}
	}
	// Only reached through rounding (the sums above were taken in another
	// order): everything up to hi is in.
	return max(hi, min(1, len(c)))
}
