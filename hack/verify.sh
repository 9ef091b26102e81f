#!/usr/bin/env bash
# Regenerates every generated file in a scratch copy of the sources and fails if the checked-in files differ, so a
# change to the API types cannot land without its CRDs, RBAC and deepcopy code. Also checks formatting, vet and
# staticcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [[ -n $unformatted ]]; then
  echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
# vet compiles every dependency of every package, tests included, so `go test` after it compiles little. GOGC as in
# hack/test-env.sh: the compiler's garbage collection is a fifth of a cold build.
GOGC=${GOGC:-400} GOMEMLIMIT=${GOMEMLIMIT:-3GiB} go vet ./...
# staticcheck (pinned in tools.go): deprecated APIs, unused code and likely bugs that vet does not look for. It reuses
# the packages vet just compiled and keeps its results in its own cache.
GOGC=${GOGC:-400} GOMEMLIMIT=${GOMEMLIMIT:-3GiB} go run honnef.co/go/tools/cmd/staticcheck ./...

# What ships links only what it uses: no shipped program links the test harness, and the two products share only the
# API types, the token layers and the Azure seam (the node agent and the assignment controller never link the binding
# controller, nor it them). The kubectl plugin only reads the cluster: it links neither product.
harness='/internal/harness/|/hack/'
layering_errors=()
for program in acrpull acrpull-nmi acrpull-mic kubectl-acrpull; do
  deps=$(go list -deps ./cmd/$program | grep '^github.com/acrpull/acrpull/' || true)
  if linked=$(grep -E "$harness" <<<"$deps"); then
    layering_errors+=("cmd/$program links test harness packages: $(echo $linked)")
  fi
  case $program in
  acrpull) other='/internal/(nmi|mic|imdsredirect|imdspath|podidentity)($|/)' ;;
  kubectl-acrpull) other='/internal/(controller|manager|mint|tokencache|azauth|nmi|mic|imdsredirect|imdspath|podidentity)($|/)' ;;
  *) other='/internal/(controller|manager|mint|dockerconfig|identityallowlist)($|/)' ;;
  esac
  if linked=$(grep -E "$other" <<<"$deps"); then
    layering_errors+=("cmd/$program links the other product's packages: $(echo $linked)")
  fi
done
if ((${#layering_errors[@]})); then
  printf '%s\n' "${layering_errors[@]}"; exit 1
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/tree"
tar --exclude=./.git --exclude=./bin -cf - . | tar -xf - -C "$scratch/tree"
(
  cd "$scratch/tree"
  gen="go run sigs.k8s.io/controller-tools/cmd/controller-gen"
  rm -rf config/crd/bases config/rbac
  find api -name zz_generated.deepcopy.go -delete
  $gen object:headerFile=hack/boilerplate.go.txt paths=./api/...
  $gen crd paths=./api/... output:crd:dir=config/crd/bases
  $gen rbac:roleName=acrpull-controller paths=./internal/controller/... output:rbac:dir=config/rbac
)
stale=0
for path in config/crd/bases config/rbac; do
  diff -ru "$path" "$scratch/tree/$path" || stale=1
done
for f in $(find api -name zz_generated.deepcopy.go); do
  diff -u "$f" "$scratch/tree/$f" || stale=1
done
# The Helm chart's copies of the CRDs and ClusterRole, and deploy/latest rendered from the chart.
(cd "$scratch/tree" && hack/render-manifests.sh >/dev/null)
for path in config/helm/files/crds config/helm/templates/clusterrole.yaml deploy/latest; do
  diff -ru "$path" "$scratch/tree/$path" || stale=1
done
if [[ $stale != 0 ]]; then
  echo "generated files are stale: run 'make generate manifests' and commit the result"
  exit 1
fi
echo "verify: generated files current, code formatted, vetted and staticchecked ($(( $(date +%s) - start )) s)"
