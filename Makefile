# The two commands of the README: `make demo` and `make test`. CMake does the build.
BUILD ?= build
JOBS  ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build demo test fuzz bench clean

all: build

deps:
	@bash scripts/install_deps.sh

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: deps $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/tfm demo

# The suite runs three times: the default build (OpenBLAS + OpenMP, with the CLI under
# valgrind too), the portable one (no BLAS, no OpenMP) that proves the library stands on
# its own, and one under AddressSanitizer + UndefinedBehaviorSanitizer. Then the checks
# that keep the library honest (scripts/check_library.sh).
test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cmake -S . -B $(BUILD)-portable -DTFM_BLAS=none -DTFM_OPENMP=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD)-portable -j $(JOBS)
	cd $(BUILD)-portable && ctest --output-on-failure -j $(JOBS)
	cmake -S . -B $(BUILD)-asan -DTFM_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ctest --output-on-failure -j $(JOBS)
	bash scripts/check_library.sh
	$(MAKE) fuzz

# libFuzzer targets (clang from Debian), each for FUZZ_SECONDS: CI runs them briefly on
# every submission; run `make fuzz FUZZ_SECONDS=3600` (or fuzz/run.sh 3600) to go deeper.
FUZZ_SECONDS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS)

bench: build
	bash bench/run.sh

clean:
	rm -rf $(BUILD) $(BUILD)-portable $(BUILD)-asan build-fuzz
