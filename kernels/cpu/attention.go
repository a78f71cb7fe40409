package cpu

import (
	"fmt"
	"math"

	"github.com/parrot-llm/parrot/kernels"
)

var _ kernels.KVStorage = (*Backend)(nil)

// attnJob: items are (token, head) pairs, item = t*nHeads + h; scratch[w]
// holds the scores of one pair. Position p of token t's sequence is row
// table[p/blockSize]*blockSize + p%blockSize of k and v, table being the
// sequence's row of the block tables (vLLM's paged_attention_kernel walks
// them the same way, block by block; here runs of consecutive blocks are
// walked in one stretch). The arithmetic is that of the unpaged kernel:
// scores in position order, one max, one sum, axpys in position order.
// A bfloat16 cache (k16, v16 instead of k, v) is read the same way, its
// values widened as they are loaded.
type attnJob struct {
	out, q, k, v              []float32
	k16, v16                  []uint16
	seq, pos, tables          []int32
	maxBlocks, blockSize      int
	nHeads, nKVHeads, headDim int
	scratch                   [][]float32
	simd                      bool
}

func (j *attnJob) run(w, lo, hi int) {
	hd := j.headDim
	kvDim := j.nKVHeads * hd
	group := j.nHeads / j.nKVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	bs, k, v, simd := j.blockSize, j.k, j.v, j.simd
	for it := lo; it < hi; it++ {
		t, h := it/j.nHeads, it%j.nHeads
		g := h / group
		n := int(j.pos[t]) + 1 // positions attended
		qh := j.q[it*hd : (it+1)*hd]
		oh := j.out[it*hd : (it+1)*hd]
		clear(oh)
		if n <= 0 {
			continue
		}
		table := j.tables[int(j.seq[t])*j.maxBlocks:][:(n+bs-1)/bs]
		scores := j.scratch[w][:n]
		maxScore := float32(math.Inf(-1))
		for bi := 0; bi < len(table); {
			r := run(table[bi:])
			sc := scores[bi*bs : min((bi+r)*bs, n)]
			first := int(table[bi])*bs*kvDim + g*hd
			for i := range sc {
				var s float32
				if j.k16 != nil {
					s = dotBF16(j.k16[first+i*kvDim:][:hd], qh, simd) * scale
				} else {
					s = dot(qh, k[first+i*kvDim:][:hd], simd) * scale
				}
				sc[i] = s
				maxScore = max(maxScore, s)
			}
			bi += r
		}
		var sum float32
		for p, s := range scores {
			e := expf(s - maxScore)
			scores[p] = e
			sum += e
		}
		for bi := 0; bi < len(table); {
			r := run(table[bi:])
			sc := scores[bi*bs : min((bi+r)*bs, n)]
			first := int(table[bi])*bs*kvDim + g*hd
			if j.v16 != nil {
				axpyRowsBF16(oh, sc, j.v16[first:], kvDim, simd)
			} else {
				axpyRows(oh, sc, v[first:], kvDim, simd)
			}
			bi += r
		}
		inv := 1 / sum
		for i := range oh {
			oh[i] *= inv
		}
	}
}

// run is the number of leading entries of table that are consecutive block
// ids (at least 1): their rows are consecutive in the cache and are walked
// as one stretch, as an unpaged cache was.
func run(table []int32) int {
	r := 1
	for r < len(table) && table[r] == table[0]+int32(r) {
		r++
	}
	return r
}

// WriteKV: kv.K[slots[t],:] = k[t,:], kv.V[slots[t],:] = v[t,:] (vLLM's
// reshape_and_cache), row copies on the calling goroutine; a bfloat16 cache
// gets each value rounded to nearest, ties to even.
func (b *Backend) WriteKV(kv kernels.KVLayer, kb, vb kernels.Buf, slotsb kernels.IntBuf, kvDim int) {
	const op = "WriteKV"
	k, v, slots := host(op, kb), host(op, vb), hostInts(op, slotsb)
	var K, V []float32
	if !kv.BF16() {
		K, V = host(op, kv.K), host(op, kv.V)
	}
	if kvDim <= 0 {
		panic(fmt.Sprintf("kernels/cpu: WriteKV: row width %d", kvDim))
	}
	need(op, "k", len(k), len(slots)*kvDim)
	need(op, "v", len(v), len(slots)*kvDim)
	rows := min(len(K), len(V)) / kvDim
	if kv.BF16() {
		rows = min(len(kv.K16), len(kv.V16)) / kvDim
	}
	for _, s := range slots {
		if s < 0 || int(s) >= rows {
			panic(fmt.Sprintf("kernels/cpu: WriteKV: slot %d outside the cache of %d rows", s, rows))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for t, s := range slots {
		r := int(s) * kvDim
		kt, vt := k[t*kvDim:(t+1)*kvDim], v[t*kvDim:(t+1)*kvDim]
		if kv.BF16() {
			for i := range kvDim {
				kv.K16[r+i], kv.V16[r+i] = kernels.F32ToBF16(kt[i]), kernels.F32ToBF16(vt[i])
			}
			continue
		}
		copy(K[r:r+kvDim], kt)
		copy(V[r:r+kvDim], vt)
	}
}

// SetKVBF16 chooses the storage of KV caches allocated from now on (see
// kernels.KVStorage): bfloat16 when on, float32 (the default) when off.
func (b *Backend) SetKVBF16(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.kvBF16 = on
}

// KVInBF16 implements kernels.KVStorage.
func (b *Backend) KVInBF16() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.kvBF16
}

// PagedAttention: out[t,h,:] = softmax(q[t,h,:]·K_pᵀ/sqrt(headDim))·V_p over
// the positions p <= Pos[t] of token t's sequence, found through its block
// table, with g = h/(nHeads/nKVHeads). q, out [m.Pos.Len(), nHeads*headDim].
// Work is split by (token, head) pairs; m.MaxLen sizes the scores scratch.
func (b *Backend) PagedAttention(outb, qb kernels.Buf, kv kernels.KVLayer, m kernels.AttnMeta, nHeads, nKVHeads, headDim int) {
	const op = "PagedAttention"
	if nHeads <= 0 || nKVHeads <= 0 || nHeads%nKVHeads != 0 {
		panic(fmt.Sprintf("kernels/cpu: PagedAttention: %d heads is not a multiple of %d KV heads", nHeads, nKVHeads))
	}
	out, q := host(op, outb), host(op, qb)
	var k, v []float32
	if !kv.BF16() {
		k, v = host(op, kv.K), host(op, kv.V)
	}
	seq, pos, tables := hostInts(op, m.Seq), hostInts(op, m.Pos), hostInts(op, m.BlockTables)
	T := len(pos)
	need(op, "q", len(q), T*nHeads*headDim)
	need(op, "out", len(out), T*nHeads*headDim)
	need(op, "Seq", len(seq), T)
	if T == 0 {
		return
	}
	if m.BlockSize <= 0 || m.MaxBlocks <= 0 {
		panic(fmt.Sprintf("kernels/cpu: PagedAttention: block size %d, %d blocks per table", m.BlockSize, m.MaxBlocks))
	}
	nSeqs := len(tables) / m.MaxBlocks
	kvDim := nKVHeads * headDim
	numBlocks := min(len(k), len(v)) / max(1, kvDim*m.BlockSize)
	if kv.BF16() {
		numBlocks = min(len(kv.K16), len(kv.V16)) / max(1, kvDim*m.BlockSize)
	}
	for t, p := range pos {
		if p < -1 || int(p) >= m.MaxLen {
			panic(fmt.Sprintf("kernels/cpu: PagedAttention: token %d at position %d, outside [-1, MaxLen=%d)", t, p, m.MaxLen))
		}
		if p < 0 {
			continue
		}
		s := seq[t]
		nb := int(p)/m.BlockSize + 1
		if s < 0 || int(s) >= nSeqs || nb > m.MaxBlocks {
			panic(fmt.Sprintf("kernels/cpu: PagedAttention: token %d: position %d of sequence %d needs %d blocks of %d block tables of %d", t, p, s, nb, nSeqs, m.MaxBlocks))
		}
		for _, blk := range tables[int(s)*m.MaxBlocks:][:nb] {
			if blk < 0 || int(blk) >= numBlocks {
				panic(fmt.Sprintf("kernels/cpu: PagedAttention: sequence %d: block %d outside the cache of %d blocks", s, blk, numBlocks))
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reserve(m.MaxLen)
	b.attn = attnJob{out: out, q: q, k: k, v: v, k16: kv.K16, v16: kv.V16, seq: seq, pos: pos, tables: tables, maxBlocks: m.MaxBlocks, blockSize: m.BlockSize,
		nHeads: nHeads, nKVHeads: nKVHeads, headDim: headDim, scratch: b.scratch, simd: b.simd}
	b.pool.parallel(&b.attn, T*nHeads, max(1, eltGrain/max(1, m.MaxLen*headDim)))
	b.attn = attnJob{}
}

// GatherRows: dst[i,:] = src[rows[i],:], on the calling goroutine.
func (b *Backend) GatherRows(dstb, srcb kernels.Buf, rowsb kernels.IntBuf, width int) {
	const op = "GatherRows"
	dst, src, rows := host(op, dstb), host(op, srcb), hostInts(op, rowsb)
	need(op, "dst", len(dst), len(rows)*width)
	n := len(src) / max(1, width)
	for _, r := range rows {
		if r < 0 || int(r) >= n {
			panic(fmt.Sprintf("kernels/cpu: GatherRows: row %d outside the source of %d rows", r, n))
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, r := range rows {
		copy(dst[i*width:(i+1)*width], src[int(r)*width:(int(r)+1)*width])
	}
}

// axpyRows: y += Σ_r z[r]·rows[r*ld:][:len(y)], row after row, each added
// exactly as axpy adds it (the AVX2 kernel keeps y in registers across the
// rows for whole groups of 8).
func axpyRows(y, z, rows []float32, ld int, simd bool) {
	n := len(y)
	if len(z) == 0 {
		return
	}
	if !simd || n < 8 {
		for r, zr := range z {
			axpy(y, zr, rows[r*ld:][:n], simd)
		}
		return
	}
	v := n &^ 7
	axpyRowsF32AVX2(y[:v], z, rows, ld)
	if v < n {
		for r, zr := range z {
			axpyAVX2(y[v:], zr, rows[r*ld+v:][:n-v])
		}
	}
}

// axpyRowsBF16 is axpyRows on bfloat16 rows, widened as they are read.
func axpyRowsBF16(y, z []float32, rows []uint16, ld int, simd bool) {
	n := len(y)
	if len(z) == 0 {
		return
	}
	if !simd || n < 8 {
		for r, zr := range z {
			row := rows[r*ld:][:n]
			for i := range y {
				y[i] += zr * kernels.BF16ToF32(row[i])
			}
		}
		return
	}
	v := n &^ 7
	axpyRowsBF16AVX2(y[:v], z, rows, ld)
	if v < n {
		var tail [8]float32
		for r, zr := range z {
			decodeBF16(tail[:n-v], rows[r*ld+v:][:n-v], false)
			axpyAVX2(y[v:], zr, tail[:n-v])
		}
	}
}

// axpy: y += a·x.
func axpy(y []float32, a float32, x []float32, simd bool) {
	if simd && len(y) >= 8 {
		axpyAVX2(y, a, x)
		return
	}
	x = x[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		y[i] += a * x[i]
		y[i+1] += a * x[i+1]
		y[i+2] += a * x[i+2]
		y[i+3] += a * x[i+3]
	}
	for ; i < len(y); i++ {
		y[i] += a * x[i]
	}
}
