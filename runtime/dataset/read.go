package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// Data file formats, in order of preference when a directory holds several.
var formats = []string{".parquet", ".jsonl", ".json"}

// ReadFile reads the rows of one .jsonl, .json or .parquet file. A row that
// cannot be decoded is returned with Err set; an unreadable file is an error.
func ReadFile(path string) ([]Row, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".jsonl":
		return readJSONLines(path)
	case ".json":
		return readJSON(path)
	case ".parquet":
		return readParquet(path)
	default:
		return nil, fmt.Errorf("%s: unsupported data file type %q (want .jsonl, .json or .parquet)", path, ext)
	}
}

// ReadDir reads the data files of split below dir (see SplitFiles).
func ReadDir(dir, split string) ([]Row, []string, error) {
	var all []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir // .cache, .git
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			all = append(all, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	files, err := SplitFiles(all, split)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", dir, err)
	}
	var rows []Row
	for i, f := range files {
		files[i] = filepath.Join(dir, filepath.FromSlash(f))
		r, err := ReadFile(files[i])
		if err != nil {
			return nil, nil, err
		}
		rows = append(rows, r...)
	}
	return rows, files, nil
}

// SplitFiles picks the data files of a split from a repository or directory
// listing ("/"-separated relative paths), as Hugging Face datasets does: the
// files whose path names the split as a word (data/train-00000-of-00001.parquet,
// train.jsonl, train/part-0.json); if no file names any split, every data
// file is "train". Only the most preferred format present is kept (parquet,
// then jsonl, then json), so a dataset_infos.json beside parquet files is
// not read as data. The result is sorted.
func SplitFiles(paths []string, split string) ([]string, error) {
	if split == "" {
		split = "train"
	}
	var data []string
	for _, p := range paths {
		if slices.Contains(formats, strings.ToLower(filepath.Ext(p))) {
			data = append(data, p)
		}
	}
	if len(data) == 0 {
		return nil, errors.New("no data files (.parquet, .jsonl or .json)")
	}
	// A split is named when its word is delimited as datasets' patterns
	// require: by start or end, "-", ".", "_", " ", a digit or "/".
	named := func(word string) *regexp.Regexp {
		return regexp.MustCompile(`(^|[-._ 0-9/])(` + word + `)([-._ 0-9/]|$)`)
	}
	var picked []string
	for _, p := range data {
		if named(regexp.QuoteMeta(split)).MatchString(strings.TrimSuffix(p, filepath.Ext(p))) {
			picked = append(picked, p)
		}
	}
	if len(picked) == 0 {
		anySplit := named("(train|training|test|testing|eval|validation|valid|dev)")
		for _, p := range data {
			if anySplit.MatchString(strings.TrimSuffix(p, filepath.Ext(p))) {
				return nil, fmt.Errorf("no data files for split %q", split)
			}
		}
		if split != "train" {
			return nil, fmt.Errorf("no data files for split %q", split)
		}
		picked = data
	}
	for _, ext := range formats {
		var same []string
		for _, p := range picked {
			if strings.ToLower(filepath.Ext(p)) == ext {
				same = append(same, p)
			}
		}
		if len(same) > 0 {
			slices.Sort(same)
			return same, nil
		}
	}
	return nil, errors.New("unreachable")
}

// readJSONLines reads one JSON object per line; blank lines are skipped.
func readJSONLines(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	var rows []Row
	for line := 1; ; line++ {
		b, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			where := fmt.Sprintf("%s:%d", path, line)
			rows = append(rows, decodeRow(b, where))
		}
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
}

// readJSON reads a JSON array of objects, or a sequence of objects (JSON
// Lines, possibly pretty-printed).
func readJSON(path string) ([]Row, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, nil
	}
	if trimmed[0] == '[' {
		var items []json.RawMessage
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rows := make([]Row, len(items))
		for i, it := range items {
			rows[i] = decodeRow(it, fmt.Sprintf("%s[%d]", path, i))
		}
		return rows, nil
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	var rows []Row
	for i := 0; ; i++ {
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			// The stream cannot be resynchronised: the rest of the file is lost.
			return nil, fmt.Errorf("%s: object %d: %w", path, i, err)
		}
		rows = append(rows, decodeRow(raw, fmt.Sprintf("%s[%d]", path, i)))
	}
}

func decodeRow(b []byte, where string) Row {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return Row{Where: where, Err: fmt.Errorf("not JSON: %w", err)}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Row{Where: where, Err: fmt.Errorf("%s, not a JSON object", typeName(v))}
	}
	return Row{Record: Record(m), Where: where}
}

// readParquet reads every row of a Parquet file as a generic record.
func readParquet(path string) (rows []Row, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable Parquet file: %w", path, err)
	}
	// parquet-go panics on some schemas it cannot map; report those as errors.
	defer func() {
		if r := recover(); r != nil {
			rows, err = nil, fmt.Errorf("%s: reading Parquet: %v", path, r)
		}
	}()
	rd := parquet.NewGenericReader[any](pf)
	defer rd.Close()
	buf := make([]any, 256)
	for {
		n, rerr := rd.Read(buf)
		for _, v := range buf[:n] {
			where := fmt.Sprintf("%s row %d", path, len(rows))
			m, ok := normalize(v).(map[string]any)
			if !ok {
				rows = append(rows, Row{Where: where, Err: fmt.Errorf("row is %T, not a record", v)})
				continue
			}
			rows = append(rows, Row{Record: Record(m), Where: where})
		}
		clear(buf[:n])
		if rerr == io.EOF {
			return rows, nil
		}
		if rerr != nil {
			return nil, fmt.Errorf("%s: %w", path, rerr)
		}
	}
}
