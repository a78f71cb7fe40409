package grammar

// A state's mask is a pure function of the state (the expression it
// stands for and the vocabulary), so FillMask keeps the masks that were
// costly to compute and copies them when a matcher comes back to the
// state: a copy of 16 KB (a 128k vocabulary) takes about a microsecond,
// where a walk of the whole trie takes hundreds. Masks are kept per
// Grammar, at most maskCacheBytes of them, the least recently used going
// first.

const (
	// maskCacheBytes bounds the memoised masks of one Grammar (256 masks
	// of a 128k vocabulary).
	maskCacheBytes = 4 << 20
	// memoMinWalk is the number of trie nodes a walk must visit (or the
	// walk must have built a state) for its mask to be kept: below it,
	// computing the mask again costs about as much as the copy.
	memoMinWalk = 2048
)

// maskCache is a small LRU of masks by state; Grammar.mu guards it.
type maskCache struct {
	words   int              // mask length
	cap     int              // most entries
	slot    map[uint64]int32 // walk state pair (see fillMask) → index into ents
	ents    []maskEntry
	clock   uint64 // use counter, for recency
	hits    int    // for tests
	evicted int    // for tests
}

type maskEntry struct {
	state uint64
	used  uint64
	mask  []uint64
}

func (c *maskCache) init(words int) {
	c.words = words
	c.cap = max(1, maskCacheBytes/(8*max(words, 1)))
	c.slot = map[uint64]int32{}
}

// load copies the memoised mask of state s into mask and reports whether
// there was one.
func (c *maskCache) load(s uint64, mask []uint64) bool {
	i, ok := c.slot[s]
	if !ok {
		return false
	}
	e := &c.ents[i]
	c.clock++
	e.used = c.clock
	copy(mask, e.mask)
	c.hits++
	return true
}

// store memoises mask as the mask of state s, evicting the least recently
// used entry when full (a linear scan: only costly masks are stored, so
// the scan is small beside the walk that produced the mask).
func (c *maskCache) store(s uint64, mask []uint64) {
	if _, ok := c.slot[s]; ok {
		return
	}
	c.clock++
	if len(c.ents) < c.cap {
		c.slot[s] = int32(len(c.ents))
		c.ents = append(c.ents, maskEntry{state: s, used: c.clock, mask: append([]uint64(nil), mask[:c.words]...)})
		return
	}
	old := 0
	for i := range c.ents {
		if c.ents[i].used < c.ents[old].used {
			old = i
		}
	}
	e := &c.ents[old]
	delete(c.slot, e.state)
	c.evicted++
	e.state, e.used = s, c.clock
	copy(e.mask, mask)
	c.slot[s] = int32(old)
}
