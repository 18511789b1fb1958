#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (default 10s).
# Seed corpora live in each package's testdata/fuzz/<Target>/; new crashers
# that the fuzzer finds are written there and fail the run.
#
# Go 1.26's fuzz coordinator can end a clean run with a bare "context deadline
# exceeded" when -fuzztime expires while a worker is mid-call (golang/go#75804,
# fixed in Go 1.27). Such a run wrote no crasher, so it is run again, up to
# twice; a target fails when it writes a crasher or fails three times.
set -euo pipefail
FUZZTIME=${FUZZTIME:-10s}
cd "$(dirname "$0")/.."
status=0

# corpus_count prints how many entries the target's corpus directory holds.
corpus_count() {
  local d="$1/testdata/fuzz/$2"
  if [ -d "$d" ]; then find "$d" -type f | wc -l; else echo 0; fi
}

fuzz_target() {
  local pkg=$1 dir=$2 t=$3 attempt before out
  for attempt in 1 2 3; do
    before=$(corpus_count "$dir" "$t")
    out=$(mktemp)
    if go test -run='^$' -fuzz="^${t}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime=2s "$pkg" 2>&1 | tee "$out"; then
      rm -f "$out"
      return 0
    fi
    if [ "$(corpus_count "$dir" "$t")" -ne "$before" ] || ! tail -n 5 "$out" | grep -q '^    context deadline exceeded$'; then
      rm -f "$out"
      return 1
    fi
    rm -f "$out"
    echo "fuzz: $t stopped with the coordinator's deadline race (golang/go#75804) and wrote no crasher; attempt $attempt of 3"
  done
  return 1
}

for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u || true)
  for t in $targets; do
    echo "fuzz: $pkg $t ($FUZZTIME)"
    if ! fuzz_target "$pkg" "$dir" "$t"; then
      status=1
    fi
  done
done
exit $status
