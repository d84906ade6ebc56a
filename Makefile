# make        build release binaries and place ./dipc and ./dipcrm here
# make test   every test: unit, model and end-to-end (real daemon, sockets, /dev/shm)
# make lint   rustfmt and clippy, warnings denied
# make bench  throughput and latency of a real daemon (docs/prog3.md has the figures)
# make clean  remove build output and the placed binaries

CARGO ?= cargo
BINARIES := dipc dipcrm

.PHONY: all build test lint clean bench

all: build

build:
	$(CARGO) build --release --workspace
	@for b in $(BINARIES); do cp -f target/release/$$b ./$$b; done

test:
	$(CARGO) build --workspace
	$(CARGO) test --workspace

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -f $(BINARIES)

bench:
	$(CARGO) build --release --workspace
	$(CARGO) bench -p dipc --bench throughput
