package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Set is the checkpoint of a model directory: one file or several shards.
type Set struct {
	files  []*File
	byName map[string]*File // tensor name -> the file holding it
}

// OpenDir opens the weights of a Hugging Face model directory as
// transformers does: model.safetensors if it exists, else the shards listed
// by model.safetensors.index.json ("weight_map": tensor -> file). Every
// tensor the index names must be in its shard.
func OpenDir(dir string) (*Set, error) {
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		f, err := Open(single)
		if err != nil {
			return nil, err
		}
		s := &Set{files: []*File{f}, byName: map[string]*File{}}
		for _, e := range f.entries {
			s.byName[e.name] = f
		}
		return s, nil
	}
	indexPath := filepath.Join(dir, "model.safetensors.index.json")
	raw, err := os.ReadFile(indexPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("safetensors: %s has neither model.safetensors nor model.safetensors.index.json", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", indexPath, err)
	}
	if len(index.WeightMap) == 0 {
		return nil, fmt.Errorf("safetensors: %s: empty or missing weight_map", indexPath)
	}
	s := &Set{byName: map[string]*File{}}
	shards := map[string]*File{}
	for _, name := range sortedKeys(index.WeightMap) {
		shard := index.WeightMap[name]
		f, ok := shards[shard]
		if !ok {
			if !filepath.IsLocal(shard) {
				s.Close()
				return nil, fmt.Errorf("safetensors: %s: tensor %q: shard %q is not a file name inside the directory", indexPath, name, shard)
			}
			f, err = Open(filepath.Join(dir, shard))
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("%w (shard listed in %s)", err, indexPath)
			}
			shards[shard] = f
			s.files = append(s.files, f)
		}
		if _, ok := f.index[name]; !ok {
			s.Close()
			return nil, fmt.Errorf("safetensors: %s: tensor %q is mapped to %s, which does not contain it", indexPath, name, shard)
		}
		s.byName[name] = f
	}
	return s, nil
}

// Tensor looks the name up across all shards.
func (s *Set) Tensor(name string) (Tensor, bool) {
	f, ok := s.byName[name]
	if !ok {
		return Tensor{}, false
	}
	return f.Tensor(name)
}

// Names lists every tensor name, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.byName))
	for n := range s.byName {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Files returns the open files of the set (one per shard).
func (s *Set) Files() []*File { return append([]*File(nil), s.files...) }

// Evict calls File.Evict on every shard.
func (s *Set) Evict() {
	for _, f := range s.files {
		f.Evict()
	}
}

// Close closes every shard and returns the first error.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
