#!/usr/bin/env bash
# Runs every Fuzz target of the module for a short time (FUZZTIME, default
# 8s each). Targets are found by name, so a new one is fuzzed without being
# listed here. Each target's committed seed corpus (testdata/fuzz/NAME/)
# also runs as plain tests in `go test ./...`; an input that fails here is
# written under testdata/fuzz/ of its package: commit it so it stays.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-8s}

n=0
while IFS= read -r file; do
	dir=$(dirname "$file")
	for target in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //'); do
		echo "-- $target ($dir, $FUZZTIME)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "./$dir"
		n=$((n + 1))
	done
done < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | sort)
echo "fuzzed $n targets"
