#!/usr/bin/env bash
# install_deps.sh — installs the Debian packages qilin builds and tests with,
# non-interactively, skipping those already present. The CUDA toolkit itself
# (/usr/local/cuda: nvcc, cuBLAS, NCCL) is a prerequisite, not installed here.
set -euo pipefail

packages=(
  cmake          # >= 3.25
  ninja-build
  g++
  ccache
  libgtest-dev   # GoogleTest, found by find_package(GTest)
  libjansson-dev # JSON: config.json, safetensors headers
  clang          # fuzz targets (scripts/run_fuzz.sh)
  libclang-rt-dev # libFuzzer + sanitizer runtimes for that clang
  libpcre2-dev   # tokenizer split regexes (Unicode classes, look-ahead)
  libutf8proc-dev # NFC normalisation for tokenizers
  libmicrohttpd-dev # HTTP for `qilin serve`
)

# cuobjdump and nvdisasm for scripts/sass_report.py (CI's SASS check): the toolkit's when it
# ships them, else NVIDIA's wheels from PyPI (pinned) into python3's site-packages.
if [ ! -x /usr/local/cuda/bin/cuobjdump ] && ! command -v cuobjdump >/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check \
    nvidia-cuda-cuobjdump==13.2.86 nvidia-cuda-nvdisasm==13.2.86
fi

# The official openai client for tests/serve_openai.py (which skips without it), pinned.
if ! python3 -c "import openai" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check openai==3.63.0 ||
    echo "install_deps: openai not installed: the cli_serve_openai test will skip"
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
