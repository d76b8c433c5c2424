"""Shared fixtures: a tiny-rephrase run trained once per test session, in its own build tree.

Tests never touch the user's build/: FTR_BUILD points every run of the session at a temporary folder.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never reach a hub (none is reachable here or in CI: a lookup would only hang until it times out).
for _name, _value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1",
                      "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def build_root(tmp_path_factory) -> Path:
    """A build tree for the whole session (tiny models are built once into it)."""
    return tmp_path_factory.mktemp("build")


def run_ftr(args: list[str], build_root: Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed `ftr` CLI the way a user does, with the session's build tree."""
    env = dict(os.environ, FTR_BUILD=str(build_root), AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "-m", "ftr.cli", *args], cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"ftr {' '.join(args)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="session")
def ftr(build_root):
    """Call the `ftr` CLI in the session's build tree: ftr(["train", "tiny-stories"])."""
    return lambda args, **kwargs: run_ftr(args, build_root, **kwargs)


@pytest.fixture(scope="session")
def trained_tiny_rephrase(build_root) -> Path:
    """build/tiny-rephrase after `ftr train tiny-rephrase` (the README's default recipe, as shipped)."""
    run_ftr(["train", "tiny-rephrase"], build_root)
    run = build_root / "tiny-rephrase"
    assert json.loads((run / "run.json").read_text())["loss"], "no loss logged"
    return run
