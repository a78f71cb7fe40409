package tokenizer

import "strings"

// GPT-2's byte-level alphabet: every byte gets a printable character so that
// BPE merges never see whitespace or control characters. Printable Latin-1
// bytes keep their own code point; the others (0x00-0x20, 0x7F-0xA0, 0xAD) are
// moved, in order, to U+0100 and up. Space becomes 'Ġ' (U+0120), '\n' 'Ċ'.
type byteLevelTable struct {
	byteToRune [256]rune
	runeToByte map[rune]byte
}

func newByteLevelTable() *byteLevelTable {
	t := &byteLevelTable{runeToByte: make(map[rune]byte, 256)}
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = next
			next++
		}
		t.byteToRune[b] = r
		t.runeToByte[r] = byte(b)
	}
	return t
}

// encode maps each byte of s to its byte-level character.
func (t *byteLevelTable) encode(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s)) // each rune takes one or two bytes
	for i := 0; i < len(s); i++ {
		b.WriteRune(t.byteToRune[s[i]])
	}
	return b.String()
}

// appendBytes appends the bytes a token stands for, as the ByteLevel decoder
// does: if every character of the token is in the byte-level alphabet the
// token's bytes are those; otherwise (an added token such as "<|eot_id|>" that
// is not byte-level text) its own UTF-8 bytes are used.
func (t *byteLevelTable) appendBytes(dst []byte, token string) []byte {
	start := len(dst)
	for _, r := range token {
		b, ok := t.runeToByte[r]
		if !ok {
			return append(dst[:start], token...)
		}
		dst = append(dst, b)
	}
	return dst
}
