# Shoal. `make run` runs it against the local Docker engine; `make test` tests it.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
BENCHFLAGS ?=

.PHONY: build run test lint bench bench-discovery image clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/shoal ./cmd/shoal

run: build
	./bin/shoal $(ARGS)

test:
	$(GO) vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
	$(GO) test -race -count=1 -p 1 -timeout 14m ./...

lint:
	$(GO) vet ./...
	test -z "$$(gofmt -l .)"

# The benchmark harness: Shoal against NGINX and HAProxy, same machine, same run.
# SOAK=1 runs the 10-minute soak instead.
bench: build
	$(GO) test -run '^$$' -bench . -benchmem ./lb/ ./proxy/
	$(GO) run ./cmd/shoalbench $(if $(SOAK),-soak) $(BENCHFLAGS)

# Discovery figures against the real engine: docker run to first request
# (20 runs) and the first sync of 200 labelled containers.
bench-discovery:
	$(GO) test -run '^$$' -bench DockerRunToFirstRequest -benchtime 20x ./cmd/shoal/
	$(GO) test -run '^$$' -bench FirstSync200 -benchtime 1x -timeout 20m ./cmd/shoal/

image: build
	docker build -t shoal:latest -f Dockerfile .

clean:
	rm -rf bin
