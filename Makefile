# Thin wrapper over the CMake presets (see CMakePresets.json).
#   make run    build qilin and let the embedded stories260K model tell a story from a text
#               prompt, streamed as it is generated (on the GPU when one is present, else on
#               the CPU emulator); PROMPT="..." to choose the opening
#   make test   build the sim preset and run the test suite
#   make cuda | sim | asan   build one preset;  make ci   what CI runs
PRESET ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo cuda || echo sim)
JOBS ?= $(shell nproc)
PROMPT ?= Once upon a time

.PHONY: run test cuda sim asan ci clean deps

run: deps
	cmake --preset $(PRESET) >/dev/null
	cmake --build --preset $(PRESET) -j $(JOBS) --target qilin
	build/$(PRESET)/runtime/qilin run --model models/stories260K -p "$(PROMPT)" -n 200

test: deps sim
	bash scripts/fetch_test_data.sh || echo "make test: DeepSeek-V3 tokenizer not fetched; its tests will skip"
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
