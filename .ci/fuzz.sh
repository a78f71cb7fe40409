#!/usr/bin/env bash
# Runs every Fuzz target of the module for a short while (FUZZTIME inputs
# each, default 20000x). Targets are found by name, so a new one is fuzzed
# without being listed here. The budget is a count, not a duration: Go 1.26's
# fuzz coordinator can report a spurious "context deadline exceeded" when a
# -fuzztime duration ends while a worker is mid-input (golang/go#75804,
# fixed in Go 1.27); a count has no deadline to race. Each target's committed seed corpus (testdata/fuzz/NAME/)
# also runs as plain tests in `go test ./...`; an input that fails here is
# written under testdata/fuzz/ of its package: commit it so it stays.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-20000x}

n=0
while IFS= read -r file; do
	dir=$(dirname "$file")
	for target in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //'); do
		echo "-- $target ($dir, $FUZZTIME)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -timeout 5m "./$dir"
		n=$((n + 1))
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
echo "fuzzed $n targets"
