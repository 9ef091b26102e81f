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

# What ships links only what it uses. No shipped program links the test harness. The two products share only what
# the shared list names: the API types, the Azure seam (internal/azauth), the token cache, the scheme, the build
# information and the process plumbing every program's manager is built with (internal/processmanager: metrics
# server, probes, leader election, cache options, token-cache sweeping; no product logic); each program links nothing
# else but its own product's packages, so a new package has to be placed in one list on purpose. The
# node agent and the assignment controller thus never link the binding controller, nor it them. Resource Manager is
# the assignment controller's alone: the binding controller and the node agent link neither
# internal/azauth/armidentity nor the Resource Manager SDK. The kubectl plugin only reads the cluster: it links the API
# types, the scheme, the build information and its own package, and neither product.
module=github.com/acrpull/acrpull
harness='/internal/harness/|/hack/'
shared="^$module/(api/.+|internal/(azauth|tokencache|scheme|buildinfo|processmanager))$"
declare -A product=(
  [acrpull]="^$module/(cmd/acrpull|internal/(controller|manager|mint|dockerconfig|identityallowlist|metrics)(/.+)?)$"
  [acrpull-nmi]="^$module/(cmd/acrpull-nmi|internal/(nmi|imdsredirect|imdspath|podidentity|healthprobe|upstreamflag)(/.+)?)$"
  [acrpull-mic]="^$module/(cmd/acrpull-mic|internal/(mic|podidentity|healthprobe|upstreamflag|azauth/armidentity)(/.+)?)$"
)
# The plugin's list replaces the shared one: it may not link the Azure seam, the token layers or the process plumbing.
readonly plugin="^$module/(api/.+|cmd/kubectl-acrpull|internal/(scheme|buildinfo|pulldiagnosis))$"
arm="^$module/internal/azauth/armidentity\$|^github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/"
layering_errors=()
for program in acrpull acrpull-nmi acrpull-mic kubectl-acrpull; do
  all=$(go list -deps ./cmd/$program)
  deps=$(grep "^$module/" <<<"$all" || true)
  if linked=$(grep -E "$harness" <<<"$deps"); then
    layering_errors+=("cmd/$program links test harness packages: $(echo $linked)")
  elif [[ $program == kubectl-acrpull ]] && linked=$(grep -Ev "$plugin" <<<"$deps"); then
    layering_errors+=("cmd/$program links packages beyond the API types, the scheme and its own: $(echo $linked)")
  elif [[ $program != kubectl-acrpull ]] && linked=$(grep -Ev "$shared|${product[$program]}" <<<"$deps"); then
    layering_errors+=("cmd/$program links packages that are neither shared nor its product's (the lists are in hack/verify.sh): $(echo $linked)")
  fi
  if linked=$(grep -E "$arm" <<<"$all") && [[ $program != acrpull-mic ]]; then
    layering_errors+=("cmd/$program links Resource Manager code, which only the assignment controller uses: $(echo $linked)")
  fi
done
# internal/azauth and its subpackages are the only door to Azure: no other package's own code imports an Azure SDK.
# (Tests may: the node agent's run an unmodified azidentity client, the fake cloud's check it against the SDKs.)
if sdk_users=$(go list -f '{{$p := .ImportPath}}{{range .Imports}}{{$p}} {{.}}{{"\n"}}{{end}}' ./... |
  grep ' github.com/Azure/azure-sdk-for-go/' | grep -v '^github.com/acrpull/acrpull/internal/azauth[/ ]'); then
  layering_errors+=("only internal/azauth and its subpackages may import the Azure SDKs: $(echo $sdk_users)")
fi
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
