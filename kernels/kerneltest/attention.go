package kerneltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// testWriteKV: each token's K and V rows land at their slots exactly (in a
// bfloat16 cache, rounded exactly as ref rounds them), and every other row
// of the cache is left as it was.
func testWriteKV(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(41, 42))
	m := newMem(t, b)
	for _, kvDim := range []int{1, 6, 64, 130} {
		for _, T := range []int{1, 5, 33} {
			rows := T + 7
			slots := make([]int32, T)
			for i, p := range rng.Perm(rows)[:T] {
				slots[i] = int32(p)
			}
			K0, V0 := Vec(rng, rows*kvDim), Vec(rng, rows*kvDim)
			k, v := Vec(rng, T*kvDim), Vec(rng, T*kvDim)
			what := fmt.Sprintf("writekv dim %d T %d", kvDim, T)
			if kvBF16(b) {
				want := bf16Layer(K0, V0)
				got := cloneLayer(want)
				rb.WriteKV(want, hb(k), hb(v), hi(slots), kvDim)
				b.WriteKV(got, m.in(k), m.in(v), m.inInts(slots), kvDim)
				if !slices.Equal(got.K16, want.K16) || !slices.Equal(got.V16, want.V16) {
					t.Fatalf("%s: the bfloat16 cache differs from ref's", what)
				}
				m.reset()
				continue
			}
			wantK, wantV := clone(K0), clone(V0)
			rb.WriteKV(kernels.KVLayer{K: hb(wantK), V: hb(wantV)}, hb(k), hb(v), hi(slots), kvDim)
			gotK, gotV := m.outWith(K0, len(K0)), m.outWith(V0, len(V0))
			b.WriteKV(kernels.KVLayer{K: gotK.buf(), V: gotV.buf()}, m.in(k), m.in(v), m.inInts(slots), kvDim)
			exact(t, what+" K", m.read(what+" K", gotK), wantK)
			exact(t, what+" V", m.read(what+" V", gotV), wantV)
			m.reset()
		}
	}
}

// kvBF16 reports whether b keeps KV caches in bfloat16: the attention tests
// then give it bfloat16 layers (host memory, kernels.KVStorage).
func kvBF16(b kernels.Backend) bool { return kernels.KVBytesPerValue(b) == 2 }

// bf16Layer is a bfloat16 layer holding K and V rounded.
func bf16Layer(K, V []float32) kernels.KVLayer {
	l := kernels.KVLayer{K16: make([]uint16, len(K)), V16: make([]uint16, len(V))}
	for i := range K {
		l.K16[i] = kernels.F32ToBF16(K[i])
	}
	for i := range V {
		l.V16[i] = kernels.F32ToBF16(V[i])
	}
	return l
}

// cloneLayer copies a bfloat16 layer.
func cloneLayer(l kernels.KVLayer) kernels.KVLayer {
	return kernels.KVLayer{K16: append([]uint16(nil), l.K16...), V16: append([]uint16(nil), l.V16...)}
}

// testGatherRows: rows in any order, repeated, exactly.
func testGatherRows(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(43, 44))
	m := newMem(t, b)
	for _, width := range []int{1, 7, 64, 2048} {
		for _, n := range []int{1, 3, 9} {
			const srcRows = 11
			src := Vec(rng, srcRows*width)
			rows := make([]int32, n)
			for i := range rows {
				rows[i] = int32(rng.IntN(srcRows))
			}
			want := make([]float32, n*width)
			rb.GatherRows(hb(want), hb(src), hi(rows), width)
			got := m.out(n * width)
			b.GatherRows(got.buf(), m.in(src), m.inInts(rows), width)
			what := fmt.Sprintf("gatherrows width %d n %d", width, n)
			exact(t, what, m.read(what, got), want)
			m.reset()
		}
	}
}

// pagedSeq is one sequence of a step: ctx positions already cached, and
// new tokens at positions ctx.. in this step.
type pagedSeq struct{ ctx, new int }

// pagedCase is one step of paged attention.
type pagedCase struct {
	name      string
	seqs      []pagedSeq
	blockSize int
	share     bool // sequence 1's first block is sequence 0's (a shared prefix)
	shuffle   bool // the step's tokens in random order, sequences interleaved
	idle      int  // extra tokens at position -1, which attend nothing
	slack     int  // MaxLen is this much more than the longest query needs (it is only a hint)
}

// pagedLayout is a step's attention metadata and the size of its cache, on
// the host.
type pagedLayout struct {
	meta      kernels.AttnMeta // MaxBlocks, BlockSize, MaxLen (handles unset)
	numBlocks int
	tables    []int32 // [nSeqs, MaxBlocks]
	seq, pos  []int32 // [T]
}

// layout gives every sequence its blocks, drawn at random (so that they are
// neither contiguous nor in order) from a pool with a few spare blocks; the
// table entries past a sequence's last block hold other, valid block ids,
// which the op must not use.
func layout(rng *rand.Rand, c pagedCase) pagedLayout {
	bs := c.blockSize
	nb := make([]int, len(c.seqs))
	maxBlocks, total := 1, 0
	for s, q := range c.seqs {
		nb[s] = (q.ctx + q.new + bs - 1) / bs
		maxBlocks = max(maxBlocks, nb[s]+1)
		total += nb[s]
	}
	l := pagedLayout{numBlocks: total + 3, tables: make([]int32, len(c.seqs)*maxBlocks)}
	perm := rng.Perm(l.numBlocks)
	next := 0
	for s := range c.seqs {
		row := l.tables[s*maxBlocks : (s+1)*maxBlocks]
		for j := range row {
			switch {
			case j >= nb[s]:
				row[j] = int32(rng.IntN(l.numBlocks))
			case c.share && s == 1 && j == 0:
				row[j] = l.tables[0]
			default:
				row[j] = int32(perm[next])
				next++
			}
		}
	}
	maxLen := 0
	for s, q := range c.seqs {
		for i := 0; i < q.new; i++ {
			l.seq, l.pos = append(l.seq, int32(s)), append(l.pos, int32(q.ctx+i))
			maxLen = max(maxLen, q.ctx+i+1)
		}
	}
	if c.shuffle {
		rng.Shuffle(len(l.seq), func(i, j int) {
			l.seq[i], l.seq[j] = l.seq[j], l.seq[i]
			l.pos[i], l.pos[j] = l.pos[j], l.pos[i]
		})
	}
	for range c.idle {
		l.seq, l.pos = append(l.seq, 0), append(l.pos, -1)
	}
	l.meta = kernels.AttnMeta{MaxBlocks: maxBlocks, BlockSize: bs, MaxLen: maxLen + c.slack}
	return l
}

// hostMeta and devMeta are l's metadata on the host and in b's memory.
func (l pagedLayout) hostMeta() kernels.AttnMeta {
	m := l.meta
	m.Seq, m.Pos, m.BlockTables = hi(l.seq), hi(l.pos), hi(l.tables)
	return m
}

func (l pagedLayout) devMeta(m *mem) kernels.AttnMeta {
	d := l.meta
	d.Seq, d.Pos, d.BlockTables = m.inInts(l.seq), m.inInts(l.pos), m.inInts(l.tables)
	return d
}

func pagedCases() []pagedCase {
	var cs []pagedCase
	// One sequence, T new tokens after start cached ones, in blocks of 1,
	// 16 and 5 (a partial last block most of the time).
	i := 0
	for _, T := range []int{1, 3, 7} {
		for _, start := range []int{0, 1, 17, 200} {
			bs := []int{1, 16, 5}[i%3]
			i++
			cs = append(cs, pagedCase{name: fmt.Sprintf("T %d start %d block %d", T, start, bs),
				seqs: []pagedSeq{{start, T}}, blockSize: bs})
		}
	}
	return append(cs,
		pagedCase{name: "decode batch", seqs: []pagedSeq{{0, 1}, {15, 1}, {16, 1}, {40, 1}, {200, 1}},
			blockSize: 16, shuffle: true, idle: 2, slack: 5},
		pagedCase{name: "shared prefix", seqs: []pagedSeq{{16, 3}, {20, 1}, {0, 5}}, blockSize: 16, share: true},
		pagedCase{name: "shared prefix, blocks of 4", seqs: []pagedSeq{{9, 2}, {4, 3}}, blockSize: 4, share: true, shuffle: true},
		pagedCase{name: "prefill and decode", seqs: []pagedSeq{{0, 7}, {33, 1}, {5, 2}}, blockSize: 8, shuffle: true},
		pagedCase{name: "blocks of 1, shared", seqs: []pagedSeq{{3, 2}, {9, 1}}, blockSize: 1, share: true},
	)
}

// testPagedAttention: each step first stores its tokens' keys and values
// with WriteKV at the slots of their positions (as the model does), then
// runs PagedAttention; the reference does the same on host copies.
func testPagedAttention(t *testing.T, b kernels.Backend) {
	rng := rand.New(rand.NewPCG(9, 10))
	m := newMem(t, b)
	heads := [][2]int{{1, 1}, {2, 1}, {3, 3}, {4, 2}, {4, 1}, {6, 3}, {8, 2}, {12, 3}, {5, 5}}
	for _, h := range heads {
		nHeads, nKV := h[0], h[1]
		for _, hd := range []int{1, 6, 16, 64} {
			for _, c := range pagedCases() {
				what := fmt.Sprintf("paged attention heads %d/%d dim %d, %s", nHeads, nKV, hd, c.name)
				pagedAttention(t, m, rng, c, nHeads, nKV, hd, what)
				m.reset()
			}
		}
	}
}

func pagedAttention(t *testing.T, m *mem, rng *rand.Rand, c pagedCase, nHeads, nKV, hd int, what string) {
	t.Helper()
	b := m.b
	l := layout(rng, c)
	kvDim := nKV * hd
	rows := l.numBlocks * c.blockSize
	T := len(l.pos)
	K, V := Vec(rng, rows*kvDim), Vec(rng, rows*kvDim)
	q := Vec(rng, T*nHeads*hd)
	for i := range q {
		q[i] *= 3 // sharper softmax
	}
	// The step's own keys and values go in with WriteKV.
	var slots []int32
	for i, p := range l.pos {
		if p >= 0 {
			slots = append(slots, int32(ref.KVRow(l.meta, l.tables, int(l.seq[i]), int(p))))
		}
	}
	k, v := Vec(rng, len(slots)*kvDim), Vec(rng, len(slots)*kvDim)

	if kvBF16(b) {
		pagedAttentionBF16(t, m, l, K, V, q, k, v, slots, nHeads, nKV, hd, what)
		return
	}
	hm := l.hostMeta()
	hK, hV := clone(K), clone(V)
	rb.WriteKV(kernels.KVLayer{K: hb(hK), V: hb(hV)}, hb(k), hb(v), hi(slots), kvDim)
	want := make([]float32, len(q))
	rb.PagedAttention(hb(want), hb(q), kernels.KVLayer{K: hb(hK), V: hb(hV)}, hm, nHeads, nKV, hd)

	dkv := kernels.KVLayer{K: m.in(K), V: m.in(V)}
	b.WriteKV(dkv, m.in(k), m.in(v), m.inInts(slots), kvDim)
	got := m.out(len(q))
	b.PagedAttention(got.buf(), m.in(q), dkv, l.devMeta(m), nHeads, nKV, hd)
	res := m.read(what, got)
	// The output is a convex combination of V rows.
	maxV := 0.0
	for _, x := range hV {
		maxV = math.Max(maxV, math.Abs(float64(x)))
	}
	near(t, what, res, want, 0, 2*SumTol*maxV)
	for i, p := range l.pos {
		if p < 0 {
			exact(t, what+" (position -1)", res[i*nHeads*hd:(i+1)*nHeads*hd], make([]float32, nHeads*hd))
		}
	}
	// The cache is the WriteKV result, untouched by the attention.
	exact(t, what+" K cache", m.readBuf(dkv.K), hK)
	exact(t, what+" V cache", m.readBuf(dkv.V), hV)
}

// pagedAttentionBF16 is pagedAttention's check on bfloat16 layers: ref and b
// each write the step's rows into their own copy of the same cache and
// attend over it.
func pagedAttentionBF16(t *testing.T, m *mem, l pagedLayout, K, V, q, k, v []float32, slots []int32, nHeads, nKV, hd int, what string) {
	t.Helper()
	b := m.b
	kvDim := nKV * hd
	hkv := bf16Layer(K, V)
	dkv := cloneLayer(hkv)
	rb.WriteKV(hkv, hb(k), hb(v), hi(slots), kvDim)
	want := make([]float32, len(q))
	rb.PagedAttention(hb(want), hb(q), hkv, l.hostMeta(), nHeads, nKV, hd)
	b.WriteKV(dkv, m.in(k), m.in(v), m.inInts(slots), kvDim)
	got := m.out(len(q))
	b.PagedAttention(got.buf(), m.in(q), dkv, l.devMeta(m), nHeads, nKV, hd)
	res := m.read(what, got)
	maxV := 0.0
	for _, h := range hkv.V16 {
		maxV = math.Max(maxV, math.Abs(float64(kernels.BF16ToF32(h))))
	}
	near(t, what+" (bfloat16 cache)", res, want, 0, 2*SumTol*maxV)
	for i, p := range l.pos {
		if p < 0 {
			exact(t, what+" (position -1)", res[i*nHeads*hd:(i+1)*nHeads*hd], make([]float32, nHeads*hd))
		}
	}
	if !slices.Equal(dkv.K16, hkv.K16) || !slices.Equal(dkv.V16, hkv.V16) {
		t.Fatalf("%s: the bfloat16 cache differs from ref's after WriteKV and attention", what)
	}
}
