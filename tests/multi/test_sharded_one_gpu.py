"""The sharded accelerate configs start and train on one CUDA GPU (one process): ZeRO-2 (DeepSpeed) and FSDP2.

One process cannot show sharding, but it runs everything a config sets up (DeepSpeed's engine and its JSON, FSDP2's
fully_shard wrapping and sharded checkpoint) through the launcher `ftr train --accel NAME` builds, so a config error
or an Axolotl/accelerate incompatibility fails here rather than on a multi-GPU node. A few steps of tiny-rephrase in
bf16, in a build tree of their own.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = 3


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    from ftr.paths import TINY_MODELS_DIR
    from ftr.tiny_models import build as build_model

    if not (TINY_MODELS_DIR / "qwen2" / "config.json").exists():
        build_model("qwen2", TINY_MODELS_DIR)
    root = tmp_path_factory.mktemp("sharded-build")
    (root / "tiny-models").symlink_to(TINY_MODELS_DIR)
    return root


@pytest.mark.parametrize("accel", ["zero2", "fsdp2"])
def test_sharded_config_trains_on_one_gpu(build, accel):
    if accel.startswith("zero") and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed: `.venv/bin/pip install 'deepspeed>=0.18.6,<0.19'` (or the "
                    "wheelhouse, tools/wheelhouse-requirements.txt) to test --accel zero2")
    env = dict(os.environ, FTR_BUILD=str(build), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-m", "ftr.cli", "train", "tiny-rephrase", "--accel", accel,
                           "--num-processes", "1", "--fresh", "--set", f"max_steps={STEPS}", "--set", "bf16=true",
                           "--set", "optimizer=adamw_torch_fused"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"--accel {accel}: exit {proc.returncode}\n{proc.stderr[-8000:]}"
    run = (build / "tiny-rephrase" / "current").resolve()
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "completed" and manifest["accelerate"] == accel, manifest.get("reason")
    assert manifest["steps"]["done"] == STEPS and manifest["loss"], manifest
    adapter = run / "adapter"
    # the checkpoint's layout proves the config took effect: DeepSpeed's engine saves global_step<N>/ with ZeRO
    # optimizer shards, FSDP's SHARDED_STATE_DICT saves pytorch_model_fsdp_0/ (a plain DDP/single run has neither)
    checkpoint = adapter / f"checkpoint-{STEPS}"
    found = sorted(p.name for p in checkpoint.iterdir())
    if accel == "zero2":
        assert list(checkpoint.glob(f"global_step{STEPS}/*optim_states.pt")), found
    else:
        assert [name for name in found if name.startswith("pytorch_model_fsdp")], found
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file() or list(adapter.glob("pytorch_model*")), \
        sorted(p.name for p in adapter.iterdir())
