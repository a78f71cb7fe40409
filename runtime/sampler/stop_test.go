package sampler

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

type push struct {
	text    string
	emit    string
	stopped bool
}

func TestStopMatcherSteps(t *testing.T) {
	cases := []struct {
		name  string
		stops []string
		steps []push
		flush string
	}{
		{"split across pushes", []string{"</s>"}, []push{
			{"Hello <", "Hello ", false}, {"/", "", false}, {"s> more", "", true}, {"after", "", true},
		}, ""},
		{"false start is released", []string{"</s>"}, []push{
			{"a<", "a", false}, {"/b", "</b", false}, {"<", "", false},
		}, "<"},
		{"multiple stops, first to complete wins", []string{"\n\n", "END"}, []push{
			{"a\nb E", "a\nb ", false}, {"ND\n\n", "", true},
		}, ""},
		{"earliest start among complete stops", []string{"bc", "abcd", "cd"}, []push{
			{"xabcdy", "x", true},
		}, ""},
		{"overlapping prefix of itself", []string{"aab"}, []push{
			{"a", "", false}, {"a", "", false}, {"a", "a", false}, {"b", "", true},
		}, ""},
		{"stop at the very start", []string{"STOP"}, []push{
			{"STOP and more", "", true},
		}, ""},
		{"stop equal to the first push", []string{"x"}, []push{{"x", "", true}}, ""},
		{"no stops passes text through", nil, []push{{"abc", "abc", false}, {"", "", false}}, ""},
		{"empty stop strings are ignored", []string{""}, []push{{"abc", "abc", false}}, ""},
		{"unicode stop split inside a character", []string{"終わり"}, []push{
			{"これで\xe7\xb5", "これで", false}, {"\x82わ", "", false}, {"り。", "", true},
		}, ""},
		{"incomplete character held until complete", nil, []push{
			{"é\xe2\x82", "é", false}, {"\xac!", "€!", false},
		}, ""},
		{"held text flushed at the end", []string{"<|eot|>"}, []push{
			{"done <|eo", "done ", false},
		}, "<|eo"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewStopMatcher(tc.stops)
			for i, st := range tc.steps {
				emit, stopped := m.Push(st.text)
				if emit != st.emit || stopped != st.stopped {
					t.Fatalf("push %d %q: got (%q, %v), want (%q, %v)", i, st.text, emit, stopped, st.emit, st.stopped)
				}
			}
			if got := m.Flush(); got != tc.flush {
				t.Errorf("flush %q, want %q", got, tc.flush)
			}
		})
	}
}

// TestStopMatcherRandomSplits checks, for random texts cut at random byte
// offsets, that everything emitted plus the flush is exactly the text up to
// the first stop string, that no emit splits a character, and that the
// matcher holds back no more than a stop string's length.
//
// The stop strings do not contain one another, so the first occurrence in
// the whole text is what any chunking must find.
func TestStopMatcherRandomSplits(t *testing.T) {
	stops := []string{"STOP", "\n\n", "ß終", "<|eot_id|>"}
	pieces := []string{"a", "b", " ", "S", "T", "O", "P", "\n", "ß", "終", "<|", "eot", "_id", "|>", "é", "🙂", "<"}
	r := rand.New(rand.NewPCG(3, 4))
	for trial := range 3000 {
		var sb strings.Builder
		for range r.IntN(30) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
		}
		text := sb.String()
		want, wantStop := text, false
		for _, s := range stops {
			if i := strings.Index(text, s); i >= 0 && i < len(want) {
				want, wantStop = text[:i], true
			}
		}

		m := NewStopMatcher(stops)
		var got strings.Builder
		stopped := false
		for rest := text; rest != "" && !stopped; {
			n := 1 + r.IntN(min(len(rest), 6))
			var emit string
			emit, stopped = m.Push(rest[:n])
			rest = rest[n:]
			if !utf8.ValidString(emit) {
				t.Fatalf("trial %d: emit %q splits a character", trial, emit)
			}
			if len(m.pending) >= len("<|eot_id|>")+utf8.UTFMax {
				t.Fatalf("trial %d: holding back %q", trial, m.pending)
			}
			got.WriteString(emit)
		}
		got.WriteString(m.Flush())
		if got.String() != want || stopped != wantStop {
			t.Fatalf("trial %d: text %q: got (%q, %v), want (%q, %v)", trial, text, got.String(), stopped, want, wantStop)
		}
	}
}
