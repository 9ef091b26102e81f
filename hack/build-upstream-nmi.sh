#!/usr/bin/env bash
# Build aad-pod-identity's node agent (nmi; default v1.8.17, its last release) from a git directory of
# github.com/Azure/aad-pod-identity, for `make bench-nmi` to measure it beside acrpull-nmi.
#   hack/build-upstream-nmi.sh GIT_DIR [OUT]      (OUT default: /tmp/aad-pod-identity-nmi-$REV)
# GIT_DIR: a clone or bare snapshot of the repository. REV=<tag or commit> picks another revision. The source is
# extracted to a temporary directory and built there with the Go module proxy (GOFLAGS=-mod=mod); nothing of upstream
# is kept in this repository. Upstream is built unchanged.
set -euo pipefail
GIT_DIR=${1:?usage: build-upstream-nmi.sh GIT_DIR [OUT]}
REV=${REV:-v1.8.17}
OUT=$(realpath -m "${2:-${TMPDIR:-/tmp}/aad-pod-identity-nmi-$REV}")
git -C "$GIT_DIR" rev-parse --verify -q "$REV^{commit}" >/dev/null || {
  echo "build-upstream-nmi: $GIT_DIR has no revision $REV" >&2
  exit 1
}
if [[ -x $OUT ]] && "$OUT" --version 2>/dev/null | grep -q "$REV"; then
  echo "aad-pod-identity nmi $REV: $OUT (already built)"
  exit 0
fi
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git -C "$GIT_DIR" archive "$REV" | tar -x -C "$SRC"
cd "$SRC"
mkdir -p "$(dirname "$OUT")"
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -ldflags "-X github.com/Azure/aad-pod-identity/version.NMIVersion=$REV" -o "$OUT" ./cmd/nmi
echo "aad-pod-identity nmi $REV ($(git -C "$GIT_DIR" rev-parse "$REV")): $OUT"
