# Front door for people and CI. Every target installs missing Debian packages
# first (scripts/install-deps.sh is idempotent and quick when all is present).
BUILD      ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps configure build run test stress bench bench-rseq bench-web bench-cgroups hw-check package image clean fuzz soak

all: build

deps:
	@scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Run the daemon in the foreground on its built-in default configuration.
run: configure
	cmake --build $(BUILD) -j $(JOBS) --target pmu-exporter
	@echo "pmu-exporter: serving http://127.0.0.1:9842/metrics (Ctrl-C to stop)"
	$(BUILD)/daemon/pmu-exporter

# The whole default test suite (kept well under 20 minutes on 2 cores).
test: build
	ctest --test-dir $(BUILD) --output-on-failure -LE 'stress|bench' -j $(JOBS)

# Long torture/stress runs (not part of `make test`).
stress: build
	ctest --test-dir $(BUILD) --output-on-failure -L stress

# Hardware self-check against perf stat on a host with a hardware PMU (root):
# every read path, multiplexing, contention, user rdpmc switched off at run
# time. Prints a table; without a PMU it says why and exits 0.
# HW_CHECK_ARGS=--software runs the same checks with software events.
hw-check: build
	@scripts/install-deps.sh linux-perf
	python3 scripts/hw-check.py --build $(BUILD) $(HW_CHECK_ARGS)

bench-rseq: build
	$(BUILD)/bench/rseq/bench_rseq

# The published figures (about 5-10 minutes on 2 cores): read paths, scale,
# daemon overhead, /metrics under wrk, memory, and node_exporter's perf
# collector side by side. Writes bench/results/latest.{md,json}.
bench: build
	@scripts/install-deps.sh wrk prometheus-node-exporter
	python3 bench/run_bench.py --build $(BUILD)
	python3 bench/cgroups/run_cgroup_bench.py --build $(BUILD) || test $$? -eq 77

# [cgroups] attribution at 10, 100 and 1000 cgroups in perf and bpf mode:
# fds, daemon CPU, scrape time (needs root and cgroup v2; about 2 minutes).
# Writes bench/results/cgroups.{md,json}.
bench-cgroups: build
	python3 bench/cgroups/run_cgroup_bench.py --build $(BUILD)

# The endpoint under attack (issue 11; about 5 minutes): slowloris and
# half-open TLS handshakes (512 and 1000 connections at 1 byte/s) and a
# 32-client bad-password flood, each while a scraper scrapes in a loop.
# Writes bench/results/web-attack.md; BEFORE=<an older pmu-exporter> adds
# its figures for comparison.
bench-web: configure
	cmake --build $(BUILD) -j $(JOBS) --target pmu-exporter
	python3 bench/web/attack.py --daemon $(BUILD)/daemon/pmu-exporter \
	  $(if $(BEFORE),--before $(BEFORE)) --out bench/results/web-attack.md

# Debian package of a Release build: $(BUILD)/pmu-exporter_<version>_<arch>.deb
# (packaging/CMakeLists.txt configures CPack).
package: BUILD_TYPE = Release
package: build
	cd $(BUILD) && cpack -G DEB

# Container image from Debian packages, no registry (packaging/container/):
# the package above in an mmdebstrap rootfs, imported into podman as
# localhost/pmu-exporter:<version>. Needs root.
image: package
	@scripts/install-deps.sh mmdebstrap podman libcap2-bin
	packaging/container/build-image.sh $(BUILD)/pmu-exporter_*.deb $(BUILD)/image

clean:
	rm -rf $(BUILD)

# rseq/: the aarch64 critical sections compile with the cross compiler.
.PHONY: check-aarch64
check-aarch64:
	tests/rseq/check_aarch64.sh . $(BUILD)/aarch64-check

# libFuzzer over every target in fuzz/ (HTTP request parser, config loader,
# /proc and /sys parsers), FUZZ_SECONDS each, in a separate clang build with
# ASan+UBSan. Prints executions per target (also in $(FUZZ_BUILD)/fuzz-results.md);
# fails when a target crashed. `make test` replays the seed corpora with g++.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
fuzz:
	@scripts/install-deps.sh clang
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DPMU_FUZZ=ON -DPMU_SANITIZE=address -DPMU_BUILD_TESTS=OFF -DPMU_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_all
	scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# A bounded load run (SOAK_SECONDS, default 60) against the built daemon with
# a checker scraping every 100 ms: no counter may decrease, RSS and open fds
# must return to their start; prints the figures.
SOAK_SECONDS ?= 60
soak: build
	@scripts/install-deps.sh wrk
	python3 scripts/soak.py --binary $(BUILD)/daemon/pmu-exporter --seconds $(SOAK_SECONDS)
