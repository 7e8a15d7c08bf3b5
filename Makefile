# Paddock — see README.md. Every target works from a fresh clone.
GO        ?= go
BIN       ?= bin/paddock
DATA      ?= /var/lib/paddock
GOBIN_DIR := $(CURDIR)/bin/tools
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0

.PHONY: build test run proto init lint bench gobench clean

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/paddock

# The whole suite, as CI runs it (.ci/run calls exactly this). As root with
# apt-get it first installs what the tests need (scripts/install-test-deps.sh);
# elsewhere, tests that need root, Bazel, runc, bubblewrap or Chromium skip
# themselves where those are absent.
test:
	scripts/install-test-deps.sh
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

# Build and start the whole farm on this machine, data under $(DATA).
run: build
	$(BIN) up --data $(DATA)

# Regenerate the committed Go code of our own protos in api/.
proto:
	GOBIN=$(GOBIN_DIR) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(GOBIN_DIR) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	cd api && for p in $$(find . -name '*.proto'); do \
	  PATH=$(GOBIN_DIR):$$PATH protoc -I . --go_out=. --go_opt=paths=source_relative \
	    --go-grpc_out=. --go-grpc_opt=paths=source_relative $$p || exit 1; done

# Recompile the sandbox init embedded in the binary (sandbox/internal/initbin),
# after changing sandbox/internal/initprog or initplan; committed like proto code.
init:
	$(GO) run ./sandbox/internal/initbin/gen

STATICCHECK_VERSION := v0.8.2

# gofmt, go vet and staticcheck (its checks: staticcheck.conf).
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# The standard `paddock bench` set against a fresh `paddock up` (needs root);
# figures go in docs/benchmarks.md.
bench: build
	scripts/bench-farm.sh $(BIN)

# The Bazel fan-out benchmark (e2e/testdata/fanout) against a fresh
# `paddock up` (needs root and bazel); figures go in docs/benchmarks.md.
.PHONY: bench-bazel
bench-bazel: build
	scripts/bench-bazel.sh $(BIN)

# Go benchmarks of every package (figures go in docs/benchmarks.md).
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
