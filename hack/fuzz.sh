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

status=0
for entry in "${targets[@]}"; do
  pkg=${entry%%:*} target=${entry##*:}
  for attempt in 1 2; do
    if out=$(go test -run XXX -fuzz "^$target\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1); then
      printf '%s %s\n' "$target" "$(tail -1 <<<"$out")"
      break
    fi
    printf '%s failed (attempt %d):\n%s\n' "$target" "$attempt" "$out" >&2
    if ((attempt == 2)); then status=1; fi
  done
done
exit $status
