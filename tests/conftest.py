"""Shared fixtures: a tiny-rephrase run trained once per test session, in its own build tree; `cli` (the CLI
in-process) and `ftr` (a real subprocess, where the process itself is the point).

Tests never touch the user's build/: FTR_BUILD points every run of the session at a temporary folder, and the session
fails if the checkout's build/ changed meanwhile (build_guard.py).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from build_guard import changes, snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]

# ftr.paths reads FTR_BUILD once, at import: it must be set before anything imports ftr, so that in-process calls
# and every subprocess (which inherit os.environ) write into the session's tree, never the checkout's build/.
assert "ftr.paths" not in sys.modules, "ftr was imported before tests/conftest.py could set FTR_BUILD"
SESSION_BUILD = Path(tempfile.mkdtemp(prefix="ftr-test-build-"))
os.environ["FTR_BUILD"] = str(SESSION_BUILD)
CHECKOUT_BUILD = REPO_ROOT / "build"
_checkout_build_before = snapshot(CHECKOUT_BUILD)

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


def pytest_sessionfinish(session, exitstatus):
    """Fail the session when anything under the checkout's build/ appeared, changed or went away meanwhile."""
    written = changes(_checkout_build_before, snapshot(CHECKOUT_BUILD))
    if written:
        print(f"\nFAILED: tests wrote into {CHECKOUT_BUILD} (FTR_BUILD={SESSION_BUILD}):", *written[:50], sep="\n  ",
              file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif session.exitstatus == pytest.ExitCode.OK:
        shutil.rmtree(SESSION_BUILD, ignore_errors=True)  # kept after a failure, to look into


@pytest.fixture(scope="session")
def build_root() -> Path:
    """The session's build tree, FTR_BUILD (tiny models are built once into it)."""
    return SESSION_BUILD


def invoke_ftr(args, *, input=None, env=None):
    """`ftr ARGS` in-process through click's CliRunner -> click.testing.Result (stdout and stderr apart).
    Any exception but SystemExit propagates: it is the traceback a user would have seen."""
    from click.testing import CliRunner

    from ftr.cli import main

    return CliRunner().invoke(main, [str(arg) for arg in args], input=input, env=env, prog_name="ftr",
                              catch_exceptions=False)


@pytest.fixture
def cli(monkeypatch):
    """In-process `ftr`: cli(["render", "tiny-rephrase"], cwd=folder) -> click.testing.Result."""
    def call(args, cwd=None, **kwargs):
        # sys.argv as the `ftr` console script sees it: rendered headers record the command from it
        monkeypatch.setattr(sys, "argv", ["ftr", *map(str, args)])
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return invoke_ftr(args, **kwargs)

    return call


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
