# smimed — see README.md. `make test` is what CI runs (.ci/run).
GO       ?= go
FUZZTIME ?= 10s
GOBIN    := $(shell $(GO) env GOPATH)/bin

.PHONY: all build run test deps lint unit fuzz bench clean

all: build

build:
	$(GO) build ./...

# smimed in the foreground on your session bus (a private bus when there is none; see scripts/run.sh).
run:
	GO=$(GO) ./scripts/run.sh

# A short tour through the daemon: demo identity, sign, verify, encrypt, decrypt (scripts/demo.sh).
.PHONY: demo
demo:
	GO=$(GO) ./scripts/demo.sh

# Everything CI checks: peers installed, lint, all tests, a short fuzz of every target.
test: deps lint unit fuzz

deps:
	./scripts/install-test-deps.sh
	./scripts/install-go-tools.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	$(GOBIN)/staticcheck ./...

unit:
	$(GO) test -count=1 -timeout 20m ./...

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

bench: deps
	$(GO) run ./scripts/bench -out docs/benchmarks.md

clean:
	rm -rf bin out
