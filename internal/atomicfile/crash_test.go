//go:build unix

package atomicfile

import (
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// The child half of TestReplaceDirCrash: replace the directory named by
// the environment, and SIGKILL this process at the given step.
func crashChild(t *testing.T, dir, at string, fallback bool) {
	k, _ := strconv.Atoi(at)
	n := 0
	r := replacer{exchange: exchange, step: func(string) {
		if n++; n == k {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}}
	if fallback {
		r.exchange = unsupported
	}
	if err := r.replace(dir, fillNew(r.step)); err != nil {
		t.Fatal(err)
	}
}

// A process killed at each step of ReplaceDir in turn leaves the old
// directory or the new one, whole, with everything fill did not write
// carried over; with the fallback a kill between its two renames leaves
// the old one aside, and the next ReplaceDir puts it back. Each run starts
// with a ReplaceDir, which must clean up after the kill before.
func TestReplaceDirCrash(t *testing.T) {
	if dir := os.Getenv("ATOMICFILE_CRASH_DIR"); dir != "" {
		crashChild(t, dir, os.Getenv("ATOMICFILE_CRASH_AT"), os.Getenv("ATOMICFILE_CRASH_FALLBACK") != "")
		return
	}
	for _, fallback := range []bool{false, true} {
		name := map[bool]string{false: "exchange", true: "fallback"}[fallback]
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			writeFiles(t, dir, oldFiles)
			tried, survived := 0, 0
			for k := 1; ; k++ {
				if k > 1 { // reset to the old directory, through a ReplaceDir
					err := ReplaceDir(dir, func(staging string) error {
						writeFiles(t, staging, map[string]string{"a": "old a", "b": "old b"})
						return nil
					})
					if err != nil {
						t.Fatalf("kill %d: the next ReplaceDir: %v", k-1, err)
					}
					if got := tree(t, dir); !maps.Equal(got, oldFiles) {
						t.Fatalf("kill %d: after the next ReplaceDir: %v", k-1, got)
					}
					if s := siblings(t, dir); len(s) != 0 {
						t.Fatalf("kill %d: left beside the directory after the next ReplaceDir: %v", k-1, s)
					}
				}
				cmd := exec.Command(os.Args[0], "-test.run=^TestReplaceDirCrash$")
				cmd.Env = append(os.Environ(), "ATOMICFILE_CRASH_DIR="+dir, "ATOMICFILE_CRASH_AT="+strconv.Itoa(k))
				if fallback {
					cmd.Env = append(cmd.Env, "ATOMICFILE_CRASH_FALLBACK=1")
				}
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if err == nil {
					if got := tree(t, dir); !maps.Equal(got, newFiles) {
						t.Fatalf("an uninterrupted replace left %v", got)
					}
					break // k is past the last step
				}
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("child at step %d: %v\n%s", k, err, out)
				}
				tried++
				got := tree(t, dir)
				switch {
				case maps.Equal(got, oldFiles), maps.Equal(got, newFiles):
					survived++
				case fallback && got == nil:
					// Between the fallback's renames: the old one is aside, whole.
					ents, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".out.staging-*.old"))
					if len(ents) == 1 && maps.Equal(tree(t, ents[0]), oldFiles) {
						survived++
						break
					}
					t.Errorf("killed at step %d: no directory, and no whole old one aside (%v)", k, ents)
				default:
					t.Errorf("killed at step %d: the directory holds %v", k, got)
				}
			}
			t.Logf("%s: kills survived %d/%d", name, survived, tried)
			if tried < 7 {
				t.Errorf("only %d steps to kill at", tried)
			}
		})
	}
}
