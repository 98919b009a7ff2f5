# Thin wrapper over the CMake presets (see CMakePresets.json).
#   make run    build qilin and continue BOS by 64 tokens with the embedded stories260K model
#               (on the GPU when one is present, else on the CPU emulator)
#   make test   build the sim preset and run the test suite
#   make cuda | sim | asan   build one preset;  make ci   what CI runs
PRESET ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo sim)
JOBS ?= $(shell nproc)

.PHONY: run test cuda sim asan ci clean deps

run: deps
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS) --target qilin
	build/$(PRESET)/runtime/qilin run --model models/stories260K --ids 1 -n 64

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
