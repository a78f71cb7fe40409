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
