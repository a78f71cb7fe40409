package dataset

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
)

// LoaderOptions configure batching.
type LoaderOptions struct {
	BatchSize int    // examples per micro-batch (per_device_train_batch_size)
	Seed      uint64 // the order of every epoch is a function of (Seed, epoch)
	Pad       int32  // input id of padding (labels are padded with IgnoreIndex)
}

// State is where a Loader stands: enough to resume the exact sequence of
// batches. Examples guards against resuming on a different dataset.
type State struct {
	Seed     uint64 `json:"seed"`
	Epoch    int    `json:"epoch"`    // epochs completed
	Position int    `json:"position"` // micro-batches taken from the current epoch
	Examples int    `json:"examples"`
}

// Loader yields padded micro-batches, epoch after epoch. Each epoch is a
// fresh permutation of the examples (seeded by Seed and the epoch), cut into
// groups of similar length as transformers' LengthGroupedSampler does: the
// permutation is split into mega-batches of up to 50 micro-batches, each
// sorted by length, longest first, then cut into micro-batches. So padding
// stays small while the order stays random.
type Loader struct {
	examples []Example
	o        LoaderOptions
	st       State
	batches  [][]int // the current epoch's micro-batches (indices into examples)
}

// NewLoader starts at epoch 0, position 0.
func NewLoader(examples []Example, o LoaderOptions) (*Loader, error) {
	if len(examples) == 0 {
		return nil, errors.New("dataset: no examples to load")
	}
	if o.BatchSize < 1 {
		return nil, fmt.Errorf("dataset: batch size %d must be at least 1", o.BatchSize)
	}
	l := &Loader{examples: examples, o: o, st: State{Seed: o.Seed, Examples: len(examples)}}
	l.batches = l.epochBatches(0)
	return l, nil
}

// BatchesPerEpoch is the number of micro-batches in an epoch (the last one
// may be smaller than BatchSize).
func (l *Loader) BatchesPerEpoch() int { return (len(l.examples) + l.o.BatchSize - 1) / l.o.BatchSize }

// State returns the loader's position.
func (l *Loader) State() State { return l.st }

// Restore moves the loader to a saved position.
func (l *Loader) Restore(s State) error {
	switch {
	case s.Examples != len(l.examples):
		return fmt.Errorf("dataset: the checkpoint was made on %d examples, this dataset has %d", s.Examples, len(l.examples))
	case s.Seed != l.o.Seed:
		return fmt.Errorf("dataset: the checkpoint was made with seed %d, not %d", s.Seed, l.o.Seed)
	case s.Epoch < 0 || s.Position < 0 || s.Position > l.BatchesPerEpoch():
		return fmt.Errorf("dataset: bad loader state epoch %d position %d", s.Epoch, s.Position)
	}
	l.st = s
	l.batches = l.epochBatches(s.Epoch)
	return nil
}

// Epoch is the fractional number of epochs consumed.
func (l *Loader) Epoch() float64 {
	return float64(l.st.Epoch) + float64(l.st.Position)/float64(l.BatchesPerEpoch())
}

// EpochEnd reports whether the current epoch has no micro-batch left.
func (l *Loader) EpochEnd() bool { return l.st.Position >= len(l.batches) }

// Next returns the next micro-batch, padded on the right to its longest
// example; after the last one of an epoch it starts the next epoch.
func (l *Loader) Next() []Example {
	if l.EpochEnd() {
		l.st.Epoch++
		l.st.Position = 0
		l.batches = l.epochBatches(l.st.Epoch)
	}
	idx := l.batches[l.st.Position]
	l.st.Position++
	return Pad(l.pick(idx), l.o.Pad)
}

func (l *Loader) pick(idx []int) []Example {
	out := make([]Example, len(idx))
	for i, j := range idx {
		out[i] = l.examples[j]
	}
	return out
}

// epochBatches computes the micro-batches of an epoch.
func (l *Loader) epochBatches(epoch int) [][]int {
	n, bs := len(l.examples), l.o.BatchSize
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	shuffle(perm, rand.New(rand.NewPCG(l.o.Seed, uint64(epoch))))
	// LengthGroupedSampler's megabatch size: min(n / (4·bs), 50) micro-batches, at least 1.
	mega := min(n/(4*bs), 50)
	mega = max(mega, 1) * bs
	var batches [][]int
	for start := 0; start < n; start += mega {
		group := perm[start:min(start+mega, n)]
		slices.SortStableFunc(group, func(a, b int) int { return len(l.examples[b].Input) - len(l.examples[a].Input) })
		for i := 0; i < len(group); i += bs {
			batches = append(batches, slices.Clone(group[i:min(i+bs, len(group))]))
		}
	}
	return batches
}

// shuffle is Fisher–Yates with unbiased bounded draws, written out so the
// order depends only on the PCG stream (not on a library's algorithm).
func shuffle(a []int, r *rand.Rand) {
	for i := len(a) - 1; i > 0; i-- {
		j := int(uint64n(r, uint64(i+1)))
		a[i], a[j] = a[j], a[i]
	}
}

// uint64n draws uniformly from [0, n) by rejection.
func uint64n(r *rand.Rand, n uint64) uint64 {
	limit := -n % n // 2^64 mod n: values below it would bias the result
	for {
		v := r.Uint64()
		if v >= limit {
			return v % n
		}
	}
}

// Pad right-pads a micro-batch to its longest example (DataCollatorForSeq2Seq
// with padding_side "right"): inputs with pad, labels with IgnoreIndex. The
// examples are copied.
func Pad(batch []Example, pad int32) []Example {
	longest := 0
	for _, ex := range batch {
		longest = max(longest, len(ex.Input))
	}
	out := make([]Example, len(batch))
	for i, ex := range batch {
		in := make([]int32, longest)
		lab := make([]int32, longest)
		copy(in, ex.Input)
		copy(lab, ex.Labels)
		for t := len(ex.Input); t < longest; t++ {
			in[t], lab[t] = pad, IgnoreIndex
		}
		out[i] = Example{Input: in, Labels: lab}
	}
	return out
}
