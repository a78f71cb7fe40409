package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// trie finds added tokens leftmost-longest, as HF's Aho-Corasick matcher does.
type trie struct {
	nodes []trieNode
	first [256]bool // bytes that can start a token: a fast skip
}

type trieNode struct {
	next map[byte]int32
	tok  int32 // index into the token list, -1 if no token ends here
}

func newTrie(contents []string) *trie {
	t := &trie{nodes: []trieNode{{tok: -1}}}
	for i, c := range contents {
		if c == "" {
			continue
		}
		t.first[c[0]] = true
		n := int32(0)
		for j := 0; j < len(c); j++ {
			nx, ok := t.nodes[n].next[c[j]]
			if !ok {
				if t.nodes[n].next == nil {
					t.nodes[n].next = make(map[byte]int32)
				}
				nx = int32(len(t.nodes))
				t.nodes = append(t.nodes, trieNode{tok: -1})
				t.nodes[n].next[c[j]] = nx
			}
			n = nx
		}
		if t.nodes[n].tok < 0 {
			t.nodes[n].tok = int32(i)
		}
	}
	return t
}

// find returns the leftmost-longest match in s at or after from.
func (t *trie) find(s string, from int) (start, end int, tok int32) {
	for i := from; i < len(s); i++ {
		if !t.first[s[i]] {
			continue
		}
		n, best, bestEnd := int32(0), int32(-1), 0
		for j := i; j < len(s); j++ {
			nx, ok := t.nodes[n].next[s[j]]
			if !ok {
				break
			}
			n = nx
			if t.nodes[n].tok >= 0 {
				best, bestEnd = t.nodes[n].tok, j+1
			}
		}
		if best >= 0 {
			return i, bestEnd, best
		}
	}
	return -1, -1, -1
}

// piece is a span of input: either text still to tokenize (id < 0) or an
// added token already recognised.
type piece struct {
	text    string
	id      int32
	atStart bool // begins at offset 0 of the original input
}

// splitAdded cuts text at the added tokens of set (HF's find_matches with the
// single_word / lstrip / rstrip rules) and appends the pieces to out.
func splitAdded(text string, atStart bool, set *trie, toks []*addedToken, out []piece) []piece {
	prev := 0 // end of the last emitted piece
	for from := 0; from < len(text); {
		start, end, k := set.find(text, from)
		if k < 0 {
			break
		}
		tok := toks[k]
		from = end
		if tok.SingleWord {
			before, _ := utf8.DecodeLastRuneInString(text[:start])
			after, _ := utf8.DecodeRuneInString(text[end:])
			if (start > 0 && isWordRune(before)) || (end < len(text) && isWordRune(after)) {
				continue
			}
		}
		if tok.LStrip {
			for start > prev {
				r, size := utf8.DecodeLastRuneInString(text[:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= size
			}
		}
		if tok.RStrip {
			for end < len(text) {
				r, size := utf8.DecodeRuneInString(text[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += size
			}
			from = end
		}
		if prev < start {
			out = append(out, piece{text: text[prev:start], id: -1, atStart: atStart && prev == 0})
		}
		out = append(out, piece{text: text[start:end], id: tok.ID})
		prev = end
	}
	if prev < len(text) {
		out = append(out, piece{text: text[prev:], id: -1, atStart: atStart && prev == 0})
	}
	return out
}

// isWordRune is regex's \w: letters, marks, decimal digits, connector
// punctuation and the joiners.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || r == 0x200C || r == 0x200D
}
