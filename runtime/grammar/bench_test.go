package grammar

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/parrot-llm/parrot/runtime/tokenizer"
)

// BenchmarkCorpus runs the MaskBench corpus on the tokenizer in
// $GRAMMAR_BENCH_TOKENIZER (e.g. a 128k vocabulary from cmd/genmodel
// --preset llama32-1b), or the generated tiny one, over the files in
// $GRAMMAR_BENCH_DATA (default testdata/corpus).
func BenchmarkCorpus(b *testing.B) {
	dir := os.Getenv("GRAMMAR_BENCH_TOKENIZER")
	if dir == "" {
		dir = tinyModelDir(b)
	}
	v, err := LoadVocab(dir)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	data := os.Getenv("GRAMMAR_BENCH_DATA") // default: the hand-written corpus
	if data == "" {
		data = filepath.Join("testdata", "corpus")
	}
	files, _ := filepath.Glob(filepath.Join(data, "*.json"))
	var fs []*BenchFile
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		f := new(BenchFile)
		if err := json.Unmarshal(raw, f); err != nil {
			b.Fatal(err)
		}
		fs = append(fs, f)
	}
	b.ResetTimer()
	for range b.N {
		for _, f := range fs {
			if r := RunBench(f, v, tok, SchemaCompiler(v, Options{})); r.Status != StatusPassing && r.Status != StatusCompileError {
				b.Fatal(r.Status, r.Error)
			}
		}
	}
}

// BenchmarkColdWalk compiles each schema of $GRAMMAR_BENCH_DATA (default
// testdata/suite) afresh and walks its instances, so every iteration pays
// for building the automaton states: the mask-time tail. The vocabulary
// is loaded once, outside the timer (set $GRAMMAR_BENCH_TOKENIZER to a
// 128k tokenizer to profile the real case).
func BenchmarkColdWalk(b *testing.B) {
	dir := os.Getenv("GRAMMAR_BENCH_TOKENIZER")
	if dir == "" {
		dir = tinyModelDir(b)
	}
	v, err := LoadVocab(dir)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	data := os.Getenv("GRAMMAR_BENCH_DATA")
	if data == "" {
		data = filepath.Join("testdata", "suite")
	}
	files, _ := filepath.Glob(filepath.Join(data, "*.json"))
	type instance struct {
		schema []byte
		tokens [][]int32
	}
	var insts []instance
	for _, p := range files {
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		var f BenchFile
		if err := json.Unmarshal(raw, &f); err != nil {
			b.Fatal(err)
		}
		in := instance{schema: f.Schema}
		for _, t := range f.Tests {
			val, err := ParseValue(t.Data)
			if err != nil {
				continue
			}
			text, err := DumpsPython(val)
			if err != nil {
				continue
			}
			ids, err := tok.Encode(text, false)
			if err != nil {
				b.Fatal(err)
			}
			in.tokens = append(in.tokens, ids)
		}
		insts = append(insts, in)
	}
	mask := make([]uint64, (v.Size()+63)/64)
	b.ResetTimer()
	for range b.N {
		for _, in := range insts {
			g, err := CompileJSONSchema(v, in.schema, Options{})
			if err != nil {
				continue
			}
			for _, ids := range in.tokens {
				m := g.NewMatcher()
				for _, id := range ids {
					if err := m.FillMask(mask); err != nil {
						b.Fatal(err)
					}
					if mask[id>>6]&(1<<(id&63)) == 0 || m.Consume(id) != nil {
						break
					}
				}
			}
		}
	}
}
