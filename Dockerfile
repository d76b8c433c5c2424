# The ftr image: one venv (/app/.venv, the one `make` uses) with torch, Axolotl 0.19.0 and ftr, run as a non-root
# user under tini. README "Docker" has the commands; the CI build of this same file is docker/ci-image-test.sh.
#
#   docker build -t ftr:0.1.0-py3.12-cu130-torch2.13.0 .
#   docker run --gpus all --ipc=host -v $PWD/build:/app/build ftr:0.1.0-py3.12-cu130-torch2.13.0 make train RECIPE=qwen-rephrase
#
# BASE_IMAGE: any Debian/Ubuntu image with apt; its python3 (3.11 or 3.12) makes the venv. The default is NVIDIA's
# CUDA 13.0.1 + cuDNN runtime on Ubuntu 24.04 (Python 3.12); the PyPI torch 2.13.0 wheel is a CUDA 13.0 build.
ARG BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

# Layer 1: system packages. python3-venv for the venv, make for the documented interface, tini as PID 1.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The runtime user. Ubuntu 24.04 images ship `ubuntu` as uid 1000: it gives way so that ftr is 1000, the usual
# host uid (files written into a mounted build/ then belong to the host user; other uids: --user, README).
ARG FTR_UID=1000
RUN (userdel --remove ubuntu 2>/dev/null || true) \
 && useradd --create-home --uid "${FTR_UID}" --user-group --shell /bin/bash ftr \
 && mkdir -p /app/build /cache \
 && chown ftr:ftr /app /app/build \
 && chmod 1777 /cache
WORKDIR /app

# pip's configuration, passed through for air-gapped or mirrored builds (empty = pip's default; pip ignores an
# empty PIP_* variable). Only the build sees these: none of them is an ENV of the image.
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_FIND_LINKS=""
ARG PIP_CONSTRAINT=""
ARG PIP_TRUSTED_HOST=""
ARG PIP_NO_INDEX=""

# Layer 2: torch. TORCH_INDEX_URL, when set, is the only index torch comes from (e.g. a cu130 wheel index);
# hadolint reads its ${...:+...} expansion as an unpinned package, hence the DL3013 pragma.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=""
ENV VIRTUAL_ENV=/app/.venv PATH=/app/.venv/bin:$PATH
# hadolint ignore=DL3013
RUN python3 -m venv /app/.venv \
 && pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION}"

# Layer 3: the pinned dependencies (ftr[dev]'s resolved set). Only this file invalidates it.
COPY docker/requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt "torch==${TORCH_VERSION}" && rm /tmp/requirements.txt

# Layer 4: the code, installed editable as `make setup` does, so the repo's recipes/ and data/ are the package's.
# The stamp tells make that setup is done: `make train` in the container never installs anything.
COPY . /app
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /app \
 && pip check \
 && touch /app/.venv/.setup-stamp \
 && chown ftr:ftr /app/build \
 && python -m compileall -q /app/ftr /app/converters /app/eval

# Caches live under /cache (a volume; world-writable so that any --user can write it); no token is baked in:
# HF_TOKEN, HF_HUB_OFFLINE and HF_DATASETS_OFFLINE come from `docker run -e` when wanted.
# USER: under `--user <uid>` with no passwd entry, getpass.getuser() (torch's inductor cache) would fail.
ENV HF_HOME=/cache/huggingface \
    XDG_CACHE_HOME=/cache \
    TRITON_CACHE_DIR=/cache/triton \
    TORCHINDUCTOR_CACHE_DIR=/cache/torchinductor \
    USER=ftr \
    MPLCONFIGDIR=/cache/matplotlib \
    PYTHONUNBUFFERED=1 \
    AXOLOTL_DO_NOT_TRACK=1 \
    WANDB_MODE=disabled
VOLUME ["/app/build", "/cache"]
# Numeric, so that a runtime enforcing non-root (Kubernetes runAsNonRoot) can check it.
USER ${FTR_UID}
EXPOSE 8000
# tini -g: Ctrl-C / `docker stop` reach make and ftr (which passes it to the trainer), not just PID 1's child.
# The stop signal is SIGINT because make forwards a SIGTERM to its children itself: ftr would get it twice and take
# the second for "kill now" instead of a clean stop at a checkpoint.
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/bin/tini", "-g", "--"]
CMD ["make", "help"]
