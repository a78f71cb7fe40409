package dataset

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/parrot-llm/parrot/runtime/hub"
	"github.com/parrot-llm/parrot/runtime/hub/hubtest"
)

func write(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func records(t *testing.T, rows []Row) []Record {
	t.Helper()
	var out []Record
	for _, r := range rows {
		if r.Err == nil {
			out = append(out, r.Record)
		}
	}
	return out
}

func TestReadJSONLines(t *testing.T) {
	p := write(t, filepath.Join(t.TempDir(), "d.jsonl"),
		`{"instruction": "Q1", "response": "A1"}`+"\n\n"+
			`{"text": broken`+"\n"+
			`[1, 2]`+"\n"+
			`{"text": "Arr", "n": 3}`) // no final newline
	rows, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4", len(rows))
	}
	if rows[1].Err == nil || rows[1].Where != p+":3" || rows[2].Err == nil || !strings.Contains(rows[2].Err.Error(), "a list, not a JSON object") {
		t.Errorf("bad rows: %+v %+v", rows[1], rows[2])
	}
	want := []Record{{"instruction": "Q1", "response": "A1"}, {"text": "Arr", "n": 3.0}}
	if got := records(t, rows); !reflect.DeepEqual(got, want) {
		t.Errorf("records %v, want %v", got, want)
	}
	if rows[3].Where != p+":5" {
		t.Errorf("where %q", rows[3].Where)
	}
}

func TestReadJSON(t *testing.T) {
	dir := t.TempDir()
	want := []Record{{"text": "a"}, {"text": "b"}}
	for name, body := range map[string]string{
		"array.json":  `[{"text": "a"}, {"text": "b"}]`,
		"stream.json": "{\n  \"text\": \"a\"\n}\n{\"text\": \"b\"}\n",
	} {
		rows, err := ReadFile(write(t, filepath.Join(dir, name), body))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := records(t, rows); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	rows, err := ReadFile(write(t, filepath.Join(dir, "mixed.json"), `[{"text": "a"}, "oops"]`))
	if err != nil || len(rows) != 2 || rows[1].Err == nil {
		t.Errorf("array with a non-object: %v %+v", err, rows)
	}
	if _, err := ReadFile(write(t, filepath.Join(dir, "broken.json"), `[{"text": "a"`)); err == nil {
		t.Error("truncated JSON array: no error")
	}
	if _, err := ReadFile(write(t, filepath.Join(dir, "d.csv"), "a,b")); err == nil || !strings.Contains(err.Error(), "unsupported") {
		t.Errorf("csv: %v", err)
	}
}

// parquetRow is the layout datasets writes for a chat dataset plus Dolly columns.
type parquetMessage struct {
	Role    string `parquet:"role"`
	Content string `parquet:"content"`
}

type parquetRow struct {
	Instruction string           `parquet:"instruction"`
	Context     string           `parquet:"context"`
	Response    string           `parquet:"response"`
	Messages    []parquetMessage `parquet:"messages,list"`
	ID          int64            `parquet:"id"`
}

func parquetBytes(t *testing.T, rows []parquetRow) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadParquet(t *testing.T) {
	data := parquetBytes(t, []parquetRow{
		{Instruction: "Who?", Context: "Ctx", Response: "Me.", ID: 7},
		{Messages: []parquetMessage{{"user", "Hi"}, {"assistant", "Arr"}}, ID: 8},
	})
	p := write(t, filepath.Join(t.TempDir(), "train.parquet"), string(data))
	rows, err := ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got := records(t, rows)
	if len(got) != 2 {
		t.Fatalf("%d records", len(got))
	}
	if got[0]["instruction"] != "Who?" || got[0]["context"] != "Ctx" || got[0]["response"] != "Me." || got[0]["id"] != 7.0 {
		t.Errorf("row 0: %v", got[0])
	}
	s, err := ToSample(got[1], Format{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Messages) != 2 || s.Messages[1].Role != "assistant" || s.Messages[1].Content != "Arr" {
		t.Errorf("row 1 messages: %+v", s.Messages)
	}
	if rows[1].Where != p+" row 1" {
		t.Errorf("where %q", rows[1].Where)
	}
	if _, err := ReadFile(write(t, filepath.Join(t.TempDir(), "bad.parquet"), "PAR1 not really")); err == nil {
		t.Error("corrupt parquet: no error")
	}
}

func TestSplitFiles(t *testing.T) {
	for _, c := range []struct {
		paths []string
		split string
		want  []string
		err   string
	}{
		{[]string{"README.md", "data/train-00001-of-00002.parquet", "data/train-00000-of-00002.parquet", "data/test-00000-of-00001.parquet", "dataset_infos.json"},
			"train", []string{"data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"}, ""},
		{[]string{"data/train-0.parquet", "data/test-0.parquet"}, "test", []string{"data/test-0.parquet"}, ""},
		{[]string{"pirate.jsonl", "extra.json"}, "train", []string{"pirate.jsonl"}, ""},
		{[]string{"train.jsonl", "training_notes.txt", "trainer.jsonl"}, "", []string{"train.jsonl"}, ""},
		{[]string{"train/part-1.json", "valid/part-1.json"}, "train", []string{"train/part-1.json"}, ""},
		{[]string{"stories.jsonl"}, "test", nil, `no data files for split "test"`},
		{[]string{"data/test.parquet"}, "train", nil, `no data files for split "train"`},
		{[]string{"README.md"}, "train", nil, "no data files"},
	} {
		got, err := SplitFiles(c.paths, c.split)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%v %q: error %v, want %q", c.paths, c.split, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%v %q: %v %v, want %v", c.paths, c.split, got, err, c.want)
		}
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "train.jsonl"), `{"text": "a"}`+"\n"+`{"text": "b"}`+"\n")
	write(t, filepath.Join(dir, "test.jsonl"), `{"text": "t"}`+"\n")
	write(t, filepath.Join(dir, ".cache", "train.jsonl"), `{"text": "hidden"}`+"\n")
	rows, files, err := Load(context.Background(), dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := records(t, rows); !reflect.DeepEqual(got, []Record{{"text": "a"}, {"text": "b"}}) || len(files) != 1 {
		t.Errorf("train split: %v from %v", got, files)
	}
	rows, _, err = Load(context.Background(), dir, LoadOptions{Split: "test"})
	if err != nil || len(rows) != 1 || rows[0].Record["text"] != "t" {
		t.Errorf("test split: %v %v", rows, err)
	}
	if _, _, err := Load(context.Background(), filepath.Join(dir, "nope"), LoadOptions{}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing path: %v", err)
	}
}

// A Hub dataset is fetched into the cache: only the train split's parquet
// files are downloaded.
func TestLoadHubDataset(t *testing.T) {
	train := parquetBytes(t, []parquetRow{{Instruction: "Q1", Response: "A1"}, {Instruction: "Q2", Response: "A2"}})
	test := parquetBytes(t, []parquetRow{{Instruction: "T", Response: "T"}})
	s := hubtest.NewServer(t, hubtest.Repo{ID: "pirates/dolly-arr", Type: "dataset", Files: []hubtest.File{
		{Name: "README.md", Data: []byte("# arr\n")},
		{Name: "data/train-00000-of-00001.parquet", Data: train, LFS: true},
		{Name: "data/test-00000-of-00001.parquet", Data: test, LFS: true},
	}})
	cache := t.TempDir()
	c := &hub.Client{Endpoint: s.Endpoint, CacheDir: cache}
	rows, files, err := Load(context.Background(), "pirates/dolly-arr", LoadOptions{Hub: c})
	if err != nil {
		t.Fatal(err)
	}
	got := records(t, rows)
	if len(got) != 2 || got[0]["instruction"] != "Q1" || got[1]["response"] != "A2" {
		t.Fatalf("records %v", got)
	}
	if len(files) != 1 || !strings.HasPrefix(files[0], filepath.Join(cache, "datasets--pirates--dolly-arr", "snapshots")) {
		t.Errorf("files %v not in the Hub cache", files)
	}
	for _, r := range s.Requests() {
		if strings.Contains(r.Path, "test-00000") || strings.Contains(r.Path, "README") {
			t.Errorf("downloaded a file of no use: %s %s", r.Method, r.Path)
		}
	}
	// Cached: offline now works.
	off := &hub.Client{CacheDir: cache, Offline: true}
	if rows, _, err := Load(context.Background(), "pirates/dolly-arr", LoadOptions{Hub: off}); err != nil || len(rows) != 2 {
		t.Errorf("offline from cache: %d rows, %v", len(rows), err)
	}
	if _, _, err := Load(context.Background(), "pirates/none", LoadOptions{Hub: c}); err == nil || !strings.Contains(err.Error(), "pirates/none") {
		t.Errorf("missing dataset: %v", err)
	}
}
