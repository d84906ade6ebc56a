# make        build release binaries and place ./dipc, ./dipcrm, ./gateway, ./client and
#             ./echo-server here
# make test   every test: unit, model and end-to-end (real daemon, sockets, /dev/shm)
# make lint   rustfmt and clippy, warnings denied
# make bench  microbenchmarks, fairness, the models' connection rates, and dipc beside Redis,
#             memcached and the ceiling servers into docs/benchmarks.md (about 18 minutes)
# make bench-quick  only bench/versus.py, 1 run of 1 s per cell (about 3.5 minutes)
# make chaos  a minute of the chaos test: random workers SIGKILLed under load (prints its report)
# make fuzz   a minute of each coverage-guided fuzz target (needs the nightly
#             toolchain and cargo-fuzz); the corpus grows in fuzz/corpus
# make clean  remove build output and the placed binaries

CARGO ?= cargo
BINARIES := dipc dipcrm gateway client echo-server

.PHONY: all build test lint clean bench bench-quick model chaos fuzz

all: build

build:
	$(CARGO) build --release --workspace
	@for b in $(BINARIES); do cp -f target/release/$$b ./$$b; done

test:
	$(CARGO) build --workspace
	$(CARGO) test --workspace
	$(MAKE) model

# The lock algorithm under loom: the same code, every interleaving (bounded).
model:
	RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom $(CARGO) test -p shmlib --release --test loom_bakery

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -f $(BINARIES)

bench: build
	$(CARGO) bench -p shmlib --bench lock_cost --bench mailbox_copy --bench fairness
	$(CARGO) bench -p worker --bench parse
	$(CARGO) bench -p dipc --bench models
	python3 bench/versus.py

bench-quick: build
	python3 bench/versus.py --quick

# make test runs the same test for 4 s; DIPC_CHAOS_SECS sets the length.
chaos:
	$(CARGO) build --workspace
	DIPC_CHAOS_SECS=60 $(CARGO) test -p dipc --test chaos -- --nocapture

fuzz:
	cd fuzz && $(CARGO) +nightly fuzz run session -- -max_total_time=60
	cd fuzz && $(CARGO) +nightly fuzz run gateway_datagram -- -max_total_time=60
