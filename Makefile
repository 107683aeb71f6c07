# Thin wrapper over CMake. `make run` and `make test` set everything up on a fresh Debian 12.
#   make run            build, start a loopback redis-server unless SHOAL_REDIS_URL is set, run a node
#   make test           build, run every test (and a short fuzz run)
#   make test SANITIZE=1  the same suite under ASan+UBSan (build-asan/)
#   make format         rewrite the C sources in the house style (.clang-format); make test checks it
#   make fuzz           libFuzzer on every parser: HTTP, task payloads, Redis URLs (FUZZ_SECONDS, default 60)
#   make bench          the figures printed in the README
#   make chaos          the full chaos run: 5,000 tasks, kills, a Redis restart, a failover
#   make package        build/shoal_<version>_<arch>.deb (CPack; README "Run it in production")
SANITIZE ?= 0
SHELL := /bin/bash
FUZZ_SECONDS ?= 60
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
ifeq ($(SANITIZE),1)
BUILD ?= build-asan
CMAKE_FLAGS += -DSHOAL_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
else
BUILD ?= build
endif

.PHONY: all deps build test run fuzz fuzz-short bench chaos clean package format

all: build

deps:
	@scripts/deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Under SANITIZE=1, scripts/ctest-sanitize.sh: a sanitizer report anywhere fails the run, and a
# failed test's name and output tail come last.
test: build
ifeq ($(SANITIZE),0)
	@scripts/format.sh --check
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=15
else
	@scripts/ctest-sanitize.sh $(BUILD) $(JOBS)
endif

format: deps
	@scripts/format.sh

run: build
	@scripts/run.sh $(BUILD)/shoal

build-fuzz/CMakeCache.txt: | deps
	CC=clang cmake -S . -B build-fuzz -DSHOAL_FUZZ=ON -DSHOAL_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null

fuzz: deps build-fuzz/CMakeCache.txt
	cmake --build build-fuzz -j $(JOBS)
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

chaos: build
	@/usr/bin/python3 scripts/chaos.py $(BUILD) --tasks $(or $(CHAOS_TASKS),5000) --seconds $(or $(CHAOS_SECONDS),60)
	@/usr/bin/python3 scripts/partition.py $(BUILD)
	@/usr/bin/python3 scripts/cluster.py $(BUILD)

bench: build
	@scripts/bench.sh $(BUILD)
	@scripts/bench-busy.sh $(BUILD)
	@scripts/bench-tasks.sh $(BUILD)
	@scripts/bench-noop.sh $(BUILD)
	@scripts/bench-api.sh $(BUILD)
	@scripts/bench-access.sh $(BUILD)
	@scripts/bench-packages.sh $(BUILD)
	@scripts/bench-slowloris.sh $(BUILD)
	@/usr/bin/python3 scripts/bench-backlog.py $(BUILD)
	@ROUNDS=3 scripts/bench-drain.sh $(BUILD)
	@scripts/bench-calls.sh $(BUILD) 10
	@scripts/bench-calls.sh $(BUILD) 64
	@scripts/bench-instr.sh $(BUILD) 10
	@scripts/bench-instr.sh $(BUILD) 64
	@scripts/bench-tls.sh $(BUILD)
	@/usr/bin/python3 scripts/bench-cluster.py $(BUILD)
	@scripts/bench-shards.sh $(BUILD)
	@/usr/bin/python3 scripts/bench-record.py

clean:
	rm -rf build build-asan build-fuzz build-upgrade build-upgrade.lock

# The .deb (CPack, prefix /usr): binary, systemd unit, /etc/shoal/shoal.env; Depends from
# dpkg-shlibdeps. Install with: apt install ./$(BUILD)/shoal_*.deb
package: build
	cd $(BUILD) && cpack -G DEB
