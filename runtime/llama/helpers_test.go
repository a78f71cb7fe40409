package llama

import (
	"testing"

	"github.com/parrot-llm/parrot/kernels"
	"github.com/parrot-llm/parrot/runtime/kvpool"
)

func mustModel(tb testing.TB, c *Config, w *Weights, be kernels.Backend) *Model {
	tb.Helper()
	m, err := NewModel(c, w, be)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func mustCache(tb testing.TB, m *Model, maxLen int) *KVCache {
	tb.Helper()
	c, err := m.NewKVCache(maxLen)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// sharedCaches returns n caches of maxLen positions in one pool, for
// batching several sequences.
func sharedCaches(tb testing.TB, m *Model, n, maxLen int) []*KVCache {
	tb.Helper()
	if maxLen <= 0 {
		maxLen = m.Config.MaxPos
	}
	bs := kvpool.DefaultBlockSize
	pool, err := kvpool.New(m.Backend, m.KVShape(), bs, n*((maxLen+bs-1)/bs))
	if err != nil {
		tb.Fatal(err)
	}
	caches := make([]*KVCache, n)
	for i := range caches {
		caches[i] = NewSeqCache(pool, maxLen)
	}
	return caches
}
