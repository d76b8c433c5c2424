"""Running the `ftr` CLI against a test build tree, and copying a trained run to break it without harm."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def ftr(args: list[str], build_root: Path, *, python_code: str | None = None) -> subprocess.CompletedProcess:
    """`ftr ARGS` (or `python -c python_code`) with FTR_BUILD=build_root, output captured."""
    env = dict(os.environ, FTR_BUILD=str(build_root), AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")
    command = [sys.executable, "-c", python_code] if python_code else [sys.executable, "-m", "ftr.cli", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, text=True, capture_output=True, timeout=600)


def copy_run(run: Path, build_root: Path) -> Path:
    """A copy of a trained run (what `ftr merge` reads) under another build tree."""
    target = build_root / run.name
    target.mkdir(parents=True)
    shutil.copytree(run / "adapter", target / "adapter", ignore=shutil.ignore_patterns("checkpoint-*"))
    shutil.copytree(run / "data", target / "data")
    for name in ("axolotl.yaml", "run.json"):
        shutil.copy2(run / name, target / name)
    return target
