#!/usr/bin/env bash
# `make wheelhouse`: every wheel an offline Python 3.12 / CUDA / torch 2.11 host needs for this project,
# split into parts of at most PART_MIB MiB (default 60) so that each part fits one transfer, plus install.sh.
#
#   wheelhouse/part1/*.whl  wheelhouse/part2/*.whl ...   the wheels (manylinux x86_64, cp312 or pure Python)
#   wheelhouse/install.sh                                installs every part found beside it (--no-deps)
#   wheelhouse/SHA256SUMS                                one line per wheel
#
# Binary wheels come from the package index (`pip download --only-binary=:all:` for the target platform);
# packages published only as sdists are built here with `pip wheel --no-deps` (all of them are pure Python);
# this project's own wheel is built with `pip wheel --no-deps .`. The list is tools/wheelhouse-requirements.txt.
# Documentation: docs/WHEELHOUSE.md.
#
# Environment: PY (pip's interpreter; default .venv/bin/python, else python3), WHEELHOUSE (output folder,
# default ./wheelhouse), PART_MIB (default 60), REQUIREMENTS (default tools/wheelhouse-requirements.txt),
# PY_VERSION (default 3.12).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}"
OUT="${WHEELHOUSE:-$ROOT/wheelhouse}"
PART_MIB="${PART_MIB:-60}"
REQUIREMENTS="${REQUIREMENTS:-$ROOT/tools/wheelhouse-requirements.txt}"
PY_VERSION="${PY_VERSION:-3.12}"
ABI="cp${PY_VERSION/./}"
PLATFORMS=(manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64
           manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)
PLATFORM_ARGS=()
for p in "${PLATFORMS[@]}"; do PLATFORM_ARGS+=(--platform "$p"); done

STAGE="$OUT/.all"
rm -rf "$STAGE" "$OUT"/part[0-9]* "$OUT/install.sh" "$OUT/SHA256SUMS"
mkdir -p "$STAGE" "$OUT/.sdist-build"

pip_q() { "$PY" -m pip "$@" --disable-pip-version-check -q; }

fetched=0; built=0
while IFS= read -r line; do
  spec="${line%%#*}"; spec="$(echo "$spec" | tr -d '[:space:]')"
  [ -z "$spec" ] && continue
  if pip_q download --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
       --abi "$ABI" --abi abi3 --abi none "${PLATFORM_ARGS[@]}" -d "$STAGE" "$spec" 2>/dev/null; then
    fetched=$((fetched + 1))
  else
    # No binary wheel for the target: build one from the sdist (pure-Python packages only).
    echo "building $spec from its sdist" >&2
    pip_q wheel --no-deps --no-binary=:all: -w "$OUT/.sdist-build" "$spec"
    built=$((built + 1))
  fi
done < "$REQUIREMENTS"
for whl in "$OUT"/.sdist-build/*.whl; do
  [ -e "$whl" ] || continue
  case "$(basename "$whl")" in
    *-py3-none-any.whl|*-py2.py3-none-any.whl) mv "$whl" "$STAGE/" ;;
    *) echo "error: $(basename "$whl") built from an sdist is not pure Python; it will not run on the target" >&2; exit 1 ;;
  esac
done
rm -rf "$OUT/.sdist-build"

# This project's own wheel (pure Python).
pip_q wheel --no-deps -w "$STAGE" "$ROOT"

# One version per project, or --no-deps installs would fight.
dupes=$(ls "$STAGE" | sed -E 's/^([^-]+)-.*/\1/' | tr 'A-Z-' 'a-z_' | sort | uniq -d)
if [ -n "$dupes" ]; then echo "error: several versions of: $dupes" >&2; exit 1; fi

# Split into parts of at most PART_MIB MiB: first-fit, largest wheel first.
"$PY" - "$STAGE" "$OUT" "$PART_MIB" <<'EOF'
import os, shutil, sys
stage, out, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]) * 1024 * 1024
wheels = sorted(((os.path.getsize(os.path.join(stage, w)), w) for w in os.listdir(stage)), reverse=True)
parts = []  # [used_bytes, [names]]
for size, name in wheels:
    if size > limit:
        sys.exit(f"error: {name} is {size / 2**20:.1f} MiB, over the {limit / 2**20:.0f} MiB part limit")
    for part in parts:
        if part[0] + size <= limit:
            part[0] += size; part[1].append(name); break
    else:
        parts.append([size, [name]])
for i, (used, names) in enumerate(parts, 1):
    folder = os.path.join(out, f"part{i}")
    os.makedirs(folder)
    for name in names:
        shutil.move(os.path.join(stage, name), os.path.join(folder, name))
    print(f"part{i}: {len(names)} wheels, {used / 2**20:.1f} MiB")
EOF
rmdir "$STAGE"
(cd "$OUT" && sha256sum part*/*.whl > SHA256SUMS)

cat > "$OUT/install.sh" <<'EOF'
#!/usr/bin/env bash
# Install every wheel in the part*/ folders beside this script, offline and without dependency resolution
# (the wheelhouse names every dependency the host lacks). Usage:
#   bash install.sh              into the running interpreter's environment (a venv: activate it first)
#   bash install.sh /opt/ftr-site    into that folder; then: export PYTHONPATH=/opt/ftr-site:$PYTHONPATH
# PY picks the interpreter (default python3). Parts may arrive one at a time: run it once per part, or once
# with all of them present.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${PY:-python3}"
shopt -s nullglob
wheels=("$HERE"/part*/*.whl)
[ ${#wheels[@]} -gt 0 ] || { echo "no wheels under $HERE/part*/" >&2; exit 1; }
args=(-m pip install --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check -q)
if [ $# -ge 1 ]; then
  "$PY" "${args[@]}" --upgrade --target "$1" "${wheels[@]}"
  echo "installed ${#wheels[@]} wheels into $1; now: export PYTHONPATH=$1\${PYTHONPATH:+:\$PYTHONPATH}"
else
  "$PY" "${args[@]}" "${wheels[@]}"
  echo "installed ${#wheels[@]} wheels into $("$PY" -c 'import sys; print(sys.prefix)')"
fi
EOF
chmod +x "$OUT/install.sh"
echo "wheelhouse: $fetched downloaded, $built built from sdists, + ftr; $(du -sh "$OUT" | cut -f1) in $OUT"
