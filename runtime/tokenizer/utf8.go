package tokenizer

import "unicode/utf8"

// utf8Step classifies the bytes at the start of b the way Rust's
// String::from_utf8_lossy (and the WHATWG decoder) do, which is what Hugging Face
// decoders use:
//   - valid: b[:n] is one well-formed character;
//   - invalid: b[:n] is a "maximal subpart" of an ill-formed sequence and becomes
//     exactly one U+FFFD;
//   - incomplete: all of b is a proper prefix of a well-formed character, so more
//     bytes may still complete it (n == len(b)).
//
// b must not be empty.
func utf8Step(b []byte) (n int, valid, incomplete bool) {
	c := b[0]
	var need int         // continuation bytes after the lead
	lo, hi := 0x80, 0xBF // allowed range of the first continuation byte
	switch {
	case c < 0x80:
		return 1, true, false
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default: // 0x80..0xC1, 0xF5..0xFF never start a character
		return 1, false, false
	}
	for i := 1; i <= need; i++ {
		if i >= len(b) {
			return len(b), false, true
		}
		x := int(b[i])
		if x < lo || x > hi {
			return i, false, false
		}
		lo, hi = 0x80, 0xBF
	}
	return need + 1, true, false
}

// appendLossy appends the lossy UTF-8 decoding of b to dst (one U+FFFD per
// maximal ill-formed subpart, an unfinished tail included), like Rust's
// String::from_utf8_lossy.
func appendLossy(dst []byte, b []byte) []byte {
	for len(b) > 0 {
		n, valid, _ := utf8Step(b)
		if valid {
			dst = append(dst, b[:n]...)
		} else {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		}
		b = b[n:]
	}
	return dst
}

// appendLossySettled is appendLossy for a stream: it decodes only the part of b
// whose decoding cannot change when more bytes follow, and returns how many
// bytes of b it consumed. The rest is a proper prefix of a character.
func appendLossySettled(dst []byte, b []byte) ([]byte, int) {
	used := 0
	for used < len(b) {
		n, valid, incomplete := utf8Step(b[used:])
		if incomplete {
			break
		}
		if valid {
			dst = append(dst, b[used:used+n]...)
		} else {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		}
		used += n
	}
	return dst, used
}
