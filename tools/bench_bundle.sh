#!/usr/bin/env bash
# One-transfer bundle for `python -m ftr.bench` on a GPU host whose transfers are capped (64 MiB here):
# the wheelhouse (tools/wheelhouse.sh) installed for Python 3.12 x86_64 into a folder, minus what a benchmark never
# loads, compressed; plus the real tokenizers and the benchmark's data.
#   build/bench-carry/site.tar.xz    unpack with: mkdir -p /tmp/site && tar -xJf site.tar.xz -C /tmp/site, then
#                                    python3 -m compileall -q -j 0 /tmp/site (bytecode, as pip writes at install)
#   build/bench-carry/tok/qwen2/     Qwen2.5 tokenizer (ftr tiny-models; tokenizer.json.xz), tok/mistral/: Mistral-7B-v0.1's
# Stripped: bitsandbytes' CUDA libraries other than the host's CUDA 13.0 one, wandb's bundled Go/Rust binaries
# (wandb only runs them when logging is on; every ftr run sets WANDB_MODE=disabled), pycountry's translations,
# __pycache__. A full, unstripped install is `bash wheelhouse/install.sh DIR` (docs/WHEELHOUSE.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/build/bench-carry}"
CUDA_LIB="${CUDA_LIB:-cuda130}"
[ -d "$ROOT/wheelhouse/part1" ] || bash "$ROOT/tools/wheelhouse.sh"
rm -rf "$OUT" && mkdir -p "$OUT/tok"
SITE="$(mktemp -d)"
"$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --target "$SITE" \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none --only-binary=:all: \
  $(for n in 39 35 34 31 28 27 24 17; do echo --platform manylinux_2_${n}_x86_64; done) --platform manylinux2014_x86_64 \
  "$ROOT"/wheelhouse/part*/*.whl
find "$SITE/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name "libbitsandbytes_${CUDA_LIB}.so" -delete
rm -rf "$SITE/wandb/bin" "$SITE/pycountry/locales"
find "$SITE" -name __pycache__ -type d -prune -exec rm -rf {} +
tar -C "$SITE" -cf - . | xz -T0 -6 > "$OUT/site.tar.xz"
rm -rf "$SITE"
"$PY" -m ftr.cli tiny-models >/dev/null
for kind in qwen2 mistral; do
  mkdir -p "$OUT/tok/$kind"
  for f in tokenizer.json tokenizer_config.json chat_template.jinja special_tokens_map.json tokenizer.model; do
    [ -e "$ROOT/build/tiny-models/$kind/$f" ] && cp "$ROOT/build/tiny-models/$kind/$f" "$OUT/tok/$kind/"
  done
done
xz -T0 -6 "$OUT"/tok/*/tokenizer.json
# Pure-Python wheels from outside the index (Axolotl's fork of cut-cross-entropy: docs/WHEELHOUSE.md), unzipped into
# the site folder on the host: for w in extra/*.whl; do python3 -m zipfile -e "$w" /tmp/site; done
if ls "$ROOT"/wheelhouse/extra/*.whl >/dev/null 2>&1; then mkdir -p "$OUT/extra" && cp "$ROOT"/wheelhouse/extra/*.whl "$OUT/extra/"; fi
du -sh "$OUT" "$OUT"/*
