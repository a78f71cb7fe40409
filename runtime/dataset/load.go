package dataset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/parrot-llm/parrot/runtime/hub"
)

// LoadOptions say where a dataset comes from.
type LoadOptions struct {
	Split    string      // split to train on; "" = "train"
	Revision string      // Hub revision; "" = from the id ("org/name@rev") or "main"
	Hub      *hub.Client // nil = hub.NewFromEnv()
}

// Load reads the rows of source: a local .jsonl, .json or .parquet file, a
// directory of them, or a Hub dataset id "org/name[@revision]", whose data
// files for the split are downloaded into the Hugging Face cache. It returns
// the rows and the files read.
func Load(ctx context.Context, source string, o LoadOptions) ([]Row, []string, error) {
	if st, err := os.Stat(source); err == nil {
		if st.IsDir() {
			return ReadDir(source, o.Split)
		}
		rows, err := ReadFile(source)
		return rows, []string{source}, err
	}
	if !hub.LooksLikeRepoID(source) {
		return nil, nil, fmt.Errorf("dataset %s: no such file or directory, and not a Hub dataset id such as org/name", source)
	}
	dir, err := Download(ctx, source, o)
	if err != nil {
		return nil, nil, err
	}
	return ReadDir(dir, o.Split)
}

// Download fetches the data files of a Hub dataset's split into the Hugging
// Face cache and returns the snapshot directory. Datasets are usually
// Parquet (data/train-00000-of-00001.parquet); JSON Lines and JSON are tried
// next, and a repository whose files name no split is all "train".
func Download(ctx context.Context, ref string, o LoadOptions) (string, error) {
	repoID, revision, err := hub.ParseRepoRef(ref)
	if err != nil {
		return "", err
	}
	if o.Revision != "" {
		revision = o.Revision
	}
	split := o.Split
	if split == "" {
		split = "train"
	}
	c := o.Hub
	if c == nil {
		if c, err = hub.NewFromEnv(); err != nil {
			return "", err
		}
	}
	// One listing per attempt: the split's files of each format in order of
	// preference, then (for "train") every file of that format.
	var attempts [][]string
	for _, ext := range formats {
		e := ext[1:]
		attempts = append(attempts, []string{
			split + "." + e, split + "[-._ 0-9/]*." + e,
			"*[-._ 0-9/]" + split + "." + e, "*[-._ 0-9/]" + split + "[-._ 0-9/]*." + e,
		})
	}
	if split == "train" {
		for _, ext := range formats {
			attempts = append(attempts, []string{"*" + ext})
		}
	}
	var lastErr error
	for _, patterns := range attempts {
		dir, err := c.Snapshot(ctx, hub.RepoDataset, repoID, revision, patterns)
		if err == nil {
			// The snapshot folder may hold files of earlier downloads; the
			// split's files are picked again by ReadDir.
			if _, serr := SplitFiles(listFiles(dir), split); serr != nil {
				return "", fmt.Errorf("dataset %s: %w", ref, serr)
			}
			return dir, nil
		}
		if !errors.Is(err, hub.ErrNotFound) || ctx.Err() != nil {
			return "", fmt.Errorf("dataset %s: %w", ref, err)
		}
		lastErr = err
	}
	return "", fmt.Errorf("dataset %s: no data files for split %q: %w", ref, split, lastErr)
}

// listFiles lists the files below dir as "/"-separated relative paths.
func listFiles(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if rel, rerr := filepath.Rel(dir, p); rerr == nil {
				out = append(out, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	return out
}
