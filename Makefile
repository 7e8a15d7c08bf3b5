# Paddock — see README.md. Every target works from a fresh clone.
GO        ?= go
BIN       ?= bin/paddock
DATA      ?= /var/lib/paddock
GOBIN_DIR := $(CURDIR)/bin/tools
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0

.PHONY: build test run proto init lint bench gobench clean images

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/paddock

# The whole suite, as CI runs it (.ci/run calls exactly this). As root with
# apt-get it first installs what the tests need (scripts/install-test-deps.sh);
# elsewhere, tests that need root, Bazel, runc, bubblewrap or Chromium skip
# themselves where those are absent. It lints first: what the code keeps to
# (gofmt, vet, staticcheck, errcheck) holds only if every run checks it.
test:
	scripts/install-test-deps.sh
	$(MAKE) lint
	$(GO) test -count=1 -timeout 25m ./...
	$(GO) test -race -count=1 -timeout 10m $(RACE_PKGS)

# The packages whose tests drive many goroutines in one process (servers,
# the scheduler, the worker), run again under the race detector: a race
# there (the zstd decoder closed under its own goroutine) panicked a test
# once in a hundred runs but is reported by -race every time.
RACE_PKGS ?= ./auth/... ./digest ./runner ./scheduler/... ./statuspage ./storage ./storage/compose ./worker

# OCI images of the roles (imagebuild, no Docker): a static binary per
# platform, then one multi-platform index per role, written as an OCI layout
# at $(IMAGES_OUT) and, with PUSH=REGISTRY, pushed as
# REGISTRY/paddock-ROLE:$(IMAGE_TAG). Reproducible: file and config times
# are the last commit's (SOURCE_DATE_EPOCH), the binaries are built with
# -trimpath and no build id, so a rebuild prints the same digests.
IMAGE_PLATFORMS   ?= linux/amd64 linux/arm64
IMAGE_TAG         ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGES_OUT        ?= bin/images/oci
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
PUSH              ?=
images: build
	@set -e; bins=""; for p in $(IMAGE_PLATFORMS); do \
	  os=$${p%%/*}; arch=$${p#*/}; out=bin/images/paddock-$$os-$$arch; \
	  echo "go build $$p -> $$out"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath \
	    -ldflags "-s -w -buildid= -X main.version=$(IMAGE_TAG)" -o $$out ./cmd/paddock; \
	  bins="$$bins --binary $$p=$$out"; done; \
	SOURCE_DATE_EPOCH=$(SOURCE_DATE_EPOCH) $(BIN) images build $$bins --out $(IMAGES_OUT) \
	  --tag $(IMAGE_TAG) $(if $(PUSH),--push $(PUSH))

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
# after changing sandbox/internal/initprog (freestanding C: needs cc and the
# kernel's UAPI headers, Debian's gcc and linux-libc-dev; CC picks another
# compiler); committed like proto code.
init:
	$(GO) run ./sandbox/internal/initbin/gen

STATICCHECK_VERSION := v0.8.2
ERRCHECK_VERSION := v1.9.0

# gofmt, go vet, staticcheck (its checks: staticcheck.conf) and errcheck
# (the calls whose errors it leaves alone, and why: errcheck.excludes;
# any other error dropped is dropped in plain sight, with `_ =`).
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) run github.com/kisielk/errcheck@$(ERRCHECK_VERSION) -exclude errcheck.excludes -ignoregenerated ./...

# The standard `paddock bench` set against a fresh `paddock up` (needs root);
# figures go in docs/benchmarks.md.
bench: build
	scripts/bench-farm.sh $(BIN)

# The Bazel fan-out benchmark (e2e/testdata/fanout) against a fresh
# `paddock up` (needs root and bazel); figures go in docs/benchmarks.md.
.PHONY: bench-bazel
bench-bazel: build
	scripts/bench-bazel.sh $(BIN)

# One genrule's command bare, in bubblewrap and through the runner, CPU per
# run by perf stat (needs root, perf and bwrap); see docs/benchmarks.md.
.PHONY: bench-genrule
bench-genrule:
	scripts/bench-genrule.sh

# Go benchmarks of every package (figures go in docs/benchmarks.md).
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
