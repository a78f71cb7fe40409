package safetensors

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rssFileKiB reads this process's resident file-backed pages: RssFile, plus
// RssShmem for a temporary directory on tmpfs.
func rssFileKiB(t *testing.T) int {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	total, found := 0, false
	for _, line := range strings.Split(string(status), "\n") {
		for _, key := range []string{"RssFile:", "RssShmem:"} {
			if rest, ok := strings.CutPrefix(line, key); ok {
				kib, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
				if err != nil {
					t.Fatalf("%s line %q: %v", key, line, err)
				}
				total, found = total+kib, true
			}
		}
	}
	if !found {
		t.Skip("no RssFile in /proc/self/status")
	}
	return total
}

// Evict drops a mapped file's pages from the resident set, and the tensors
// read the same bytes afterwards.
func TestEvictKeepsDataAndFreesPages(t *testing.T) {
	const n = 16 << 20 // 16 MiB of U8
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i*7 + i>>12)
	}
	path := filepath.Join(t.TempDir(), "big.safetensors")
	if err := Write(path, []Tensor{{Name: "w", DType: U8, Shape: []int{n}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tensor, _ := f.Tensor("w")
	if !bytes.Equal(tensor.Data, data) { // faults every page in
		t.Fatal("mapped tensor differs from what was written")
	}
	before := rssFileKiB(t)
	f.Evict()
	after := rssFileKiB(t)
	if before-after < n/1024*3/4 {
		t.Fatalf("RssFile %d KiB before Evict, %d after: want about %d KiB less", before, after, n/1024)
	}
	if !bytes.Equal(tensor.Data, data) {
		t.Fatal("tensor differs after Evict")
	}
}
