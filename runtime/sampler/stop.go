package sampler

import (
	"strings"
	"unicode/utf8"
)

// StopMatcher finds OpenAI `stop` strings in streamed text. It holds back
// only the text that could still be the start of a stop string (and an
// incomplete UTF-8 sequence at the end, so that what it emits is whole
// characters).
//
// Generation stops as soon as any stop string has appeared complete. When
// several have, the text is cut at the one that starts first; a longer stop
// string that started even earlier but is not complete yet does not count
// (vLLM likewise checks only complete stop strings after each token).
// Matching is on bytes, so a stop string split across pushes, or inside a
// multi-byte character, is found.
type StopMatcher struct {
	stops   []string
	pending string // held-back text
	stopped bool
}

// NewStopMatcher returns a matcher for stops; empty strings are ignored.
func NewStopMatcher(stops []string) *StopMatcher {
	m := &StopMatcher{}
	for _, s := range stops {
		if s != "" {
			m.stops = append(m.stops, s)
		}
	}
	return m
}

// Push adds the next piece of generated text. emit is the text that is safe
// to send now. Once stopped is true, emit excludes the stop string and
// everything after it, and later calls return ("", true).
func (m *StopMatcher) Push(text string) (emit string, stopped bool) {
	if m.stopped {
		return "", true
	}
	buf := m.pending + text
	cut := -1
	for _, s := range m.stops {
		if i := strings.Index(buf, s); i >= 0 && (cut < 0 || i < cut) {
			cut = i
		}
	}
	if cut >= 0 {
		m.pending, m.stopped = "", true
		return buf[:cut], true
	}
	keep := max(m.partialStop(buf), partialRune(buf))
	m.pending = buf[len(buf)-keep:]
	return buf[:len(buf)-keep], false
}

// Flush returns the held-back text at the end of generation ("" once a stop
// string was found) and empties the matcher.
func (m *StopMatcher) Flush() string {
	out := m.pending
	m.pending = ""
	return out
}

// partialStop is the length of the longest suffix of buf that is a proper
// prefix of a stop string.
func (m *StopMatcher) partialStop(buf string) int {
	best := 0
	for _, s := range m.stops {
		for n := min(len(buf), len(s)-1); n > best; n-- {
			if strings.HasPrefix(s, buf[len(buf)-n:]) {
				best = n
				break
			}
		}
	}
	return best
}

// partialRune is the length of an incomplete UTF-8 sequence ending buf.
func partialRune(buf string) int {
	for n := 1; n <= min(len(buf), utf8.UTFMax-1); n++ {
		b := buf[len(buf)-n]
		if utf8.RuneStart(b) {
			if utf8.FullRuneInString(buf[len(buf)-n:]) {
				return 0
			}
			return n
		}
	}
	return 0
}
