#!/usr/bin/env bash
# Puts the binaries the tests run for real (kube-apiserver, etcd, kubectl, an OCI registry, helm, promtool) in a cache directory
# outside the repository and prints that directory (use it as KUBEBUILDER_ASSETS).
#
# The envtest download site is not reachable from this machine kind, so everything is built from Go modules served by
# the module proxy. Each binary is built in a throwaway module so none of these large dependency graphs touch acrpull's
# own go.mod. Builds are keyed by version, so a warm run only checks that the files exist.
#
# Usage: hack/test-env.sh                progress goes to stderr, the directory to stdout.
#        hack/test-env.sh --background   starts the builds and returns at once (output in the cache's prefetch.log);
#                                        `make test` uses it so its own compiling overlaps the builds.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
REGISTRY_VERSION=${REGISTRY_VERSION:-v3.0.0}
HELM_VERSION=${HELM_VERSION:-v3.19.2}
# Prometheus tags its Go module v0.<major*100+minor>.<patch>: v0.316.0 is Prometheus 3.16.0.
PROMTOOL_VERSION=${PROMTOOL_VERSION:-v0.316.0}
CACHE_ROOT=${ACRPULL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/acrpull}
ASSETS=$CACHE_ROOT/assets/k8s-$K8S_VERSION-etcd-$ETCD_VERSION
TOOLS=$CACHE_ROOT/tools
mkdir -p "$ASSETS" "$TOOLS"

if [[ ${1:-} == --background ]]; then
  WITH_HELM=1 nohup "$0" >"$CACHE_ROOT/prefetch.log" 2>&1 &
  exit 0
fi
# One build at a time: a second caller (make test's verify step, while the prefetch runs) waits here, then finds the
# binaries built. The lock goes with the process, however it ends.
exec 9>"$CACHE_ROOT/.lock"
flock 9

# The compiler and linker spend much of their time collecting garbage: GOGC=400 built acrpull's own binaries from
# an empty cache 20% faster here (214 s against 269 s); the memory limit keeps the linker of kube-apiserver, whose
# heap is largest, from growing without bound while several builds run side by side.
export GOGC=${GOGC:-400} GOMEMLIMIT=${GOMEMLIMIT:-3GiB}

log() { printf '[test-env] %s\n' "$*" >&2; }
start_all=$(date +%s)

timed() { # timed NAME COMMAND...: runs a build step and reports how long it took
  local name=$1; shift
  local t0; t0=$(date +%s)
  log "building $name ..."
  "$@"
  log "built $name in $(( $(date +%s) - t0 )) s"
}

scratch_module() { # scratch_module NAME: a fresh throwaway module directory, printed
  local d; d=$(mktemp -d "${TMPDIR:-/tmp}/acrpull-$1-XXXXXX")
  (cd "$d" && go mod init "local/$1" >/dev/null 2>&1)
  echo "$d"
}

build_kubernetes() {
  local d; d=$(scratch_module kube)
  (
    cd "$d"
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    local modfile minor major
    modfile=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    major=${K8S_VERSION#v}; major=${major%%.*}
    # k8s.io/kubernetes points its staging modules at ./staging; the proxy serves each of them as k8s.io/<name> v0.<minor>.<patch>.
    {
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo "replace ("
      grep -oE '^\s*k8s.io/[a-z0-9-]+ => \./staging/src/k8s.io/[a-z0-9-]+' "$modfile" |
        awk -v v="v0.${K8S_VERSION#v1.}" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } >>go.mod
    cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    # Unstamped binaries report v0.0.0-master, which breaks Helm kubeVersion checks and `kubectl version`.
    local ldflags=""
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    done
    # One go build for both: the packages they share compile once.
    mkdir -p out
    GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $ldflags" -o out/ k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl
    mv out/kube-apiserver "$ASSETS/kube-apiserver.tmp" && mv "$ASSETS/kube-apiserver.tmp" "$ASSETS/kube-apiserver"
    mv out/kubectl "$ASSETS/kubectl.tmp" && mv "$ASSETS/kubectl.tmp" "$ASSETS/kubectl"
  )
  rm -rf "$d"
}

build_main() { # build_main OUTPUT MODULE@VERSION: builds main.go, read from stdin, against the module
  local out=$1 modver=$2
  local d; d=$(scratch_module main)
  cat >"$d/main.go"
  (
    cd "$d"
    go get "$modver" >/dev/null
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1
    go build -trimpath -ldflags "-s -w" -o "$out.tmp" .
    mv "$out.tmp" "$out"
  )
  rm -rf "$d"
}

build_etcd() {
  build_main "$ASSETS/etcd" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
}

# The OCI registry with the storage drivers and authentication the tests use (filesystem and in-memory storage,
# bearer tokens), from a main of its own: upstream's cmd/registry also links the Azure, Google Cloud and S3 storage
# drivers and their SDKs, most of the registry's build time, for nothing the tests do.
build_registry() { # build_registry OUTPUT
  build_main "$1" "github.com/distribution/distribution/v3@$REGISTRY_VERSION" <<'GO'
package main

import (
	"github.com/distribution/distribution/v3/registry"
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

func main() { _ = registry.RootCmd.Execute() }
GO
}

build_go_tool() { # build_go_tool OUTPUT MODULE@VERSION PACKAGE [BUILD_TAGS]
  local out=$1 modver=$2 pkg=$3 tags=${4:-}
  local d; d=$(scratch_module tool)
  (
    cd "$d"
    printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >tools.go
    go get "$modver" >/dev/null
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod go build -trimpath -tags "$tags" -ldflags "-s -w" -o "$out.tmp" "$pkg"
    mv "$out.tmp" "$out"
  )
  rm -rf "$d"
}

# The builds are independent: run them side by side. Each go build has long single-threaded stretches (linking, the
# biggest packages) and module downloads wait on the network, so together they keep both cores busy where one after
# another they would not. Each build logs to its own file, shown if it fails.
pids=() names=() logs=()
background() { # background NAME FUNCTION ARGS...: starts a timed build
  local name=$1; shift
  local logfile; logfile=$(mktemp "${TMPDIR:-/tmp}/acrpull-build-XXXXXX.log")
  timed "$name" "$@" >"$logfile" 2>&1 &
  pids+=($!) names+=("$name") logs+=("$logfile")
}
[[ -x $ASSETS/kube-apiserver && -x $ASSETS/kubectl ]] || background "kube-apiserver+kubectl $K8S_VERSION" build_kubernetes
[[ -x $ASSETS/etcd ]] || background "etcd $ETCD_VERSION" build_etcd
[[ -x $TOOLS/registry-$REGISTRY_VERSION ]] ||
  background "registry $REGISTRY_VERSION" build_registry "$TOOLS/registry-$REGISTRY_VERSION"
if [[ ${WITH_HELM:-0} == 1 && ! -x $TOOLS/helm-$HELM_VERSION ]]; then
  background "helm $HELM_VERSION" build_go_tool "$TOOLS/helm-$HELM_VERSION" "helm.sh/helm/v3@$HELM_VERSION" helm.sh/helm/v3/cmd/helm
fi
# promtool checks and unit-tests the chart's PrometheusRule (test/chart); only the chart tests need it, like helm.
# remove_all_sd (Prometheus's own build tag) leaves out every service discovery and its cloud SDK: rule checks and
# rule unit tests discover nothing.
if [[ ${WITH_HELM:-0} == 1 && ! -x $TOOLS/promtool-$PROMTOOL_VERSION ]]; then
  background "promtool $PROMTOOL_VERSION" build_go_tool "$TOOLS/promtool-$PROMTOOL_VERSION" \
    "github.com/prometheus/prometheus@$PROMTOOL_VERSION" github.com/prometheus/prometheus/cmd/promtool remove_all_sd
fi
failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    grep '^\[test-env\]' "${logs[$i]}" >&2 || true
  else
    cat "${logs[$i]}" >&2
    log "building ${names[$i]} failed (its output is above)"
    failed=1
  fi
  rm -f "${logs[$i]}"
done
((failed == 0)) || exit 1
ln -sf "$TOOLS/registry-$REGISTRY_VERSION" "$ASSETS/registry"
[[ -x $TOOLS/helm-$HELM_VERSION ]] && ln -sf "$TOOLS/helm-$HELM_VERSION" "$ASSETS/helm"
[[ -x $TOOLS/promtool-$PROMTOOL_VERSION ]] && ln -sf "$TOOLS/promtool-$PROMTOOL_VERSION" "$ASSETS/promtool"

log "assets ready in $(( $(date +%s) - start_all )) s"
echo "$ASSETS"
