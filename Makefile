# Weft — the two commands a newcomer needs:
#   make demo   run the sample shop as a real mesh on this machine (scripts/demo.sh)
#   make test   everything CI checks (gofmt, go vet, unit + integration + e2e tests)

GO        ?= go
BIN       := bin
PKGS      := ./...
LDFLAGS   := -s -w

.PHONY: all build test fmt-check vet unit demo bench bench-translate bench-xds clean fuzz

all: build

build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test: fmt-check vet build unit
	@echo "make test: all checks passed"

demo: build
	./scripts/demo.sh

# Short fuzzing of the parts that read untrusted bytes.
fuzz:
	$(GO) test -run '^$$' -fuzz=FuzzDecode -fuzztime=60s ./internal/config/

bench-translate:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/translate/

bench-xds: build
	$(GO) run ./bench/xdsload -inprocess -services 1000 -endpoints 10000 -proxies 1000

bench: bench-translate bench-xds

include bench/proxy/Makefile.inc

clean:
	rm -rf $(BIN)
