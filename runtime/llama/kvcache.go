package llama

import (
	"fmt"
	"github.com/parrot-llm/parrot/kernels"

	"github.com/parrot-llm/parrot/runtime/kvpool"
)

// KVCache is one sequence's keys and values: its block table in a KV pool
// and the number of positions written. The engine makes every sequence's
// cache in one shared pool; NewKVCache gives a standalone sequence (tests,
// benchmarks, one-off generation) a pool of its own.
type KVCache struct {
	pool   *kvpool.Pool
	table  kvpool.Table
	len    int // positions written so far
	maxLen int
	own    bool // the pool is this cache's alone
}

// KVShape is what the model stores per position, for sizing a pool: in
// bfloat16 when the backend keeps its KV cache so (kernels.KVStorage; set
// that before making pools, which keep the storage they were made with).
func (m *Model) KVShape() kvpool.Shape {
	return kvpool.Shape{Layers: m.Config.Layers, KVHeads: m.Config.KVHeads, HeadDim: m.Config.HeadDim,
		BF16: kernels.KVBytesPerValue(m.Backend) == 2}
}

// NewKVCache returns an empty cache for one sequence of at most maxLen
// positions (0 = the model's context length), with its own pool sized for
// maxLen up front; Close frees it.
func (m *Model) NewKVCache(maxLen int) (*KVCache, error) {
	if maxLen <= 0 || maxLen > m.Config.MaxPos {
		maxLen = m.Config.MaxPos
	}
	bs := kvpool.DefaultBlockSize
	p, err := kvpool.New(m.Backend, m.KVShape(), bs, (maxLen+bs-1)/bs)
	if err != nil {
		return nil, fmt.Errorf("KV cache of %d positions: %w", maxLen, err)
	}
	return &KVCache{pool: p, maxLen: maxLen, own: true}, nil
}

// NewSeqCache returns an empty cache for one sequence in a shared pool.
func NewSeqCache(pool *kvpool.Pool, maxLen int) *KVCache {
	return &KVCache{pool: pool, maxLen: maxLen}
}

// Len is the number of positions held.
func (c *KVCache) Len() int { return c.len }

// MaxLen is the capacity limit in positions.
func (c *KVCache) MaxLen() int { return c.maxLen }

// Blocks is the sequence's block table.
func (c *KVCache) Blocks() []int32 { return c.table.Blocks }

// Share starts an empty cache on cached blocks holding the first n
// positions of the sequence (a prefix-cache hit: see kvpool.Pool.Match).
func (c *KVCache) Share(blocks []int32, n int) {
	c.pool.Share(&c.table, blocks)
	c.len = n
}

// Commit registers the cache's full blocks in the prefix cache; hashes[i]
// is the chain hash of block i's tokens (kvpool.ChainHashes).
func (c *KVCache) Commit(hashes []kvpool.Hash) { c.pool.Commit(&c.table, hashes) }

// Release frees every block (a finished or preempted sequence); the cache
// is empty afterwards and may be refilled.
func (c *KVCache) Release() {
	c.pool.Release(&c.table)
	c.len = 0
}

// Close releases the cache and, for a standalone one, frees its pool.
func (c *KVCache) Close() {
	c.Release()
	if c.own {
		c.pool.Close()
		c.own = false
	}
}

// Exclusive is how many of the cache's blocks no other sequence shares
// (the blocks Release would free).
func (c *KVCache) Exclusive() int { return c.pool.Exclusive(&c.table) }

// Reserve makes room for positions [0, n), taking blocks from the pool
// (kvpool.ErrNoBlocks when too few are free).
func (c *KVCache) Reserve(n int) error {
	if n > c.maxLen {
		return fmt.Errorf("sequence of %d positions exceeds the context length %d", n, c.maxLen)
	}
	return c.pool.Grow(&c.table, n)
}

// Truncate forgets positions from n on, keeping the blocks (to rerun a
// position, as benchmarks do). Blocks shared through the prefix cache must
// not be rewritten: the engine never truncates.
func (c *KVCache) Truncate(n int) {
	if n < c.len {
		c.len = n
	}
}
