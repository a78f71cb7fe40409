package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Vocab is a tokenizer's vocabulary as the matcher sees it: the byte string
// of every token id, which ids are special (never allowed inside
// constrained text), which ids end generation, and a byte trie over the
// non-special tokens. Build one per tokenizer and share it; it is read-only.
type Vocab struct {
	tokens  [][]byte // id → bytes (nil: no such id, or special)
	special []bool   // id → special/control token
	eos     []int32
	maxLen  int // longest token, in bytes
	// split is the longest token of trie (at most walkSplit bytes); the
	// few longer ones are in longTrie. FillMask walks trie from states
	// widened for split bytes and longTrie from states widened for
	// maxLen (see widen.go).
	split    int
	trie     []trieNode // pre-order; node 0 is the root (empty prefix)
	dups     [][]int32  // trieNode.dup-1 → further ids with the same bytes
	longTrie []trieNode // as trie, for the tokens of more than split bytes
	longDups [][]int32
	// safeUpTo[k] masks the string-safe tokens (see stringSafe) of trie of
	// at most k characters (k ≤ maxBulkChars); safeFirst[c] lists them by
	// first byte c.
	safeUpTo  [][]uint64
	safeFirst [256][]int32
	// longSafe are the string-safe tokens of longTrie.
	longSafe []safeToken
	// below[i] is the set of bytes of trie node i's strict subtree (the
	// bytes its tokens have after the node's prefix), as an index into
	// belowSets, when all of them are ASCII; 0 otherwise (or a leaf). The
	// walk covers such a subtree in bulk from a state that loops on all of
	// them (see Matcher.fillMask).
	below     []uint32
	belowSets []asciiSet
	// preTokens are the token ids in trie pre-order (duplicates after
	// their node's token); preStart[i] is where node i's subtree begins
	// (one more entry, for the end).
	preTokens []int32
	preStart  []int32
}

// asciiSet is a set of bytes below 0x80.
type asciiSet [2]uint64

func (a asciiSet) subsetOf(b asciiSet) bool { return a[0]&^b[0] == 0 && a[1]&^b[1] == 0 }

// safeToken is a string-safe token and its number of characters.
type safeToken struct {
	id    int32
	chars int
}

// maxBulkChars is the longest safe token the bulk path of FillMask covers.
const maxBulkChars = 32

// stringSafe reports whether t is text a JSON string holds as is: whole,
// valid UTF-8 characters, none of them '"', ”, a control or DEL; chars is
// their number.
func stringSafe(t []byte) (chars int, ok bool) {
	for len(t) > 0 {
		r, size := utf8.DecodeRune(t)
		if (r == utf8.RuneError && size <= 1) || (r < 0x80 && !plainByte(byte(r))) {
			return 0, false
		}
		t = t[size:]
		chars++
	}
	return chars, true
}

// trieNode is one byte of the token trie. Its children follow it
// immediately; next is the index just past its subtree, so a dead prefix
// skips the whole subtree in one step (llguidance's token trie layout,
// guidance-ai/llguidance toktrie).
type trieNode struct {
	next  int32 // first node after this subtree
	tok   int32 // token whose bytes end here, or -1
	dup   int32 // 1 + index into Vocab.dups, or 0
	depth uint16
	b     byte
	// safeChars is the most characters of a token through this node when
	// all of those tokens are stringSafe, else 255: a subtree FillMask may
	// cover in bulk.
	safeChars uint8
}

// plainByte is what a JSON string holds without escaping: printable ASCII
// other than '"' and '\'. Tokens made only of these are handled in bulk
// where a state treats all of them alike (see Matcher.FillMask).
func plainByte(c byte) bool { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\' }

// Size is the number of token ids (one more than the largest id); a mask
// holds (Size()+63)/64 words.
func (v *Vocab) Size() int { return len(v.tokens) }

// EOS is the ids that end generation.
func (v *Vocab) EOS() []int32 { return slices.Clone(v.eos) }

// TokenBytes is the byte string of id (nil for a special or unknown id).
func (v *Vocab) TokenBytes(id int32) []byte {
	if id < 0 || int(id) >= len(v.tokens) {
		return nil
	}
	return v.tokens[id]
}

// IsSpecial reports whether id is a special/control token.
func (v *Vocab) IsSpecial(id int32) bool {
	return id >= 0 && int(id) < len(v.special) && v.special[id]
}

func (v *Vocab) isEOS(id int32) bool { return slices.Contains(v.eos, id) }

// NewVocab builds a Vocab from the byte string of each id (index = id),
// the special ids and the EOS ids (which must be special or empty tokens).
// Empty byte strings are never allowed in constrained text.
func NewVocab(tokens [][]byte, special []int32, eos []int32) (*Vocab, error) {
	return newVocabSplit(tokens, special, eos, walkSplit)
}

// newVocabSplit is NewVocab with the main trie holding tokens of at most
// split bytes (tests move the boundary onto small vocabularies).
func newVocabSplit(tokens [][]byte, special []int32, eos []int32, split int) (*Vocab, error) {
	v := &Vocab{tokens: make([][]byte, len(tokens)), special: make([]bool, len(tokens)), split: split}
	for i, t := range tokens {
		v.tokens[i] = slices.Clone(t)
	}
	for _, id := range special {
		if id < 0 || int(id) >= len(tokens) {
			return nil, fmt.Errorf("grammar: special token id %d out of range [0,%d)", id, len(tokens))
		}
		v.special[id] = true
	}
	if len(eos) == 0 {
		return nil, errors.New("grammar: no EOS token")
	}
	for _, id := range eos {
		if id < 0 || int(id) >= len(tokens) {
			return nil, fmt.Errorf("grammar: EOS id %d out of range [0,%d)", id, len(tokens))
		}
		v.special[id] = true
		v.eos = append(v.eos, id)
	}
	v.buildTrie()
	return v, nil
}

// walkSplit is the longest token the main trie holds (see Vocab.split).
const walkSplit = 32

func (v *Vocab) buildTrie() {
	var ids []int32
	for id, t := range v.tokens {
		if len(t) > 0 && !v.special[id] {
			ids = append(ids, int32(id))
			v.maxLen = max(v.maxLen, len(t))
		}
	}
	if v.split <= 0 {
		v.split = walkSplit
	}
	v.split = min(v.split, v.maxLen)
	slices.SortStableFunc(ids, func(a, b int32) int { return bytes.Compare(v.tokens[a], v.tokens[b]) })
	var short, long []int32
	for _, id := range ids {
		if len(v.tokens[id]) <= v.split {
			short = append(short, id)
		} else {
			long = append(long, id)
		}
	}
	v.trie, v.dups = v.buildNodes(short)
	v.longTrie, v.longDups = v.buildNodes(long)
	// Short tokens have at most split ≤ maxBulkChars characters, so the
	// bulk masks reach all of them.
	words := (len(v.tokens) + 63) / 64
	bulk := min(v.split, maxBulkChars)
	v.safeUpTo = make([][]uint64, bulk+1)
	for k := range v.safeUpTo {
		v.safeUpTo[k] = make([]uint64, words)
	}
	for _, id := range short {
		t := v.tokens[id]
		if chars, safe := stringSafe(t); safe {
			for k := chars; k <= bulk; k++ {
				v.safeUpTo[k][id>>6] |= 1 << (id & 63)
			}
			v.safeFirst[t[0]] = append(v.safeFirst[t[0]], id)
		}
	}
	for _, id := range long {
		if chars, safe := stringSafe(v.tokens[id]); safe {
			v.longSafe = append(v.longSafe, safeToken{id, chars})
		}
	}
	v.buildBelow()
}

// buildNodes builds the trie of ids (sorted by their bytes) and the lists
// of duplicate ids.
func (v *Vocab) buildNodes(ids []int32) ([]trieNode, [][]int32) {
	trie := []trieNode{{tok: -1}}
	var dups [][]int32
	path := []int32{0} // path[d] = node at depth d on the current branch
	var prev []byte
	closeTo := func(depth int) {
		for len(path) > depth+1 {
			n := path[len(path)-1]
			trie[n].next = int32(len(trie))
			path = path[:len(path)-1]
		}
	}
	for _, id := range ids {
		t := v.tokens[id]
		common := 0
		for common < len(t) && common < len(prev) && t[common] == prev[common] {
			common++
		}
		if common == len(t) && len(prev) == len(t) {
			// Same bytes as the previous token: a duplicate on the same node.
			n := path[len(path)-1]
			if trie[n].dup == 0 {
				dups = append(dups, nil)
				trie[n].dup = int32(len(dups))
			}
			dups[trie[n].dup-1] = append(dups[trie[n].dup-1], id)
		} else {
			closeTo(common)
			for d := common; d < len(t); d++ {
				path = append(path, int32(len(trie)))
				trie = append(trie, trieNode{tok: -1, depth: uint16(d + 1), b: t[d]})
			}
			trie[path[len(path)-1]].tok = id
		}
		chars, safe := stringSafe(t)
		for _, n := range path[1:] {
			if !safe || chars > 254 {
				trie[n].safeChars = 255
			} else if sc := trie[n].safeChars; sc != 255 {
				trie[n].safeChars = uint8(max(int(sc), chars))
			}
		}
		prev = t
	}
	closeTo(0)
	trie[0].next = int32(len(trie))
	return trie, dups
}

// buildBelow fills below, preTokens and preStart. A node's subtree follows
// it in pre-order, so a backward pass sees the subtree first.
func (v *Vocab) buildBelow() {
	sets := make([]asciiSet, len(v.trie)) // bytes of the node and its subtree
	high := make([]bool, len(v.trie))
	v.below = make([]uint32, len(v.trie))
	v.belowSets = []asciiSet{{}}
	index := map[asciiSet]uint32{}
	for i := len(v.trie) - 1; i > 0; i-- {
		n := &v.trie[i]
		var sub asciiSet // bytes strictly below the node
		subHigh := false
		for j := i + 1; j < int(n.next); j = int(v.trie[j].next) {
			sub[0] |= sets[j][0]
			sub[1] |= sets[j][1]
			subHigh = subHigh || high[j]
		}
		sets[i], high[i] = sub, subHigh
		if n.b >= 0x80 {
			high[i] = true
		} else {
			sets[i][n.b>>6] |= 1 << (n.b & 63)
		}
		if subHigh || sub == (asciiSet{}) {
			continue
		}
		k, ok := index[sub]
		if !ok {
			k = uint32(len(v.belowSets))
			index[sub] = k
			v.belowSets = append(v.belowSets, sub)
		}
		v.below[i] = k
	}
	v.preStart = make([]int32, len(v.trie)+1)
	v.preTokens = v.preTokens[:0]
	for i := 0; i < len(v.trie); i++ {
		n := &v.trie[i]
		v.preStart[i] = int32(len(v.preTokens))
		if n.tok >= 0 {
			v.preTokens = append(v.preTokens, n.tok)
			if n.dup > 0 {
				v.preTokens = append(v.preTokens, v.dups[n.dup-1]...)
			}
		}
	}
	v.preStart[len(v.trie)] = int32(len(v.preTokens))
}

// subtreeTokens lists the token ids whose bytes pass through trie node i.
func (v *Vocab) subtreeTokens(i int32) []int32 {
	return v.preTokens[v.preStart[i]:v.preStart[v.trie[i].next]]
}

// LoadVocab reads a model directory: tokenizer.json (the token strings, and
// the decoder, which says how a token string maps to bytes), and the EOS ids
// from generation_config.json, else config.json, else tokenizer_config.json's
// eos_token. Two token encodings are understood:
//   - byte-level BPE (decoder ByteLevel, as in GPT-2 and Llama 3): each
//     character of the token stands for one byte through GPT-2's
//     bytes_to_unicode table;
//   - SentencePiece-style BPE (decoders Replace "▁"→" " and ByteFallback, as
//     in Llama 2 and stories260K): "▁" is a space and "<0xNN>" is byte NN.
//
// Added tokens marked special are special; other added tokens are text.
//
// runtime/tokenizer exposes no token → bytes accessor, so this reads
// tokenizer.json itself (the API wanted there: Bytes(id int32) []byte).
func LoadVocab(dir string) (*Vocab, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, fmt.Errorf("grammar: %w", err)
	}
	var tj struct {
		AddedTokens []struct {
			ID      int32  `json:"id"`
			Content string `json:"content"`
			Special bool   `json:"special"`
		} `json:"added_tokens"`
		Decoder json.RawMessage `json:"decoder"`
		Model   struct {
			Type  string           `json:"type"`
			Vocab map[string]int32 `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &tj); err != nil {
		return nil, fmt.Errorf("grammar: tokenizer.json: %w", err)
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("grammar: tokenizer.json: model type %q is not supported (want BPE)", tj.Model.Type)
	}
	dec := string(tj.Decoder)
	var toBytes func(string) []byte
	switch {
	case strings.Contains(dec, `"ByteLevel"`):
		inv := byteLevelInverse()
		toBytes = func(s string) []byte {
			out := make([]byte, 0, len(s))
			for _, r := range s {
				c, ok := inv[r]
				if !ok {
					return nil // not a byte-level token string
				}
				out = append(out, c)
			}
			return out
		}
	case strings.Contains(dec, `"ByteFallback"`) || strings.Contains(dec, `"Replace"`):
		toBytes = func(s string) []byte {
			if len(s) == 6 && strings.HasPrefix(s, "<0x") && s[5] == '>' {
				if n, err := strconv.ParseUint(s[3:5], 16, 8); err == nil {
					return []byte{byte(n)}
				}
			}
			return []byte(strings.ReplaceAll(s, "▁", " "))
		}
	default:
		return nil, fmt.Errorf("grammar: tokenizer.json: decoder %s is not supported (want ByteLevel or ByteFallback/Replace)", dec)
	}
	size := 0
	for _, id := range tj.Model.Vocab {
		size = max(size, int(id)+1)
	}
	for _, a := range tj.AddedTokens {
		size = max(size, int(a.ID)+1)
	}
	tokens := make([][]byte, size)
	for s, id := range tj.Model.Vocab {
		if id >= 0 {
			tokens[id] = toBytes(s)
		}
	}
	var special []int32
	byContent := map[string]int32{}
	for _, a := range tj.AddedTokens {
		byContent[a.Content] = a.ID
		if a.Special {
			special = append(special, a.ID)
			tokens[a.ID] = nil
		} else {
			tokens[a.ID] = []byte(a.Content)
		}
	}
	eos, err := readEOS(dir, func(s string) (int32, bool) {
		if id, ok := byContent[s]; ok {
			return id, true
		}
		id, ok := tj.Model.Vocab[s]
		return id, ok
	})
	if err != nil {
		return nil, err
	}
	return NewVocab(tokens, special, eos)
}

// readEOS finds eos_token_id (an int or a list) in generation_config.json
// or config.json, else the eos_token string of tokenizer_config.json.
func readEOS(dir string, lookup func(string) (int32, bool)) ([]int32, error) {
	for _, name := range []string{"generation_config.json", "config.json"} {
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("grammar: %w", err)
		}
		var c struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("grammar: %s: %w", name, err)
		}
		if len(c.EOS) == 0 || string(c.EOS) == "null" {
			continue
		}
		var one int32
		if json.Unmarshal(c.EOS, &one) == nil {
			return []int32{one}, nil
		}
		var many []int32
		if err := json.Unmarshal(c.EOS, &many); err != nil {
			return nil, fmt.Errorf("grammar: %s: eos_token_id: %w", name, err)
		}
		return many, nil
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tokenizer_config.json"))
	if err != nil {
		return nil, fmt.Errorf("grammar: no eos_token_id in generation_config.json or config.json: %w", err)
	}
	var c struct {
		EOS json.RawMessage `json:"eos_token"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("grammar: tokenizer_config.json: %w", err)
	}
	var s string
	if json.Unmarshal(c.EOS, &s) != nil {
		var obj struct {
			Content string `json:"content"`
		}
		if err := json.Unmarshal(c.EOS, &obj); err != nil {
			return nil, fmt.Errorf("grammar: tokenizer_config.json: eos_token: %w", err)
		}
		s = obj.Content
	}
	id, ok := lookup(s)
	if !ok {
		return nil, fmt.Errorf("grammar: tokenizer_config.json: eos_token %q is not in the vocabulary", s)
	}
	return []int32{id}, nil
}

// byteLevelInverse inverts GPT-2's bytes_to_unicode (openai/gpt-2
// src/encoder.py): printable Latin-1 bytes stand for themselves, the other
// 68 bytes for U+0100 upwards in byte order.
func byteLevelInverse() map[rune]byte {
	inv := make(map[rune]byte, 256)
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			inv[rune(b)] = byte(b)
		} else {
			inv[rune(256+n)] = byte(b)
			n++
		}
	}
	return inv
}
