package kvpool

import (
	"errors"
	"testing"

	"github.com/parrot-llm/parrot/kernels"
)

// hostMem is the least kernels.Memory the pool needs.
type hostMem struct{ live int }

func (m *hostMem) Alloc(n int) (kernels.Buf, error) {
	m.live++
	return kernels.HostBuf(make([]float32, n)), nil
}
func (m *hostMem) AllocInt(n int) (kernels.IntBuf, error) {
	return kernels.HostIntBuf(make([]int32, n)), nil
}
func (m *hostMem) Free(kernels.Buf)                                { m.live-- }
func (m *hostMem) FreeInt(kernels.IntBuf)                          {}
func (m *hostMem) Write(dst kernels.Buf, src []float32)            { copy(dst.Host(), src) }
func (m *hostMem) WriteInt(dst kernels.IntBuf, src []int32)        { copy(dst.Host(), src) }
func (m *hostMem) Read(dst []float32, src kernels.Buf)             { copy(dst, src.Host()) }
func (m *hostMem) ReadInt(dst []int32, src kernels.IntBuf)         { copy(dst, src.Host()) }
func (m *hostMem) Upload(w kernels.Matrix) (kernels.Matrix, error) { return w, nil }

var shape = Shape{Layers: 2, KVHeads: 2, HeadDim: 4}

func newPool(t *testing.T, blocks int) *Pool {
	t.Helper()
	p, err := New(&hostMem{}, shape, 4, blocks)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func seq(n int, base int32) []int32 {
	s := make([]int32, n)
	for i := range s {
		s[i] = base + int32(i)
	}
	return s
}

func TestBudgetAndStorage(t *testing.T) {
	// 2 layers × (K+V) × 8 floats × 4 bytes = 128 bytes per position.
	if got := shape.BytesPerPosition(); got != 128 {
		t.Fatalf("bytes per position %d, want 128", got)
	}
	if got := BlocksFor(128*4*10+100, shape, 4); got != 10 {
		t.Fatalf("BlocksFor = %d, want 10", got)
	}
	mem := &hostMem{}
	p, err := New(mem, shape, 4, 10)
	if err != nil {
		t.Fatal(err)
	}
	if mem.live != 4 || p.Layer(1).K.Len() != 10*4*8 {
		t.Fatalf("%d allocations, layer K of %d floats", mem.live, p.Layer(1).K.Len())
	}
	p.Close()
	if mem.live != 0 {
		t.Fatalf("%d allocations left after Close", mem.live)
	}
}

// A bfloat16 shape: half the bytes per position, layers of host bfloat16
// rows, nothing allocated through the backend's memory.
func TestBF16Storage(t *testing.T) {
	s := shape
	s.BF16 = true
	if got := s.BytesPerPosition(); got != 64 {
		t.Fatalf("bytes per position %d, want 64", got)
	}
	mem := &hostMem{}
	p, err := New(mem, s, 4, 10)
	if err != nil {
		t.Fatal(err)
	}
	l := p.Layer(1)
	if mem.live != 0 || !l.BF16() || len(l.K16) != 10*4*8 || len(l.V16) != 10*4*8 || l.K.Len() != 0 {
		t.Fatalf("%d allocations, layer bf16 %v with %d/%d values (K %d floats)", mem.live, l.BF16(), len(l.K16), len(l.V16), l.K.Len())
	}
	p.Close()
}

func TestGrowAndReleaseAccountBlocks(t *testing.T) {
	p := newPool(t, 5)
	var a, b Table
	if err := p.Grow(&a, 9); err != nil { // 3 blocks
		t.Fatal(err)
	}
	if len(a.Blocks) != 3 || p.NumFree() != 2 || p.Usage() != 0.6 {
		t.Fatalf("blocks %v, free %d, usage %v", a.Blocks, p.NumFree(), p.Usage())
	}
	err := p.Grow(&b, 12)
	if !errors.Is(err, ErrNoBlocks) || len(b.Blocks) != 0 || p.NumFree() != 2 {
		t.Fatalf("over-asking: err %v, took %v, free %d", err, b.Blocks, p.NumFree())
	}
	if err := p.Grow(&a, 12); err != nil || len(a.Blocks) != 3 {
		t.Fatalf("growing within the last block took a block: %v %v", err, a.Blocks)
	}
	p.Release(&a)
	if p.NumFree() != 5 || len(a.Blocks) != 0 || p.Usage() != 0 {
		t.Fatalf("after release: free %d, table %v", p.NumFree(), a.Blocks)
	}
}

func TestPrefixSharingAndEviction(t *testing.T) {
	p := newPool(t, 4)
	seed := Seed("", "")
	tokens := seq(10, 100) // 2 full blocks + 2 positions
	hashes := ChainHashes(seed, tokens, 4, nil)
	if len(hashes) != 2 {
		t.Fatalf("%d hashes for 10 tokens in blocks of 4", len(hashes))
	}
	var a Table
	if err := p.Grow(&a, len(tokens)); err != nil {
		t.Fatal(err)
	}
	p.Commit(&a, hashes)

	// A second sequence with the same first 9 tokens shares both full blocks.
	other := append(seq(9, 100), 7)
	oh := ChainHashes(seed, other, 4, nil)
	blocks, idle := p.Match(oh)
	if len(blocks) != 2 || blocks[0] != a.Blocks[0] || blocks[1] != a.Blocks[1] || idle != 0 {
		t.Fatalf("match %v (idle %d), want %v", blocks, idle, a.Blocks[:2])
	}
	// A different adapter (or version) never matches.
	if m, _ := p.Match(ChainHashes(Seed("pirate", "v1"), tokens, 4, nil)); len(m) != 0 {
		t.Fatalf("adapter chain matched base blocks %v", m)
	}
	if m, _ := p.Match(ChainHashes(Seed("pirate", "v2"), tokens, 4, nil)); len(m) != 0 {
		t.Fatalf("v2 matched")
	}
	// A change in the first block breaks the whole chain.
	changed := append([]int32{1}, tokens[1:]...)
	if m, _ := p.Match(ChainHashes(seed, changed, 4, nil)); len(m) != 0 {
		t.Fatalf("changed first block matched %v", m)
	}

	var b Table
	p.Share(&b, blocks)
	if err := p.Grow(&b, 10); err != nil {
		t.Fatal(err)
	}
	if p.NumFree() != 0 {
		t.Fatalf("free %d, want 0 (3 of a, 1 more for b)", p.NumFree())
	}
	p.Release(&a)
	if p.NumFree() != 1 { // a's private tail block; the shared ones are still b's
		t.Fatalf("free %d after releasing a", p.NumFree())
	}
	p.Release(&b)
	if p.NumFree() != 4 {
		t.Fatalf("free %d after releasing both", p.NumFree())
	}
	// Cached blocks survive their sequences and are matched with idle count.
	blocks, idle = p.Match(hashes)
	if len(blocks) != 2 || idle != 2 {
		t.Fatalf("after release: match %v idle %d", blocks, idle)
	}
	// Taking all 4 blocks for new content evicts them: unhashed blocks go first.
	var c Table
	if err := p.Grow(&c, 8); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Match(hashes); len(m) != 2 {
		t.Fatalf("the 2 unhashed free blocks should go before the cached ones: match %v", m)
	}
	if err := p.Grow(&c, 16); err != nil {
		t.Fatal(err)
	}
	if m, _ := p.Match(hashes); len(m) != 0 {
		t.Fatalf("evicted blocks still match: %v", m)
	}
}

func TestEvictsLeastRecentlyUsedAndTailsFirst(t *testing.T) {
	p := newPool(t, 4)
	seed := Seed("", "")
	x, y := seq(8, 0), seq(8, 50)
	hx, hy := ChainHashes(seed, x, 4, nil), ChainHashes(seed, y, 4, nil)
	var a, b Table
	p.Grow(&a, 8)
	p.Commit(&a, hx)
	p.Grow(&b, 8)
	p.Commit(&b, hy)
	p.Release(&a) // x released first: least recently used
	p.Release(&b)
	var c Table
	if err := p.Grow(&c, 4); err != nil {
		t.Fatal(err)
	}
	// One block evicted: x's tail (second block), so x's first block still matches.
	if m, _ := p.Match(hx); len(m) != 1 {
		t.Fatalf("x matches %d blocks, want 1 (its tail evicted first)", len(m))
	}
	if m, _ := p.Match(hy); len(m) != 2 {
		t.Fatalf("y matches %d blocks, want 2", len(m))
	}
}
