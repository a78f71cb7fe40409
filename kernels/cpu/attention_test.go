package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/kernels/kerneltest"
	"github.com/parrot-llm/parrot/kernels/ref"
)

// contiguousAttention is this package's attention kernel as it was before
// the KV cache was paged (kernels.KVRef: each token attends the first n
// rows of its own K and V), one (token, head) pair after the other. It is
// kept to show that PagedAttention computes exactly the same thing.
func contiguousAttention(out, q []float32, K, V [][]float32, lens []int, nHeads, nKVHeads, headDim int, simd bool) {
	hd := headDim
	kvDim := nKVHeads * hd
	group := nHeads / nKVHeads
	scale := float32(1 / math.Sqrt(float64(hd)))
	for it := 0; it < len(lens)*nHeads; it++ {
		t, h := it/nHeads, it%nHeads
		g := h / group
		n := lens[t]
		qh := q[it*hd : (it+1)*hd]
		oh := out[it*hd : (it+1)*hd]
		clear(oh)
		if n == 0 {
			continue
		}
		scores := make([]float32, n)
		maxScore := float32(math.Inf(-1))
		for p := range scores {
			s := dot(qh, K[t][p*kvDim+g*hd:p*kvDim+(g+1)*hd], simd) * scale
			scores[p] = s
			maxScore = max(maxScore, s)
		}
		var sum float32
		for p, s := range scores {
			e := expf(s - maxScore)
			scores[p] = e
			sum += e
		}
		for p, e := range scores {
			axpy(oh, e, V[t][p*kvDim+g*hd:p*kvDim+(g+1)*hd], simd)
		}
		inv := 1 / sum
		for i := range oh {
			oh[i] *= inv
		}
	}
}

func bitsEqual(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v, want %v (bit for bit)", what, i, got[i], want[i])
		}
	}
}

// PagedAttention over shuffled, shared and partial blocks gives, bit for
// bit, what the contiguous kernel gives on each sequence's rows gathered in
// order, and what PagedAttention itself gives on that gathered cache.
func TestPagedAttentionMatchesContiguous(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	hb, hi := kernels.HostBuf, kernels.HostIntBuf
	for _, b := range variants(t) {
		for _, c := range []struct{ nHeads, nKV, hd, bs int }{
			{8, 2, 16, 16}, {4, 4, 64, 1}, {6, 3, 6, 5}, {12, 3, 64, 16}, {2, 1, 8, 3},
		} {
			name := fmt.Sprintf("%s-%d %+v", b.Name(), b.Threads(), c)
			kvDim := c.nKV * c.hd
			// Four sequences; sequence 1 shares sequence 0's first block.
			lens := []int{37, 21, 1, 90}
			maxBlocks := (90+c.bs-1)/c.bs + 1
			var numBlocks int
			for _, L := range lens {
				numBlocks += (L + c.bs - 1) / c.bs
			}
			numBlocks += 2
			perm := rng.Perm(numBlocks)
			tables := make([]int32, len(lens)*maxBlocks)
			next := 0
			for s, L := range lens {
				for j := 0; j < (L+c.bs-1)/c.bs; j++ {
					if s == 1 && j == 0 {
						tables[s*maxBlocks] = tables[0]
						continue
					}
					tables[s*maxBlocks+j] = int32(perm[next])
					next++
				}
			}
			K := kerneltest.Vec(rng, numBlocks*c.bs*kvDim)
			V := kerneltest.Vec(rng, numBlocks*c.bs*kvDim)
			// Queries: every sequence's last position, and a few earlier ones.
			var seq, pos []int32
			for s, L := range lens {
				for _, p := range []int{L - 1, L / 2, c.bs - 1, c.bs} {
					if p >= 0 && p < L {
						seq, pos = append(seq, int32(s)), append(pos, int32(p))
					}
				}
			}
			T := len(pos)
			meta := kernels.AttnMeta{Seq: hi(seq), Pos: hi(pos), BlockTables: hi(tables), MaxBlocks: maxBlocks, BlockSize: c.bs, MaxLen: 90}
			q := kerneltest.Vec(rng, T*c.nHeads*c.hd)
			got := make([]float32, len(q))
			b.PagedAttention(hb(got), hb(q), kernels.KVLayer{K: hb(K), V: hb(V)}, meta, c.nHeads, c.nKV, c.hd)

			// Each sequence's rows gathered in position order (with
			// GatherRows), one after the other.
			var rows []int32
			start := make([]int, len(lens))
			for s, L := range lens {
				start[s] = len(rows)
				for p := 0; p < L; p++ {
					rows = append(rows, int32(ref.KVRow(meta, tables, s, p)))
				}
			}
			gK, gV := make([]float32, len(rows)*kvDim), make([]float32, len(rows)*kvDim)
			b.GatherRows(hb(gK), hb(K), hi(rows), kvDim)
			b.GatherRows(hb(gV), hb(V), hi(rows), kvDim)

			Ks, Vs, n := make([][]float32, T), make([][]float32, T), make([]int, T)
			for i := range pos {
				s := int(seq[i])
				Ks[i] = gK[start[s]*kvDim : (start[s]+lens[s])*kvDim]
				Vs[i] = gV[start[s]*kvDim : (start[s]+lens[s])*kvDim]
				n[i] = int(pos[i]) + 1
			}
			want := make([]float32, len(q))
			contiguousAttention(want, q, Ks, Vs, n, c.nHeads, c.nKV, c.hd, b.simd)
			bitsEqual(t, name+" vs the contiguous kernel", got, want)

			// The gathered cache in blocks of one position, the block table
			// of each sequence counting up from its first row.
			flat := make([]int32, len(lens)*90)
			for s, L := range lens {
				for p := 0; p < L; p++ {
					flat[s*90+p] = int32(start[s] + p)
				}
			}
			cm := meta
			cm.BlockTables, cm.MaxBlocks, cm.BlockSize = hi(flat), 90, 1
			again := make([]float32, len(q))
			b.PagedAttention(hb(again), hb(q), kernels.KVLayer{K: hb(gK), V: hb(gV)}, cm, c.nHeads, c.nKV, c.hd)
			bitsEqual(t, name+" vs the gathered cache", again, got)
		}
	}
}
