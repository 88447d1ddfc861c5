# The two commands a newcomer types: `make run` and `make test`. Everything else is underneath.
# CMake does the building; this file installs what is missing (apt-get) and drives the tiers.

BUILD        ?= build
ASAN_BUILD   ?= build-asan
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
LISTEN       ?= 127.0.0.1:8000
ARGS         ?=
JOBS         ?= $(shell nproc 2>/dev/null || echo 2)
CTEST_ARGS   ?= --output-on-failure --no-tests=error -j$(JOBS)
PREFIX       ?= /usr/local
DESTDIR      ?=

.PHONY: all deps build build-asan build-fuzz run test test-unit test-integration test-asan \
        test-fuzz fuzz bench bench-deps format format-check clean help install deb cluster

all: build

help:
	@echo "make run          install what is missing, build, start hscd on http://$(LISTEN)"
	@echo "                  (channels kept in $(BUILD)/hsc-data across restarts)"
	@echo "make test         build, then every test tier (unit, integration, ASan+UBSan, fuzzing)"
	@echo "make build        build into $(BUILD)/"
	@echo "make test-unit | test-integration | test-asan | test-fuzz   one tier"
	@echo "make fuzz         run each libFuzzer target for FUZZ_SECONDS (60) and sum up"
	@echo "make bench        hscd against nchan, Pushpin and the floor; writes docs/PERFORMANCE.md"
	@echo "make cluster      one Redis and three hscd nodes on loopback (docs/cluster.md)"
	@echo "make format       clang-format the C sources"
	@echo "make install      install under PREFIX (/usr/local), into DESTDIR if set (docs/operations.md)"
	@echo "make deb          Debian packages into $(BUILD)/deb, checked by lintian"

deps:
	@scripts/install-deps.sh
	@scripts/install-js.sh

build: deps
	@cmake -S . -B $(BUILD) -DHSC_WERROR=ON >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@CC=clang cmake -S . -B $(ASAN_BUILD) -DHSC_WERROR=ON -DHSC_SANITIZE=ON \
		-DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(ASAN_BUILD) -j$(JOBS)

# The libFuzzer targets of tests/fuzz only (clang); the rest of this tree is not built.
build-fuzz: deps
	@CC=clang cmake -S . -B $(FUZZ_BUILD) -DHSC_FUZZ=ON -DHSC_WERROR=ON >/dev/null
	@cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzzers

run: build
	$(BUILD)/hscd --listen $(LISTEN) --data-dir $(BUILD)/hsc-data $(ARGS)

# One redis-server and three hscd nodes sharing it, on free loopback ports; Ctrl-C stops them.
cluster: build
	@HSCD=$(BUILD)/hscd scripts/cluster.sh -- $(ARGS)

test-unit: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -L unit

test-integration: build
	cd $(BUILD) && ctest $(CTEST_ARGS) -L integration

test-asan: build-asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS) -L 'unit|integration'

test-fuzz: build-fuzz
	cd $(FUZZ_BUILD) && ctest $(CTEST_ARGS) -L fuzz

fuzz: build-fuzz
	@tests/fuzz/run.sh $(FUZZ_BUILD)/tests/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

test: build build-asan build-fuzz
	@echo "== tier 1: unit + integration ($(BUILD)) =="
	cd $(BUILD) && ctest $(CTEST_ARGS)
	@echo "== tier 2: unit + integration under ASan + UBSan ($(ASAN_BUILD)) =="
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest $(CTEST_ARGS) -L 'unit|integration'
	@echo "== tier 3: fuzzing, 10 s per target ($(FUZZ_BUILD)) =="
	cd $(FUZZ_BUILD) && ctest $(CTEST_ARGS) -L fuzz

# Side by side with nchan, Pushpin and the floor (installed from Debian when missing); writes
# docs/PERFORMANCE.md and docs/bench/*.png. BENCH_REPS, BENCH_QUICK=1, BENCH_SERVERS: see
# scripts/bench.sh.
bench-deps:
	@scripts/install-bench-deps.sh

bench: build bench-deps
	@BUILD=$(BUILD) scripts/bench.sh

# Installs what $(BUILD)/ holds (built first if it is not there): docs/operations.md lists the tree.
install:
	@test -f $(BUILD)/CMakeCache.txt || $(MAKE) build
	@cmake --build $(BUILD) -j$(JOBS)
	@DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix "$(PREFIX)"

deb:
	@OUT=$(abspath $(BUILD))/deb scripts/build-deb.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
