# The documented interface. `make help` lists every target; each one runs `make setup` first if needed.
SHELL := /bin/bash
.DEFAULT_GOAL := help

RECIPE ?= tiny-rephrase
ACCEL ?= single
NPROC ?=
SET ?=
MODEL ?= merged
PORT ?= 8000
VENV ?= .venv
PY := $(VENV)/bin/python
FTR := $(VENV)/bin/ftr
# SET reaches ftr verbatim: through the environment (no shell quoting to get wrong) and as $(value SET), so make
# does not expand a `$` in it either. `--sets` splits it like a shell; a word without `key=` continues the value
# before it, so SET='data.system_prompt=Be brief please' is one override and SET='lora_r=32 learning_rate=1e-4' two.
export FTR_SET = $(value SET)
SETS = $(if $(value SET),--sets "$$FTR_SET")
# Where render writes (ftr itself follows FTR_BUILD too).
BUILD := $(or $(FTR_BUILD),build)
# First interpreter the project supports (torch 2.13's local CPU wheel here is for 3.11).
PYTHON ?= $(shell for p in python3.11 python3.12; do command -v $$p >/dev/null && { echo $$p; break; }; done)
STAMP := $(VENV)/.setup-stamp

export AXOLOTL_DO_NOT_TRACK := 1
export WANDB_MODE := disabled

.PHONY: help setup tiny-models list render validate lint convert train eval merge serve serve-vllm bench bench-multi wheelhouse test clean

help: ## List the targets (this message)
	@echo "usage: make <target> [RECIPE=id] [ACCEL=single|ddp|zero2|zero3|fsdp2] [NPROC=n] [SET='key=value ...']"
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv (Python 3.11/3.12), install torch 2.13 (or keep a CUDA torch 2.11-2.13) and ftr[dev]

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need python3.11 or python3.12 on PATH"; exit 1; }
	@if $(PYTHON) -c 'import torch,sys; v=tuple(map(int,torch.__version__.split("+")[0].split(".")[:2])); sys.exit(0 if (2,11)<=v<=(2,13) else 1)' 2>/dev/null; then \
		echo "keeping the system torch (2.11-2.13) in a venv that sees system packages"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q torch==2.13.0; \
	fi
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip check
	@touch $@

tiny-models: $(STAMP) ## Build the tiny offline stand-in models (also built on demand by the tiny recipes)
	$(FTR) tiny-models

list: $(STAMP) ## List recipes
	$(FTR) list

render: $(STAMP) ## Render RECIPE's Axolotl YAML to build/RECIPE/rendered.yaml (a trained run's own stays as it was)
	$(FTR) render $(RECIPE) $(SETS) -o $(BUILD)/$(RECIPE)/rendered.yaml

validate: $(STAMP) ## Validate RECIPE with Axolotl's own schema (CPU, no model)
	$(FTR) validate $(RECIPE) $(SETS)

lint: $(STAMP) ## Lint RECIPE's raw data (one line per problem); SET='data.path=mine.json' lints that file instead
	$(FTR) lint --recipe $(RECIPE) $(SETS)

train: $(STAMP) ## Convert, render, preprocess and train RECIPE (default tiny-rephrase, CPU, < 3 min); resumes an interrupted run, FRESH=1 starts over
	$(FTR) train $(RECIPE) --accel $(ACCEL) $(if $(NPROC),--num-processes $(NPROC)) $(SETS) $(if $(filter-out 0,$(FRESH)),--fresh)

eval: $(STAMP) ## Evaluate RECIPE's adapter on its test split (report in build/RECIPE/eval/)
	$(FTR) eval $(RECIPE)

merge: $(STAMP) ## Merge RECIPE's adapter into a 16-bit base and verify it (build/RECIPE/merged/)
	$(FTR) merge $(RECIPE)

serve: $(STAMP) ## Serve RECIPE (MODEL=merged|adapter) on 127.0.0.1:PORT: OpenAI chat + /predict
	$(FTR) serve $(RECIPE) --model $(MODEL) --port $(PORT)

serve-vllm: $(STAMP) ## Serve RECIPE's merged model with vLLM's OpenAI server (GPU; pip install -e '.[vllm]')
	$(PY) -m vllm.entrypoints.openai.api_server --model build/$(RECIPE)/merged --served-model-name $(RECIPE) --host 127.0.0.1 --port $(PORT)

bench: $(STAMP) ## GPU: throughput of seed setup vs Axolotl defaults vs the shipped qwen-rephrase
	$(PY) -m ftr.bench

bench-multi: $(STAMP) ## GPUs: (c)'s tokens/s/GPU and per-GPU efficiency at 1/2/4/8 GPUs with ddp, zero2, fsdp2
	$(PY) -m ftr.bench.multi

wheelhouse: ## Build wheels for an offline Python 3.12 CUDA host (parts <= 60 MiB) into wheelhouse/
	bash tools/wheelhouse.sh

test: $(STAMP) ## Run the test suite on CPU (GPU tests are marked and skipped without CUDA)
	$(PY) -m pytest -q

clean: ## Remove build/ (runs, prepared data, tiny models); keeps .venv
	rm -rf build

# Docker (README "Docker"). DOCKER=podman works too: builds then use --format docker (OCI drops HEALTHCHECK/SHELL).
DOCKER ?= docker
FTR_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ftr:$(FTR_VERSION)-py3.12-cu130-torch2.13.0
DOCKER_BUILD_ARGS ?=
DOCKER_GPUS ?= --gpus all
# More `docker run` flags, e.g. DOCKER_RUN_ARGS="-v $PWD/mine.json:/data/mine.json:ro" SET='data.path=/data/mine.json'.
DOCKER_RUN_ARGS ?=
HF_CACHE ?= $(HOME)/.cache/huggingface
IMAGE_TARBALL := build/docker/$(subst :,_,$(IMAGE)).tar.zst
# As the calling user, so that what the container writes into build/ is theirs; folders made first, or Docker
# would create them as root.
DOCKER_RUN = mkdir -p build $(HF_CACHE) && $(DOCKER) run --rm $(DOCKER_GPUS) --ipc=host --user $$(id -u):$$(id -g) \
	-v $(CURDIR)/build:/app/build -v $(HF_CACHE):/cache/huggingface -e HF_TOKEN -e HF_HUB_OFFLINE -e HF_DATASETS_OFFLINE $(DOCKER_RUN_ARGS)

.PHONY: docker-build docker-train docker-serve docker-save docker-pins docker-test

docker-build: ## Build the image IMAGE (default ftr:<version>-py3.12-cu130-torch2.13.0; DOCKER_BUILD_ARGS='--build-arg BASE_IMAGE=...'; README "Docker")
	$(DOCKER) build $(if $(filter podman%,$(notdir $(DOCKER))),--format docker) $(DOCKER_BUILD_ARGS) -t $(IMAGE) .

docker-train: ## Train RECIPE in the image on the GPUs (build/ mounted; SET, ACCEL, FRESH as for train)
	$(DOCKER_RUN) -e SET="$$FTR_SET" $(IMAGE) make train RECIPE=$(RECIPE) ACCEL=$(ACCEL) $(if $(filter-out 0,$(FRESH)),FRESH=1)

docker-serve: ## Serve RECIPE from the image on 127.0.0.1:PORT; needs FTR_API_KEY (Bearer key, all but /health)
	@test -n "$$FTR_API_KEY" || { echo 'set an API key first: export FTR_API_KEY=$$(openssl rand -hex 16)'; exit 1; }
	$(DOCKER_RUN) -p 127.0.0.1:$(PORT):8000 -e FTR_API_KEY $(IMAGE) \
		ftr serve $(RECIPE) --model $(MODEL) --host 0.0.0.0 --port 8000 --api-key-env FTR_API_KEY

docker-save: ## Write the image as a zstd tarball for an air-gapped node (build/docker/; `zstd -dc F | docker load`)
	mkdir -p build/docker && set -o pipefail && $(DOCKER) save $(IMAGE) | zstd -T0 -q -f -o $(IMAGE_TARBALL)
	@ls -l $(IMAGE_TARBALL)

docker-pins: $(STAMP) ## Regenerate docker/requirements.txt (the image's pins) from .venv after a dependency change
	{ grep '^#' docker/requirements.txt; $(PY) -m pip freeze --all --exclude-editable | grep -Ev '^(pip|torch|triton)=='; } \
		> docker/requirements.txt.new && mv docker/requirements.txt.new docker/requirements.txt

docker-test: ## Build and exercise the image with podman on a local Debian base, offline runs (root; what CI runs)
	bash docker/ci-image-test.sh
