# sglangd build, test and demo targets. `make help` lists them.

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
PKG       := github.com/sglangd/sglangd
LDFLAGS   := -s -w -X $(PKG)/internal/buildinfo.Version=$(VERSION) -X $(PKG)/internal/buildinfo.Commit=$(COMMIT)
BIN       := bin
GOFLAGS_TEST ?= -race -count=1 -timeout 30m
# go-nvml's cgo code uses NVML functions NVIDIA marked deprecated; the
# warnings are noise (we probe symbols before calling them).
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations

.PHONY: help build test lint fmt-check vet staticcheck unit-test verify-unit stage-test demo install clean sim-image

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

build: ## build bin/sglangd and bin/sglangctl
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sglangd ./cmd/sglangd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/sglangctl ./cmd/sglangctl

demo: ## the main job: build, run the daemon on a temp dir and drive it with sglangctl
	bash scripts/demo.sh

test: lint unit-test verify-unit stage-test ## everything CI runs: lint, all tests with -race, unit file and install checks

lint: fmt-check vet staticcheck ## gofmt, go vet and staticcheck

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) tool staticcheck ./...

unit-test: ## go test -race ./... (integration tests use the local Docker engine), then the trace engine without -race
	$(GO) test $(GOFLAGS_TEST) ./...
	# The largest fixtures' reference checks are too slow under -race; run them plain.
	$(GO) test -count=1 ./pkg/trace/...

verify-unit: build ## systemd-analyze verify on the unit (skipped with a message where systemd-analyze is missing)
	@if command -v systemd-analyze >/dev/null; then \
		tmp=$$(mktemp -d); sed "s|/usr/local/bin/sglangd|$(CURDIR)/$(BIN)/sglangd|" deploy/sglangd.service > $$tmp/sglangd.service; \
		systemd-analyze verify $$tmp/sglangd.service && echo "deploy/sglangd.service: verified"; rc=$$?; rm -rf $$tmp; exit $$rc; \
	else echo "verify-unit: systemd-analyze not installed (apt-get install systemd); skipped"; fi

stage-test: build ## install into a staging DESTDIR and check what landed
	@tmp=$$(mktemp -d); DESTDIR=$$tmp PREFIX=/usr/local deploy/install.sh --no-systemd >/dev/null && \
	for f in usr/local/bin/sglangd usr/local/bin/sglangctl etc/sglangd/sglangd.yaml etc/sglangd/sglangd.env \
		lib/systemd/system/sglangd.service usr/lib/sysusers.d/sglangd.conf usr/lib/tmpfiles.d/sglangd.conf; do \
		test -e $$tmp/$$f || { echo "stage-test: $$f missing"; rm -rf $$tmp; exit 1; }; done; \
	rm -rf $$tmp; echo "deploy/install.sh: staged install complete"

SIM_IMAGE ?= sglangd/sglang-sim:dev
sim-image: ## build the SGLang simulator image (no registry, no base image) and docker-load it (tag: SIM_IMAGE, default sglangd/sglang-sim:dev)
	$(GO) run ./cmd/sglang-sim-image -tag $(SIM_IMAGE) -load

install: build ## install on this host (root): binaries, config, systemd unit
	deploy/install.sh

clean:
	rm -rf $(BIN)
