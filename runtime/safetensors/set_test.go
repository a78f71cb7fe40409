package safetensors

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeShard(t *testing.T, dir, name string, tensors ...Tensor) {
	t.Helper()
	if err := Write(filepath.Join(dir, name), tensors, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
}

func u8(name string, v ...byte) Tensor {
	return Tensor{Name: name, DType: U8, Shape: []int{len(v)}, Data: v}
}

func TestOpenDirSharded(t *testing.T) {
	dir := t.TempDir()
	writeShard(t, dir, "model-00001-of-00002.safetensors", u8("a", 1), u8("b", 2, 3), u8("unlisted", 0))
	writeShard(t, dir, "model-00002-of-00002.safetensors", u8("c", 4, 5, 6))
	index := `{"metadata": {"total_size": 6}, "weight_map": {
		"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors",
		"c": "model-00002-of-00002.safetensors"}}`
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.Names(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("names %v", got)
	}
	for name, want := range map[string][]byte{"a": {1}, "b": {2, 3}, "c": {4, 5, 6}} {
		tn, ok := s.Tensor(name)
		if !ok || string(tn.Data) != string(want) {
			t.Errorf("%s: %v %v", name, tn.Data, ok)
		}
	}
	if _, ok := s.Tensor("nope"); ok {
		t.Error("found a tensor that does not exist")
	}
	if len(s.Files()) != 2 {
		t.Errorf("%d files open", len(s.Files()))
	}
}

func TestOpenDirErrors(t *testing.T) {
	write := func(dir, index string) {
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), []byte(index), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct{ index, want string }{
		{`{"weight_map": {"a": "s1.safetensors", "z": "s2.safetensors"}}`, "s2.safetensors"}, // missing shard
		{`{"weight_map": {"a": "s1.safetensors", "x": "s1.safetensors"}}`, `"x"`},            // tensor not in its shard
		{`{"weight_map": {"a": "../s1.safetensors"}}`, "not a file name"},                    // escapes the directory
		{`{"weight_map": {}}`, "weight_map"},
		{`{"weight_map": `, "index.json"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		writeShard(t, dir, "s1.safetensors", u8("a", 1))
		write(dir, c.index)
		s, err := OpenDir(dir)
		if err == nil {
			s.Close()
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("index %s: error %v, want one containing %q", c.index, err, c.want)
		}
	}
	if _, err := OpenDir(t.TempDir()); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
		t.Errorf("empty dir: %v", err)
	}
}

func TestOpenDirSingleFile(t *testing.T) {
	s, err := OpenDir("../../testdata/stories260K")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := len(s.Names()); n != 47 {
		t.Errorf("%d names", n)
	}
	if tn, ok := s.Tensor("model.norm.weight"); !ok || tn.Shape[0] != 64 {
		t.Errorf("model.norm.weight: %v %v", tn.Shape, ok)
	}
}
