# Thin wrapper over the CMake presets (see CMakePresets.json).
#   make run    build and run qilin on the CPU emulator (or the GPU when one is present)
#   make test   build the sim preset and run the test suite
#   make cuda | sim | asan   build one preset;  make ci   what CI runs
PRESET ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo sim)
JOBS ?= $(shell nproc)

.PHONY: run test cuda sim asan ci clean deps

run: deps
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS) --target qilin
	build/$(PRESET)/runtime/qilin demo

test: deps sim
	ctest --preset sim -j $(JOBS)

cuda sim asan: deps
	cmake --preset $@ >/dev/null
	cmake --build --preset $@ -j $(JOBS)

deps:
	bash scripts/install_deps.sh

ci:
	bash .ci/run

clean:
	rm -rf build
