#!/usr/bin/env bash
# Runs a short fuzzing session of each fuzz target (their checked-in corpora also run as plain tests).
#
# A failing session prints its whole output. A finding is written to testdata/fuzz/<target>/ and replayed first by the
# next session, so a target that fails is run once more: a real finding fails again, while a fuzz worker that stalled
# on a loaded machine (seen once on a cold CI machine: FAIL after 6 s with no input written) does not.
#
# Usage: hack/fuzz.sh [FUZZTIME]   (default 5s)
set -uo pipefail

FUZZTIME=${1:-5s}
# Every fuzz target in the module, found in the test files rather than listed by hand, so a new target is fuzzed from
# the day it is written. Each entry is <package dir>:<target>.
mapfile -t targets < <(git ls-files '*_test.go' | xargs grep -oE '^func Fuzz[A-Za-z0-9_]+\(' /dev/null |
  sed -E 's#^(.*)/[^/]+_test\.go:func (Fuzz[A-Za-z0-9_]+)\($#./\1/:\2#' | sort -u)
if ((${#targets[@]} == 0)); then
  echo "hack/fuzz.sh: no fuzz targets found" >&2
  exit 1
fi

# One job per package, its targets one after another, two packages at a time (FUZZ_JOBS sets how many). go test -fuzz
# rebuilds a package's test binary and every package it depends on with coverage instrumentation; two targets of one
# package fuzzed at once would both compile that graph from a cold cache (the build cache does not share work in
# progress), while one after the other the second finds it cached. Packages with the largest graphs start first, so
# the smaller graphs, mostly within theirs, are instrumented while or after they are.
jobs=${FUZZ_JOBS:-2}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

fuzz_one() { # fuzz_one INDEX ENTRY: fuzzes one target (twice if the first session fails), status in $results/INDEX
  local index=$1 pkg=${2%%:*} target=${2##*:} out attempt
  for attempt in 1 2; do
    if out=$(go test -run XXX -fuzz "^$target\$" -fuzztime "$FUZZTIME" -parallel 1 "$pkg" 2>&1); then
      printf '%s %s\n' "$target" "$(tail -1 <<<"$out")" >"$results/$index.out"
      return 0
    fi
    printf '%s failed (attempt %d):\n%s\n' "$target" "$attempt" "$out" >>"$results/$index.err"
  done
  return 1
}

fuzz_package() { # fuzz_package PKG: fuzzes the package's targets in turn
  local i
  for i in "${!targets[@]}"; do
    if [[ ${targets[$i]%%:*} == "$1" ]]; then fuzz_one "$i" "${targets[$i]}" || true; fi
  done
}

mapfile -t packages < <(for pkg in $(printf '%s\n' "${targets[@]%%:*}" | sort -u); do
  printf '%d %s\n' "$(go list -deps -test "$pkg" | wc -l)" "$pkg"
done | sort -rn | cut -d' ' -f2)
for pkg in "${packages[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
  fuzz_package "$pkg" &
done
wait
# A target passed when its result line was written; what failed is printed whole, in the targets' order.
status=0
for i in "${!targets[@]}"; do
  if [[ -f $results/$i.err ]]; then cat "$results/$i.err" >&2; fi
  if [[ -f $results/$i.out ]]; then cat "$results/$i.out"; else status=1; fi
done
exit $status
