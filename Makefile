# Portcullis — see README.md. `make help` lists the targets.

SHELL := /usr/bin/env bash
GO ?= go
STATICCHECK_VERSION ?= v0.8.2
E2E_BIN := $(CURDIR)/.e2e/bin
RUN_DIR ?= .portcullis
FUZZTIME ?= 60s
export PORTCULLIS_E2E_BIN := $(E2E_BIN)

.DEFAULT_GOAL := help

##@ Use

.PHONY: run
run: build ## Run Portcullis on its embedded bbolt store (init into ./.portcullis once, then serve on 127.0.0.1).
	@test -f $(RUN_DIR)/portcullis.yaml || ./bin/portcullis init --dir $(RUN_DIR) --hosts localhost,127.0.0.1
	@echo "Mint a token:  $(E2E_BIN)/kubectl --kubeconfig $(RUN_DIR)/admin.kubeconfig create token default -n default   (or: ./bin/portcullis token create default --kubeconfig $(RUN_DIR)/admin.kubeconfig)"
	@echo "Check it:      curl --cacert $(RUN_DIR)/ca.crt --cert $(RUN_DIR)/kube-apiserver-client.crt --key $(RUN_DIR)/kube-apiserver-client.key https://127.0.0.1:8443/authenticate -d '{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{\"token\":\"TOKEN\"}}'"
	./bin/portcullis serve --config $(RUN_DIR)/portcullis.yaml --bind-address 127.0.0.1

.PHONY: build
build: ## Build bin/portcullis.
	$(GO) build -o bin/portcullis ./cmd/portcullis

##@ Test

.PHONY: test
test: e2e-tools ## Run every test: unit, integration, crash, end-to-end (slow ones too), the fuzz targets and the mutation gate.
	$(GO) vet ./...
	PORTCULLIS_E2E_SLOW=1 $(GO) test -count=1 -timeout 40m ./...
	$(MAKE) --no-print-directory fuzz
	$(MAKE) --no-print-directory mutate

.PHONY: mutate
mutate: ## Break each check of the review path in turn (hack/mutate/mutants.go); every mutant must be killed by a test.
	$(GO) run ./hack/mutate

.PHONY: e2e
e2e: e2e-tools ## Run only the end-to-end suite (real kube-apiserver, etcd, kubectl and portcullis processes).
	$(GO) test -count=1 -timeout 20m -v ./test/e2e

.PHONY: testrace
testrace: e2e-tools ## Run every test with the race detector.
	$(GO) test -race -count=1 -timeout 45m ./...

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (60s), from its seeds and authn/testdata/fuzz.
	$(GO) test ./authn -run '^$$' -fuzz '^FuzzWebhookDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./authn -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)

.PHONY: bench
bench: ## Print the benchmark table (review and mint rates, ratios to baselines in the same run).
	PORTCULLIS_BENCH_TABLE=1 $(GO) test ./test/bench -run '^TestBench(Table|HA|ConsoleSessions)$$' -count=1 -v -timeout 20m | grep -v '^=== RUN\|^--- PASS\|^PASS'

comma := ,

.PHONY: bench-scale
bench-scale: ## Print how costs grow with the store: bbolt with SCALE records (default 10k,1M), etcd with SCALE_ETCD (default 10k,1M, empty skips etcd; in its own process when .e2e/bin/etcd exists).
	PORTCULLIS_BENCH_ETCD_BIN=$(wildcard $(CURDIR)/.e2e/bin/etcd) PORTCULLIS_BENCH_SCALE=$(or $(SCALE),10000$(comma)1000000) PORTCULLIS_BENCH_SCALE_ETCD=$(if $(filter undefined,$(origin SCALE_ETCD)),10000$(comma)1000000,$(SCALE_ETCD)) $(GO) test ./test/bench -run '^TestBenchScale$$' -count=1 -v -timeout 90m | grep -v '^=== RUN\|^--- PASS\|^PASS'

.PHONY: soak
soak: ## Soak: reviews at 80% of the measured maximum for SOAK (default 10m) with mints, revocations and a rotation.
	PORTCULLIS_SOAK=$(or $(SOAK),10m) $(GO) test ./test/bench -run '^TestSoak$$' -count=1 -v -timeout 60m | grep -v '^=== RUN\|^--- PASS\|^PASS'

.PHONY: e2e-tools
e2e-tools: ## Build kube-apiserver, kubectl and etcd from the Go module proxy into .e2e/bin (once).
	./hack/e2e-tools.sh

##@ Check

.PHONY: lint
lint: ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: generate
generate: ## Regenerate DeepCopy functions, OpenAPI model names and definitions (hack/update-codegen.sh).
	./hack/update-codegen.sh

.PHONY: verify
verify: generate ## Fail when generated code, go.mod or gofmt drifted from the sources.
	$(GO) mod tidy
	@git add -N . && git diff --exit-code --stat -- go.mod go.sum issuer/apis issuer/server/openapi || { echo "generated code or go.mod is out of date: run make generate && go mod tidy"; exit 1; }
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: $$out"; exit 1; fi

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
