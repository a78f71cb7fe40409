package tokenizer

import (
	"fmt"
	"sync"
	"unicode/utf8"
)

// bpeModel is Hugging Face's BPE model (tokenizers/src/models/bpe): a word is
// split into characters (unknown ones into <0xXX> byte tokens when
// byte_fallback is set, or into the unk token), then the adjacent pair with the
// lowest merge rank is merged, leftmost first, until no pair has a merge.
type bpeModel struct {
	vocab        map[string]int32
	vocabR       []string // id -> token; "" where the id is unused
	merges       map[uint64]merge
	unkID        int32 // -1: no unk token
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool       // a word that is itself in the vocabulary is one token
	byteIDs      [256]int32 // <0xXX> token ids for byte_fallback, -1 where absent
	cache        *wordCache // word -> ids, for words shorter than cacheMaxLen bytes
}

// merge is what a pair of adjacent ids becomes and how early that happens.
type merge struct {
	rank  int32
	newID int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

const (
	cacheCapacity = 10000 // as Hugging Face's BPE cache
	cacheMaxLen   = 256   // words this long or longer are not cached
)

type wordCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

func (c *wordCache) get(w string) ([]int32, bool) {
	c.mu.RLock()
	ids, ok := c.m[w]
	c.mu.RUnlock()
	return ids, ok
}

func (c *wordCache) put(w string, ids []int32) {
	c.mu.Lock()
	if len(c.m) < cacheCapacity { // like HF: stop inserting once full
		c.m[w] = ids
	}
	c.mu.Unlock()
}

// appendTokens appends the ids of one pre-tokenized word to dst.
func (m *bpeModel) appendTokens(dst []int32, word string) ([]int32, error) {
	if word == "" {
		return dst, nil
	}
	if m.ignoreMerges {
		if id, ok := m.vocab[word]; ok {
			return append(dst, id), nil
		}
	}
	cacheable := len(word) < cacheMaxLen
	if cacheable {
		if ids, ok := m.cache.get(word); ok {
			return append(dst, ids...), nil
		}
	}
	ids, err := m.mergeWord(word)
	if err != nil {
		return dst, err
	}
	if cacheable {
		m.cache.put(word, ids)
	}
	return append(dst, ids...), nil
}

// symbol is one current token of a word being merged, in a linked list.
type symbol struct {
	id         int32
	prev, next int32 // indices into the symbol slice; -1 at the ends
	dead       bool  // merged into its left neighbour
}

// candidate is a possible merge of symbols[pos] with its right neighbour.
type candidate struct {
	rank  int32
	pos   int32
	newID int32
}

func (a candidate) less(b candidate) bool {
	if a.rank != b.rank {
		return a.rank < b.rank
	}
	return a.pos < b.pos
}

// mergeWord runs the BPE merge loop on one word. Cost: O(n log n) in the
// number of characters, using a binary heap of candidate merges.
func (m *bpeModel) mergeWord(word string) ([]int32, error) {
	syms := make([]symbol, 0, len(word))
	// An unknown character waits in unkPending until the next known one, so
	// that fuse_unk can fold a run of them into one unk. Byte-fallback tokens do
	// not flush it: HF's merge_word behaves the same way.
	unkPending := false
	for i := 0; i < len(word); {
		_, size := utf8.DecodeRuneInString(word[i:])
		ch := word[i : i+size]
		i += size
		if id, ok := m.vocab[ch]; ok {
			if unkPending {
				syms = append(syms, symbol{id: m.unkID})
				unkPending = false
			}
			syms = append(syms, symbol{id: id})
			continue
		}
		if m.byteFallback && m.appendByteSymbols(&syms, ch) {
			continue
		}
		if m.unkID < 0 {
			continue // HF drops a character it cannot represent when there is no unk token
		}
		if unkPending && !m.fuseUnk {
			syms = append(syms, symbol{id: m.unkID})
		}
		unkPending = true
	}
	if unkPending {
		syms = append(syms, symbol{id: m.unkID})
	}
	for i := range syms {
		syms[i].prev = int32(i) - 1
		syms[i].next = int32(i) + 1
	}
	if len(syms) > 0 {
		syms[len(syms)-1].next = -1
	}

	var h candHeap
	for i := 0; i+1 < len(syms); i++ {
		if mg, ok := m.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h.push(candidate{rank: mg.rank, pos: int32(i), newID: mg.newID})
		}
	}
	for len(h) > 0 {
		top := h.pop()
		left := &syms[top.pos]
		if left.dead || left.next < 0 {
			continue
		}
		right := &syms[left.next]
		// Skip stale entries: the pair at pos changed since it was queued.
		if mg, ok := m.merges[pairKey(left.id, right.id)]; !ok || mg.newID != top.newID {
			continue
		}
		left.id = top.newID
		right.dead = true
		left.next = right.next
		if left.next >= 0 {
			syms[left.next].prev = top.pos
		}
		if left.prev >= 0 {
			if mg, ok := m.merges[pairKey(syms[left.prev].id, left.id)]; ok {
				h.push(candidate{rank: mg.rank, pos: left.prev, newID: mg.newID})
			}
		}
		if left.next >= 0 {
			if mg, ok := m.merges[pairKey(left.id, syms[left.next].id)]; ok {
				h.push(candidate{rank: mg.rank, pos: top.pos, newID: mg.newID})
			}
		}
	}
	ids := make([]int32, 0, len(syms))
	for i := 0; i >= 0 && i < len(syms); i = int(syms[i].next) {
		ids = append(ids, syms[i].id)
	}
	return ids, nil
}

// appendByteSymbols appends the <0xXX> tokens of ch's bytes; false (and nothing
// appended) if one of them is missing from the vocabulary.
func (m *bpeModel) appendByteSymbols(syms *[]symbol, ch string) bool {
	for i := 0; i < len(ch); i++ {
		if m.byteIDs[ch[i]] < 0 {
			return false
		}
	}
	for i := 0; i < len(ch); i++ {
		*syms = append(*syms, symbol{id: m.byteIDs[ch[i]]})
	}
	return true
}

// candHeap is a binary min-heap of merge candidates (lowest rank, then leftmost).
type candHeap []candidate

func (h *candHeap) push(c candidate) {
	*h = append(*h, c)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s[i].less(s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *candHeap) pop() candidate {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, r, min := 2*i+1, 2*i+2, i
		if l < n && s[l].less(s[min]) {
			min = l
		}
		if r < n && s[r].less(s[min]) {
			min = r
		}
		if min == i {
			break
		}
		s[i], s[min] = s[min], s[i]
		i = min
	}
	*h = s
	return top
}

// newBPEModel builds the model from the parsed JSON fields.
func newBPEModel(vocab map[string]int32, merges [][2]string, unk string, fuseUnk, byteFallback, ignoreMerges bool) (*bpeModel, error) {
	m := &bpeModel{
		vocab:        vocab,
		merges:       make(map[uint64]merge, len(merges)),
		unkID:        -1,
		fuseUnk:      fuseUnk,
		byteFallback: byteFallback,
		ignoreMerges: ignoreMerges,
		cache:        &wordCache{m: make(map[string][]int32)},
	}
	maxID := int32(-1)
	for tok, id := range vocab {
		if id < 0 {
			return nil, fmt.Errorf("tokenizer: BPE vocab: token %q has negative id %d", tok, id)
		}
		maxID = max(maxID, id)
	}
	m.vocabR = make([]string, maxID+1)
	for tok, id := range vocab {
		m.vocabR[id] = tok
	}
	if unk != "" {
		id, ok := vocab[unk]
		if !ok {
			return nil, fmt.Errorf("tokenizer: BPE unk_token %q is not in the vocabulary", unk)
		}
		m.unkID = id
	}
	for b := 0; b < 256; b++ {
		m.byteIDs[b] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
	}
	var buf []byte
	for rank, mg := range merges {
		a, okA := vocab[mg[0]]
		b, okB := vocab[mg[1]]
		buf = append(append(buf[:0], mg[0]...), mg[1]...)
		n, okN := vocab[string(buf)] // no allocation for the lookup
		if !okA || !okB || !okN {
			return nil, fmt.Errorf("tokenizer: BPE merge %d (%q %q): a token is not in the vocabulary", rank, mg[0], mg[1])
		}
		// A repeated pair keeps its last rank, as HF's HashMap insert does.
		m.merges[pairKey(a, b)] = merge{rank: int32(rank), newID: n}
	}
	return m, nil
}
