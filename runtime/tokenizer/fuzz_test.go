package tokenizer

import (
	"encoding/binary"
	"math"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/parrot-llm/parrot/runtime/testmodel"
)

// fuzzTokenizers are the tokenizers FuzzDecode decodes with: stories260K
// (SentencePiece-style BPE with byte fallback) and the synthetic Llama 3
// style byte-level BPE of runtime/testmodel (768 BPE tokens, 256 special
// tokens), which needs neither network nor node.
var fuzzTokenizers struct {
	once sync.Once
	list []fuzzTokenizer
	err  error
}

type fuzzTokenizer struct {
	*pipeline
	// genericExact: the generic stream decoder emits exactly Decode's text.
	// It cannot with byte fallback, where a later byte token can turn the
	// text of earlier ones into U+FFFD (HF's ByteFallback decoder replaces
	// every byte of an ill-formed run), after the generic decoder emitted
	// it.
	genericExact bool
}

func loadFuzzTokenizers(f *testing.F) []fuzzTokenizer {
	fuzzTokenizers.once.Do(func() {
		stories, err := Load(storiesDir)
		if err != nil {
			fuzzTokenizers.err = err
			return
		}
		dir := f.TempDir()
		if err := testmodel.Generate(dir, testmodel.Tiny()); err != nil {
			fuzzTokenizers.err = err
			return
		}
		llama3Style, err := Load(dir)
		if err != nil {
			fuzzTokenizers.err = err
			return
		}
		fuzzTokenizers.list = []fuzzTokenizer{{stories.(*pipeline), false}, {llama3Style.(*pipeline), true}}
	})
	if fuzzTokenizers.err != nil {
		f.Fatal(fuzzTokenizers.err)
	}
	return fuzzTokenizers.list
}

// fuzzIDs reads two bytes (little endian) per id: below 0x8000 the value
// modulo the vocabulary size, a valid id; from 0x8000 the value less 0xC000,
// in [-16383, 16382]: negative, valid or past the vocabulary, except that
// 0x8000 and 0xFFFF stand for the extremes of int32.
func fuzzIDs(data []byte, vocab int) []int32 {
	ids := make([]int32, 0, len(data)/2)
	for i := 0; i+1 < len(data); i += 2 {
		v := binary.LittleEndian.Uint16(data[i:])
		switch {
		case v < 0x8000:
			ids = append(ids, int32(int(v)%vocab))
		case v == 0x8000:
			ids = append(ids, math.MinInt32)
		case v == 0xFFFF:
			ids = append(ids, math.MaxInt32)
		default:
			ids = append(ids, int32(v)-0xC000)
		}
	}
	return ids
}

// hideStream hides the pipeline from NewStreamDecoder, which then takes
// its generic path (re-decoding the ids seen so far).
type hideStream struct{ Tokenizer }

// FuzzDecode decodes any id sequence with Decode and with the stream
// decoder (the pipeline's and the generic one). Neither may panic; an id
// outside the vocabulary is an error of Decode and of StreamDecoder.Add, and
// the stream skips it; what the stream emits, chunk by chunk, is valid UTF-8
// and adds up to Decode of the valid ids (for the generic stream, where it
// can: see genericExact).
func FuzzDecode(f *testing.F) {
	tks := loadFuzzTokenizers(f)
	f.Add([]byte("\x01\x00\x90\x01\x91\x01"), uint8(0), false, false)
	f.Add([]byte("\xe4\x00\x30\x00\x00\xc2"), uint8(1), false, true)
	f.Add([]byte("\x00\x03\x01\x03\x41\x00\xff\xff"), uint8(1), true, false)
	f.Fuzz(func(t *testing.T, data []byte, which uint8, skipSpecial, generic bool) {
		ft := tks[int(which)%len(tks)]
		tk := ft.pipeline
		ids := fuzzIDs(data, tk.VocabSize())
		var valid []int32
		for _, id := range ids {
			if id >= 0 && int(id) < tk.VocabSize() {
				valid = append(valid, id)
			}
		}
		got, err := tk.Decode(ids, skipSpecial)
		if len(valid) < len(ids) {
			if err == nil {
				t.Fatalf("Decode(%v) accepted an id outside [0, %d): %q", ids, tk.VocabSize(), got)
			}
		} else if err != nil {
			t.Fatalf("Decode(%v): %v", ids, err)
		}
		want, err := tk.Decode(valid, skipSpecial)
		if err != nil {
			t.Fatalf("Decode(%v): %v", valid, err)
		}

		var stk Tokenizer = tk
		if generic {
			stk = hideStream{tk}
		}
		d := NewStreamDecoder(stk, skipSpecial)
		var out strings.Builder
		for _, id := range ids {
			chunk, err := d.Add(id)
			if bad := id < 0 || int(id) >= tk.VocabSize(); bad != (err != nil) {
				t.Fatalf("Add(%d) (vocabulary %d): error %v", id, tk.VocabSize(), err)
			}
			if !utf8.ValidString(chunk) {
				t.Fatalf("ids %v: chunk %q is not valid UTF-8", ids, chunk)
			}
			out.WriteString(chunk)
		}
		out.WriteString(d.Flush())
		if out.String() != want && (!generic || ft.genericExact) {
			t.Fatalf("ids %v (skip special %v, generic %v): streamed %q, Decode %q", ids, skipSpecial, generic, out.String(), want)
		}
		if _, err := d.Add(0); err == nil {
			t.Fatal("Add after Flush: no error")
		}
	})
}
