# orch — see README.md. Every target installs what it needs (scripts/deps.sh).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X orch.dev/orch/internal/orchd.Version=$(VERSION) -X orch.dev/orch/internal/workercmd.Version=$(VERSION) -X orch.dev/orch/cli.Version=$(VERSION)
BIN     := $(CURDIR)/bin


.PHONY: all build test unit e2e lint fuzz demo demo-down bench chaos clean deps images

all: build

deps:
	@scripts/deps.sh base

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/orchd ./cmd/orchd
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/orchctl ./cmd/orchctl
	# The worker binary is static (no libc mapped into every worker): it
	# needs no cgo, and is one file to copy onto a worker machine.
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/orch-worker ./cmd/orch-worker

# The race-instrumented servers the multi-process tests run.
build-race:
	$(GO) build -race -ldflags '$(LDFLAGS)' -o $(BIN)/race/orchd ./cmd/orchd
	$(GO) build -race -ldflags '$(LDFLAGS)' -o $(BIN)/race/orchctl ./cmd/orchctl
	$(GO) build -race -ldflags '$(LDFLAGS)' -o $(BIN)/race/orch-worker ./cmd/orch-worker

# Every package's tests run under the race detector; the multi-process tests
# run servers that are race-built too.
test: deps lint build-race
	@scripts/deps.sh base runtime
	ORCH_BIN_DIR=$(BIN)/race $(GO) test -race -count=1 -timeout 20m ./...
	@scripts/ipvs-test.sh   # the proxy conformance suite on a kernel with IPVS, under qemu

# The test programs (testdata/images/*) as OCI archives, testdata/images/out/<name>.tar,
# for `orchctl image import` (imported as orch.test/<name>:v1).
images:
	@scripts/deps.sh base images
	$(GO) run ./testdata/images/build

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Short coverage-guided fuzzing of every fuzz target (seed corpora run in `make test`).
FUZZTIME ?= 30s
fuzz:
	@for t in $$(grep -rhoE '^func Fuzz[A-Za-z0-9_]+' --include='*_test.go' . | sed 's/func //' | sort -u); do \
	  pkg=$$(grep -rlE "^func $$t\(" --include='*_test.go' . | head -1 | xargs dirname); \
	  echo "== $$t ($$pkg)"; $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
	done

demo: build
	@scripts/deps.sh base runtime images
	@scripts/demo.sh

demo-down:
	@scripts/demo.sh down

bench: build
	@scripts/deps.sh base bench runtime images
	@[ -f testdata/images/out/web.tar ] || $(GO) run ./testdata/images/build
	@scripts/bench.sh $(BENCH_ARGS)

# The fault-injection suite (internal/chaos, docs/chaos.md): every named
# fault's scenario; with DURATION (e.g. `make chaos DURATION=30m`), instead a
# soak of random faults for that long, which prints a report.
DURATION ?=
CHAOS_TIMEOUT = $(shell echo '$(DURATION)' | awk '{ s = 0; n = $$0; while (match(n, /^[0-9.]+[hms]/)) { \
  u = substr(n, RLENGTH, 1); s += substr(n, 1, RLENGTH - 1) * (u == "h" ? 3600 : u == "m" ? 60 : 1); n = substr(n, RLENGTH + 1) } \
  printf "%ds", s * 1.2 + 1800 }')
chaos: build
	@scripts/deps.sh base runtime
ifeq ($(DURATION),)
	ORCH_CHAOS=all ORCH_BIN_DIR=$(BIN) $(GO) test -count=1 -timeout 30m -v ./internal/chaos
else
	DURATION=$(DURATION) ORCH_BIN_DIR=$(BIN) $(GO) test -count=1 -run '^TestSoak$$' -timeout $(CHAOS_TIMEOUT) -v ./internal/chaos
endif

clean:
	rm -rf $(BIN)

# The proxy conformance suite against a kernel with IPVS (this machine's has
# none): boots Debian's stock kernel under qemu; see proxy/README.md.
.PHONY: ipvs-test
ipvs-test:
	@scripts/ipvs-test.sh

# Full rule sync of 10,000 services x 3 endpoints, IPVS and nftables on the
# same kernel under qemu (emulated: compare the two, not with native figures).
.PHONY: ipvs-bench
ipvs-bench:
	@BENCH=FullSync10k scripts/ipvs-test.sh
