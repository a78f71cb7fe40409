// Package kvpool is the paged key/value cache: fixed-size blocks of
// positions allocated once from a byte budget, per-sequence block tables,
// and prefix caching of full blocks (vLLM's BlockPool and KVCacheManager,
// vllm/v1/core/block_pool.py and kv_cache_manager.py).
//
// A block holds BlockSize consecutive positions of one sequence in every
// layer. A full block whose tokens are known is hashed by its content and
// everything before it (the adapter that computed it, the parent block's
// hash, its token ids) and stays cached after its sequence ends, until
// its space is needed: a later sequence with the same prefix maps the same
// block instead of recomputing it.
//
// The pool is built from shapes (layers, KV heads, head dim), not from a
// model, and allocates its storage through the backend's kernels.Memory.
// It is not safe for concurrent use: the scheduler owns it.
package kvpool

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/parrot-llm/parrot/kernels"
)

// DefaultBlockSize is vLLM's default block size on GPUs (16 positions).
const DefaultBlockSize = 16

// Shape is what a model stores per position: keys and values of KVHeads
// heads of HeadDim values in each of Layers layers, float32 or (BF16)
// bfloat16 in host memory (a backend that is a kernels.KVStorage chooses).
type Shape struct {
	Layers, KVHeads, HeadDim int
	BF16                     bool
}

// KVDim is the width of one layer's key (or value) row.
func (s Shape) KVDim() int { return s.KVHeads * s.HeadDim }

// BytesPerPosition is the KV of one position in every layer.
func (s Shape) BytesPerPosition() int64 {
	per := int64(4)
	if s.BF16 {
		per = 2
	}
	return int64(2*s.Layers*s.KVDim()) * per
}

// BlocksFor returns how many blocks of blockSize positions fit in budget bytes.
func BlocksFor(budget int64, s Shape, blockSize int) int {
	per := s.BytesPerPosition() * int64(blockSize)
	if per <= 0 {
		return 0
	}
	return int(budget / per)
}

// ErrNoBlocks is returned when the pool has fewer free blocks than asked for.
var ErrNoBlocks = errors.New("kvpool: out of KV cache blocks")

// Hash identifies a full block by its content and its whole prefix.
type Hash [sha256.Size]byte

// Seed is the hash chain's root for sequences computed by one adapter
// version ("" and "" for the base model): KV computed with a LoRA adapter
// differs from the base model's, and from another version's of the same
// adapter, so their blocks never match.
func Seed(adapter, version string) Hash {
	h := sha256.New()
	fmt.Fprintf(h, "parrot-kv\x00%d:%s\x00%d:%s", len(adapter), adapter, len(version), version)
	var s Hash
	h.Sum(s[:0])
	return s
}

// ChainHashes extends hashes (the chain of tokens' first len(hashes) full
// blocks under seed) to every full block of tokens, and returns it.
func ChainHashes(seed Hash, tokens []int32, blockSize int, hashes []Hash) []Hash {
	var buf [4]byte
	for i := len(hashes); (i+1)*blockSize <= len(tokens); i++ {
		parent := seed
		if i > 0 {
			parent = hashes[i-1]
		}
		h := sha256.New()
		h.Write(parent[:])
		for _, t := range tokens[i*blockSize : (i+1)*blockSize] {
			binary.LittleEndian.PutUint32(buf[:], uint32(t))
			h.Write(buf[:])
		}
		var out Hash
		h.Sum(out[:0])
		hashes = append(hashes, out)
	}
	return hashes
}

// Table is one sequence's block table: Blocks[i] holds its positions
// [i*BlockSize, (i+1)*BlockSize).
type Table struct {
	Blocks    []int32
	committed int // leading blocks registered in the prefix cache (or tried)
}

// Positions is the number of positions the table has room for.
func (t *Table) Positions(blockSize int) int { return len(t.Blocks) * blockSize }

type block struct {
	ref        int  // sequences using the block
	hashed     bool // hash is registered in Pool.cached
	hash       Hash
	prev, next int32 // free-list links (-1 = none)
	free       bool
}

// Allocator is the part of a backend's kernels.Memory the pool uses.
type Allocator interface {
	Alloc(n int) (kernels.Buf, error)
	Free(b kernels.Buf)
}

// Pool owns every KV block.
type Pool struct {
	mem       Allocator
	shape     Shape
	blockSize int
	layers    []kernels.KVLayer
	blocks    []block
	// The free list, least recently used first: blocks are taken from the
	// head; a freed block with a cached hash goes to the tail (kept as long
	// as possible), one without to the head (it holds nothing of value).
	head, tail int32
	nFree      int
	cached     map[Hash]int32
}

// New allocates numBlocks blocks of blockSize positions for every layer.
func New(mem Allocator, s Shape, blockSize, numBlocks int) (*Pool, error) {
	if s.Layers <= 0 || s.KVHeads <= 0 || s.HeadDim <= 0 || blockSize <= 0 {
		return nil, fmt.Errorf("kvpool: bad shape %+v or block size %d", s, blockSize)
	}
	if numBlocks <= 0 {
		return nil, fmt.Errorf("kvpool: need at least one block, got %d", numBlocks)
	}
	p := &Pool{mem: mem, shape: s, blockSize: blockSize, cached: map[Hash]int32{}, head: -1, tail: -1}
	rows := numBlocks * blockSize * s.KVDim()
	for range s.Layers {
		if s.BF16 {
			p.layers = append(p.layers, kernels.KVLayer{K16: make([]uint16, rows), V16: make([]uint16, rows)})
			continue
		}
		k, err := mem.Alloc(rows)
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("kvpool: allocating %d blocks: %w", numBlocks, err)
		}
		v, err := mem.Alloc(rows)
		if err != nil {
			mem.Free(k)
			p.Close()
			return nil, fmt.Errorf("kvpool: allocating %d blocks: %w", numBlocks, err)
		}
		p.layers = append(p.layers, kernels.KVLayer{K: k, V: v})
	}
	p.blocks = make([]block, numBlocks)
	for i := range p.blocks {
		p.blocks[i].prev, p.blocks[i].next = -1, -1
		p.pushTail(int32(i))
	}
	return p, nil
}

// Close frees the storage.
func (p *Pool) Close() {
	for _, l := range p.layers {
		if !l.BF16() {
			p.mem.Free(l.K)
			p.mem.Free(l.V)
		}
	}
	p.layers = nil
}

// Layer is the storage of layer i.
func (p *Pool) Layer(i int) kernels.KVLayer { return p.layers[i] }

// Shape is the per-position shape the pool was built for.
func (p *Pool) Shape() Shape { return p.shape }

// BlockSize is the number of positions per block.
func (p *Pool) BlockSize() int { return p.blockSize }

// NumBlocks is the pool's size in blocks.
func (p *Pool) NumBlocks() int { return len(p.blocks) }

// NumFree is the number of blocks no sequence uses (cached ones included:
// they are given up when needed).
func (p *Pool) NumFree() int { return p.nFree }

// Usage is the fraction of blocks in use by sequences, 0 to 1 (vLLM's
// kv_cache_usage_perc: cached blocks no sequence holds count as free).
func (p *Pool) Usage() float64 { return 1 - float64(p.nFree)/float64(len(p.blocks)) }

// BlocksFor is the number of blocks n positions take.
func (p *Pool) BlocksFor(n int) int { return (n + p.blockSize - 1) / p.blockSize }

// Match returns the cached blocks of the longest prefix of hashes (a
// sequence's chain, see ChainHashes) and how many of them no sequence
// holds now (so taking them uses free blocks). It changes nothing.
func (p *Pool) Match(hashes []Hash) (blocks []int32, idle int) {
	for _, h := range hashes {
		b, ok := p.cached[h]
		if !ok {
			break
		}
		blocks = append(blocks, b)
		if p.blocks[b].ref == 0 {
			idle++
		}
	}
	return blocks, idle
}

// Share appends cached blocks (from Match, in order) to an empty table and
// holds them.
func (p *Pool) Share(t *Table, blocks []int32) {
	if len(t.Blocks) != 0 {
		panic("kvpool: Share into a table that holds blocks")
	}
	for _, b := range blocks {
		p.hold(b)
		t.Blocks = append(t.Blocks, b)
	}
	t.committed = len(blocks)
}

// Grow gives t room for n positions, taking free blocks (and evicting the
// least recently used cached ones among them). It takes nothing and returns
// ErrNoBlocks when too few are free.
func (p *Pool) Grow(t *Table, n int) error {
	need := p.BlocksFor(n) - len(t.Blocks)
	if need <= 0 {
		return nil
	}
	if need > p.nFree {
		return fmt.Errorf("%w: %d needed, %d free of %d", ErrNoBlocks, need, p.nFree, len(p.blocks))
	}
	for range need {
		b := p.head
		p.hold(b)
		p.uncache(b)
		t.Blocks = append(t.Blocks, b)
	}
	return nil
}

// Commit registers t's full blocks whose hashes are known (hashes[i] is
// the hash of t.Blocks[i]; blocks past len(hashes) are not full yet), so
// that later sequences can share them. A block whose hash another block
// already holds stays private.
func (p *Pool) Commit(t *Table, hashes []Hash) {
	n := min(len(hashes), len(t.Blocks))
	for i := t.committed; i < n; i++ {
		b := t.Blocks[i]
		if _, dup := p.cached[hashes[i]]; dup || p.blocks[b].hashed {
			continue
		}
		p.blocks[b].hashed, p.blocks[b].hash = true, hashes[i]
		p.cached[hashes[i]] = b
	}
	t.committed = max(t.committed, n)
}

// Release gives up all of t's blocks. Cached blocks stay matchable until
// evicted; the table's last blocks are evicted before its first ones
// (vLLM frees in reverse order: a shared prefix outlives its tails).
func (p *Pool) Release(t *Table) {
	for i := len(t.Blocks) - 1; i >= 0; i-- {
		b := t.Blocks[i]
		blk := &p.blocks[b]
		blk.ref--
		if blk.ref < 0 {
			panic(fmt.Sprintf("kvpool: block %d released twice", b))
		}
		if blk.ref == 0 {
			if blk.hashed {
				p.pushTail(b)
			} else {
				p.pushHead(b)
			}
		}
	}
	t.Blocks, t.committed = t.Blocks[:0], 0
}

// Exclusive is how many of t's blocks no other table holds (the blocks
// Release would free).
func (p *Pool) Exclusive(t *Table) int {
	n := 0
	for _, b := range t.Blocks {
		if p.blocks[b].ref == 1 {
			n++
		}
	}
	return n
}

// hold takes a reference on b, removing it from the free list.
func (p *Pool) hold(b int32) {
	blk := &p.blocks[b]
	if blk.ref == 0 {
		p.unlink(b)
	}
	blk.ref++
}

// uncache forgets b's hash (its content is about to be overwritten).
func (p *Pool) uncache(b int32) {
	blk := &p.blocks[b]
	if blk.hashed {
		if p.cached[blk.hash] == b {
			delete(p.cached, blk.hash)
		}
		blk.hashed = false
	}
}

func (p *Pool) pushTail(b int32) {
	blk := &p.blocks[b]
	blk.free, blk.prev, blk.next = true, p.tail, -1
	if p.tail >= 0 {
		p.blocks[p.tail].next = b
	} else {
		p.head = b
	}
	p.tail = b
	p.nFree++
}

func (p *Pool) pushHead(b int32) {
	blk := &p.blocks[b]
	blk.free, blk.prev, blk.next = true, -1, p.head
	if p.head >= 0 {
		p.blocks[p.head].prev = b
	} else {
		p.tail = b
	}
	p.head = b
	p.nFree++
}

func (p *Pool) unlink(b int32) {
	blk := &p.blocks[b]
	if !blk.free {
		panic(fmt.Sprintf("kvpool: block %d is not free", b))
	}
	if blk.prev >= 0 {
		p.blocks[blk.prev].next = blk.next
	} else {
		p.head = blk.next
	}
	if blk.next >= 0 {
		p.blocks[blk.next].prev = blk.prev
	} else {
		p.tail = blk.prev
	}
	blk.free, blk.prev, blk.next = false, -1, -1
	p.nFree--
}
