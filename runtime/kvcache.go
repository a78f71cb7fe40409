package runtime

import "fmt"

// KVCache holds one sequence's keys and values for every layer.
// It grows by doubling up to MaxLen positions.
type KVCache struct {
	kvDim  int
	maxLen int
	len    int         // positions written so far
	k, v   [][]float32 // [Layers][cap*kvDim]
}

// NewKVCache returns an empty cache for a sequence of at most maxLen positions.
func (m *Model) NewKVCache(maxLen int) *KVCache {
	if maxLen <= 0 || maxLen > m.Config.MaxPos {
		maxLen = m.Config.MaxPos
	}
	c := &KVCache{kvDim: m.Config.KVHeads * m.Config.HeadDim, maxLen: maxLen}
	c.k = make([][]float32, m.Config.Layers)
	c.v = make([][]float32, m.Config.Layers)
	return c
}

// Len is the number of positions held.
func (c *KVCache) Len() int { return c.len }

// MaxLen is the capacity limit in positions.
func (c *KVCache) MaxLen() int { return c.maxLen }

// Truncate forgets positions from n on (e.g. to reuse a shared prefix).
func (c *KVCache) Truncate(n int) {
	if n < c.len {
		c.len = n
	}
}

// Bytes is the memory the cache holds.
func (c *KVCache) Bytes() int {
	n := 0
	for i := range c.k {
		n += 4 * (cap(c.k[i]) + cap(c.v[i]))
	}
	return n
}

// reserve makes room for positions [0, n).
func (c *KVCache) reserve(n int) error {
	if n > c.maxLen {
		return fmt.Errorf("sequence of %d positions exceeds the context length %d", n, c.maxLen)
	}
	if len(c.k) == 0 || n*c.kvDim <= len(c.k[0]) {
		return nil
	}
	newCap := max(16, len(c.k[0])/c.kvDim)
	for newCap < n {
		newCap *= 2
	}
	newCap = min(newCap, c.maxLen)
	for i := range c.k {
		k := make([]float32, newCap*c.kvDim)
		v := make([]float32, newCap*c.kvDim)
		copy(k, c.k[i][:c.len*c.kvDim])
		copy(v, c.v[i][:c.len*c.kvDim])
		c.k[i], c.v[i] = k, v
	}
	return nil
}
