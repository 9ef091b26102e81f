# acrpull: run `make help` for the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

CONTROLLER_GEN := go run sigs.k8s.io/controller-tools/cmd/controller-gen
# Test binaries (kube-apiserver, etcd, kubectl, registry, helm) live outside the repository, built once per version.
ASSETS = $(shell hack/test-env.sh)
# The default of one test package per core: at -p 4 the go test step was 1.5 min shorter (2026-12-05), but the
# crash-consistency soak then failed 2 runs of 4. Both defects it found are fixed (a secret of a binding that vanished
# while the controller was down; a reference to a shared secret whose sibling was deleted before the attach), and the
# soak passed seeds 1-3 at a load average of 30 (2026-12-06); -p 4 waits for a full run measured green.
GO_TEST_FLAGS ?= -timeout 20m
# The version --version prints and acrpull_build_info reports: the commit's tag or hash.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO_BUILD_FLAGS = -ldflags "-X github.com/acrpull/acrpull/internal/buildinfo.version=$(VERSION)"

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

.PHONY: generate
generate: ## Regenerate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: ## Regenerate CRDs and RBAC.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:dir=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=acrpull-controller paths=./internal/controller/... output:rbac:dir=config/rbac
	hack/render-manifests.sh # chart CRDs and ClusterRole from the above, then deploy/latest from the chart

.PHONY: verify
verify: ## Fail if generated files are stale or code is unformatted.
	hack/verify.sh

.PHONY: build
build: ## Build bin/acrpull, bin/acrpull-nmi, bin/acrpull-mic, bin/kubectl-acrpull, bin/acrpull-demo and bin/fakeazure.
	go build $(GO_BUILD_FLAGS) -o bin/acrpull ./cmd/acrpull
	go build $(GO_BUILD_FLAGS) -o bin/acrpull-nmi ./cmd/acrpull-nmi
	go build $(GO_BUILD_FLAGS) -o bin/acrpull-mic ./cmd/acrpull-mic
	go build $(GO_BUILD_FLAGS) -o bin/kubectl-acrpull ./cmd/kubectl-acrpull
	go build $(GO_BUILD_FLAGS) -o bin/acrpull-demo ./cmd/acrpull-demo
	go build $(GO_BUILD_FLAGS) -o bin/fakeazure ./cmd/fakeazure

IMAGE_FLAGS ?=
.PHONY: image
image: ## Build the container image into bin/acrpull-image.tar with only Go and a Debian mirror (IMAGE_FLAGS='-arch arm64', '-tag REF -push').
	go run ./hack/imagebuild $(IMAGE_FLAGS)

.PHONY: demo
demo: ## Run acrpull's main job locally: control plane, fake Azure, real registry, real controller (DEMO_KEEP=1 keeps it up).
	@assets=$$(hack/test-env.sh) && KUBEBUILDER_ASSETS=$$assets go run ./cmd/acrpull-demo

BENCH_FLAGS ?=
.PHONY: bench
bench: ## Measure burst, steady refresh, memory under noise and throttling at 10,000 bindings (prints figures).
	@assets=$$(WITH_HELM=1 hack/test-env.sh) && go build -o bin/acrpull ./cmd/acrpull && \
	  KUBEBUILDER_ASSETS=$$assets go run ./cmd/acrpull-bench $(BENCH_FLAGS)

# 100,000 bindings over 10,000 namespaces: burst against its write floor, steady refresh (writes per second), peak
# RSS and heap profiles. Hours on a two-core machine; not part of `make bench`. Tokens live an hour, so the burst
# ends before the first refreshes come due and the steady window (45 min) sees one full refresh wave. The bench scrapes
# the controller's metrics every 30 s, as Prometheus would, so the peak RSS includes what a scrape of 100,000 costs.
BENCH_LARGE_FLAGS ?= --bindings 100000 --namespaces 10000 --scenarios burst,steady --access-token-lifetime 1h --steady-cycles 1 \
  --profile $(or $(TMPDIR),/tmp)/bench-large-profiles --out $(or $(TMPDIR),/tmp)/bench-large.json
.PHONY: bench-large
bench-large: ## Burst and steady refresh at 100,000 bindings over 10,000 namespaces, peak RSS, heap profiles (hours; BENCH_FLAGS adds flags).
	@assets=$$(WITH_HELM=1 hack/test-env.sh) && go build -o bin/acrpull ./cmd/acrpull && \
	  KUBEBUILDER_ASSETS=$$assets go run ./cmd/acrpull-bench $(BENCH_LARGE_FLAGS) $(BENCH_FLAGS)

# msi-acrpull side by side: MSI_ACRPULL_GIT names a git directory (clone or bare snapshot) of github.com/Azure/msi-acrpull;
# BUILD_MSI_ACRPULL builds it (outside this repository; nothing of upstream is committed here).
MSI_ACRPULL_GIT ?=
# The search tool's fetch keeps a snapshot's git directory in <dir>/repo; either may be given.
MSI_ACRPULL_GIT_DIR = $(if $(wildcard $(MSI_ACRPULL_GIT)/repo/HEAD),$(MSI_ACRPULL_GIT)/repo,$(MSI_ACRPULL_GIT))
MSI_ACRPULL_REV ?= v0.1.24
MSI_ACRPULL_BIN ?= $(or $(TMPDIR),/tmp)/msi-acrpull-$(MSI_ACRPULL_REV)
BUILD_MSI_ACRPULL ?= ../shared/tools/build-msi-acrpull.sh
# Tokens living 10 minutes: msi-acrpull's burst ends before its first refresh point (5 min), every binding refreshes
# once in steady, and busy and restart run among bindings still refreshing, at a rate msi-acrpull's one worker sustains.
BENCH_UPSTREAM_FLAGS ?= --bindings 1000 --namespaces 100 --scenarios burst,steady,busy,restart --access-token-lifetime 10m --steady-cycles 1 --out $(or $(TMPDIR),/tmp)/bench-upstream.json
.PHONY: bench-upstream
bench-upstream: ## Burst (1,000 bindings), steady refresh, busy and restart for msi-acrpull and acrpull in one run, side by side (MSI_ACRPULL_GIT=<git dir of Azure/msi-acrpull>).
	@if [ -z "$(MSI_ACRPULL_GIT)" ] || ! git -C "$(MSI_ACRPULL_GIT_DIR)" rev-parse -q --verify '$(MSI_ACRPULL_REV)^{commit}' >/dev/null 2>&1; then \
	  echo "bench-upstream: MSI_ACRPULL_GIT must name a git directory of github.com/Azure/msi-acrpull holding $(MSI_ACRPULL_REV) (MSI_ACRPULL_GIT='$(MSI_ACRPULL_GIT)')" >&2; exit 1; fi
	@if [ ! -x "$(BUILD_MSI_ACRPULL)" ]; then \
	  echo "bench-upstream: no build script at BUILD_MSI_ACRPULL='$(BUILD_MSI_ACRPULL)' (build-msi-acrpull.sh builds msi-acrpull from a git directory)" >&2; exit 1; fi
	REV=$(MSI_ACRPULL_REV) "$(BUILD_MSI_ACRPULL)" "$(MSI_ACRPULL_GIT_DIR)" "$(MSI_ACRPULL_BIN)"
	@assets=$$(WITH_HELM=1 hack/test-env.sh) && go build -o bin/acrpull ./cmd/acrpull && \
	  KUBEBUILDER_ASSETS=$$assets go run ./cmd/acrpull-bench $(BENCH_UPSTREAM_FLAGS) \
	    --upstream "$(MSI_ACRPULL_BIN) --metrics-bind-address=127.0.0.1:0 --health-probe-bind-address=127.0.0.1:0 --allowed-acr-server-suffixes=azurecr.io" $(BENCH_FLAGS)

# One node agent under load: 100 pods asking for tokens at 500/s in all (open loop), federation and standard modes.
# AAD_POD_IDENTITY_GIT, when set, names a git directory (clone or bare snapshot) of github.com/Azure/aad-pod-identity:
# its nmi is built by hack/build-upstream-nmi.sh outside this repository and measured beside acrpull's in standard mode.
AAD_POD_IDENTITY_GIT ?=
AAD_POD_IDENTITY_REV ?= v1.8.17
UPSTREAM_NMI_BIN ?= $(or $(TMPDIR),/tmp)/aad-pod-identity-nmi-$(AAD_POD_IDENTITY_REV)
BENCH_NMI_FLAGS ?= --scenarios nmi --out $(or $(TMPDIR),/tmp)/bench-nmi.json
.PHONY: bench-nmi
bench-nmi: ## One node agent (bin/acrpull-nmi) under 100 pods' token requests at 500/s, both modes (AAD_POD_IDENTITY_GIT=<git dir>: upstream's NMI beside it).
	@if [ -n "$(AAD_POD_IDENTITY_GIT)" ]; then REV=$(AAD_POD_IDENTITY_REV) hack/build-upstream-nmi.sh "$(AAD_POD_IDENTITY_GIT)" "$(UPSTREAM_NMI_BIN)"; fi
	@assets=$$(hack/test-env.sh) && KUBEBUILDER_ASSETS=$$assets go run ./cmd/acrpull-bench $(BENCH_NMI_FLAGS) \
	  $(if $(AAD_POD_IDENTITY_GIT),--nmi-upstream "$(UPSTREAM_NMI_BIN)") $(BENCH_FLAGS)

.PHONY: chart-test
chart-test: ## Lint and render the Helm chart; test its RBAC and admission policies on a real apiserver.
	@assets=$$(WITH_HELM=1 hack/test-env.sh) && KUBEBUILDER_ASSETS=$$assets go test -count=1 ./test/chart/...

.PHONY: assets
assets: ## Build the test platform binaries into the cache (prints the directory).
	hack/test-env.sh

# Starts building the test platform in the background, so the compiling that verify and the tests do overlaps it.
.PHONY: prefetch-assets
prefetch-assets:
	@hack/test-env.sh --background

.PHONY: test
test: prefetch-assets verify ## Unit, envtest and e2e tests on a real apiserver, fake Azure, a real registry and network namespaces.
	@hack/install-netns-tools.sh # iptables, iproute2, conntrack: the node agent's tests build their own network namespaces
	@assets=$$(hack/test-env.sh) && echo "test assets: $$assets" && \
	  KUBEBUILDER_ASSETS=$$assets go test $(GO_TEST_FLAGS) ./...
	@# A short fuzzing run of every fuzz target (their checked-in corpora also run as tests above). Fuzz targets live in
	@# small packages of pure functions: fuzzing rebuilds a package's whole dependency graph instrumented.
	@hack/fuzz.sh 5s

# The edit loop: unit and envtest packages, without verify, the fuzz step and the slow end-to-end ones (image builds,
# the demo, the soak); `make test` runs everything.
SLOW_PACKAGES := /hack/imagebuild|/internal/harness/image$$|/internal/harness/demo$$|/test/soak
.PHONY: test-fast
test-fast: ## Unit and envtest tests only (no verify, no image builds, demo, soak or fuzzing): the edit loop.
	@assets=$$(hack/test-env.sh) && KUBEBUILDER_ASSETS=$$assets go test $(GO_TEST_FLAGS) $$(go list ./... | grep -vE '$(SLOW_PACKAGES)')

.PHONY: test-soak
test-soak: ## Long reliability run: many SIGKILLs of the controller over many bindings (seeded).
	@assets=$$(hack/test-env.sh) && KUBEBUILDER_ASSETS=$$assets ACRPULL_SOAK_BINDINGS=$${ACRPULL_SOAK_BINDINGS:-1000} \
	  ACRPULL_SOAK_KILLS=$${ACRPULL_SOAK_KILLS:-10} go test -count=1 -timeout 60m -v -run 'TestCrashConsistency|TestLeaderFailover|TestAPIServerRestart' ./test/soak/

.PHONY: lint
lint: ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run honnef.co/go/tools/cmd/staticcheck ./...
