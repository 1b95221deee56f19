# Weft — make targets follow kubebuilder's scaffold. Tools are pinned and installed into
# ./bin with `go install`; Kubernetes test binaries are built into a cache outside the repo.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

LOCALBIN ?= $(shell pwd)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
KUSTOMIZE ?= $(LOCALBIN)/kustomize
PROTOC_GEN_GO ?= $(LOCALBIN)/protoc-gen-go
PROTOC_GEN_GO_GRPC ?= $(LOCALBIN)/protoc-gen-go-grpc
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
CADDY ?= $(LOCALBIN)/caddy-$(CADDY_VERSION)
HELM ?= $(LOCALBIN)/helm

CONTROLLER_TOOLS_VERSION ?= v0.21.0
KUSTOMIZE_VERSION ?= v5.8.2
PROTOC_GEN_GO_VERSION ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION ?= v1.6.2
GOLANGCI_LINT_VERSION ?= v2.15.0
# The Caddy pair of make bench-proxy: a Go reverse proxy, the like-for-like peer.
CADDY_VERSION ?= v2.11.9
# The real Helm CLI that test/helm runs (helm template, helm lint) and hack/helm-install.sh uses.
HELM_VERSION ?= v4.3.2

IMG ?= weft-controller:dev
KUBECTL ?= kubectl
GO_TEST_FLAGS ?= -count=1 -timeout 20m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-20s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen kustomize ## Generate CRDs, RBAC and webhook configuration; copy upstream CRDs; sync the Helm charts.
	$(CONTROLLER_GEN) rbac:roleName=weft-controller crd:allowDangerousTypes=true webhook \
		paths="./apis/..." paths="./controllers/..." paths="./webhooks/..." paths="./internal/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook
	hack/upstream-crds.sh
	KUSTOMIZE=$(KUSTOMIZE) hack/helm-charts.sh

.PHONY: generate
generate: controller-gen protoc-gen ## Generate deepcopy code and the proxy API's protobuf code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./apis/..."
	hack/protoc.sh "$(LOCALBIN)"

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -l -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml: layering rules, then the linters).
	$(GOLANGCI_LINT) run ./...
	cd test/helm && $(GOLANGCI_LINT) run --config ../../.golangci.yml ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd into the cache (once) and print their directory.
	@hack/kube-binaries.sh

.PHONY: test
test: manifests generate fmt vet kustomize ## Run every test against a real kube-apiserver and etcd.
	@assets="$$(hack/kube-binaries.sh | tail -n1)"; \
	KUBEBUILDER_ASSETS="$$assets" go test $(GO_TEST_FLAGS) ./...
	$(MAKE) test-helm

.PHONY: test-helm
test-helm: helm ## Check the Helm charts: against config/default, with bin/helm, installed on a real API server.
	@assets="$$(hack/kube-binaries.sh | tail -n1)"; \
	cd test/helm && go vet ./... && KUBEBUILDER_ASSETS="$$assets" go test $(GO_TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target briefly (FUZZ_SECONDS each, default 20).
	hack/fuzz.sh

.PHONY: bench-proxy
bench-proxy: caddy ## Measure the proxy pair against direct, HAProxy, nginx and Caddy; writes bench/results/proxy.json.
	CADDY=$(CADDY) hack/bench-proxy.sh

.PHONY: bench-destination
bench-destination: ## Measure the destination service at scale; writes bench/results/destination.json.
	hack/bench-destination.sh

.PHONY: verify-generated
verify-generated: manifests generate ## Fail if generated files differ from what is committed.
	@git diff --exit-code -- . ':(exclude)go.sum' || { echo "generated files are stale: run make manifests generate and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- config apis proxy/api)" || { git status --porcelain -- config apis proxy/api; echo "untracked generated files: run make manifests generate and commit" >&2; exit 1; }

##@ Build

.PHONY: build
build: ## Build every binary into ./bin.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/ ./cmd/...

.PHONY: run
run: manifests generate ## Run the controller against the current kubeconfig.
	go run ./cmd/weft-controller --leader-elect=false --enable-webhooks=false

.PHONY: demo
demo: ## Run the whole mesh on a local single-node cluster (DEMO_KEEP=1 leaves it up).
	@hack/demo.sh

.PHONY: demo-local
demo-local: ## The demo without a cluster: local API server, control plane in-process, proxies on loopback.
	@hack/demo.sh --local

##@ Deployment

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Remove the CRDs from the cluster.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found -f -

.PHONY: deploy
deploy: manifests kustomize ## Install Weft (config/default) into the cluster.
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Remove Weft from the cluster.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found -f -

##@ Tools

$(LOCALBIN):
	mkdir -p $(LOCALBIN)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: kustomize
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

.PHONY: protoc-gen
protoc-gen: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
$(PROTOC_GEN_GO): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(PROTOC_GEN_GO_GRPC): | $(LOCALBIN)
	GOBIN=$(LOCALBIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# The binary's name carries its version, so changing the pin rebuilds it and an unchanged
# pin never does (the cold build takes about 5 minutes here).
.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.golangci-lint-build go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/.golangci-lint-build/golangci-lint $@ && rmdir $(LOCALBIN)/.golangci-lint-build

# bin/helm points at the pinned build, so changing the pin rebuilds it.
.PHONY: helm
helm: $(LOCALBIN)/helm-$(HELM_VERSION)
	ln -sf helm-$(HELM_VERSION) $(HELM)
$(LOCALBIN)/helm-$(HELM_VERSION): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.helm-build go install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/.helm-build/helm $@ && rmdir $(LOCALBIN)/.helm-build

.PHONY: caddy
caddy: $(CADDY)
$(CADDY): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.caddy-build go install github.com/caddyserver/caddy/v2/cmd/caddy@$(CADDY_VERSION)
	mv $(LOCALBIN)/.caddy-build/caddy $@ && rmdir $(LOCALBIN)/.caddy-build

##@ Local cluster

.PHONY: cluster-up
cluster-up: ## Build (once, cached) and start a single-node Kubernetes on this machine.
	hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove everything it left behind.
	hack/cluster/down.sh

.PHONY: images
images: ## Build the OCI images and import them into the local cluster.
	hack/images.sh

.PHONY: e2e
e2e: ## Run the end-to-end suite on the local cluster (brings it up and tears it down).
	hack/e2e.sh

.PHONY: helm-e2e
helm-e2e: ## Install Weft with Helm on the local cluster, upgrade it, weft check after each (brings the cluster up and down).
	hack/helm-e2e.sh

.PHONY: flux-e2e
flux-e2e: ## Flux (built from the Go module proxy) installs Weft from a Git repository on loopback and reports Ready.
	hack/flux-e2e.sh

.PHONY: upgrade-e2e
upgrade-e2e: ## Upgrade the previous release (git tag v0.1.0) to this tree under load on the local cluster; fails on any failed request.
	hack/upgrade-e2e.sh

.PHONY: conformance
conformance: ## Run the Gateway API conformance suite's mesh tests on the local cluster; writes conformance/reports/.
	hack/conformance.sh
