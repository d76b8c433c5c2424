"""Run the `ftr` CLI from any folder (in-process, or a real subprocess where the process itself matters), and
snapshot folders to prove nothing else changed."""

import contextlib
import os
import subprocess
import sys
from pathlib import Path


def ftr_cli(*args, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m ftr.cli ARGS` in `cwd`, as a user runs it; asserts that no input gives a Python traceback."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "ftr.cli", *map(str, args)], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-4000:]
    return proc


def ftr_in_process(*args, cwd: Path):
    """`ftr ARGS` in-process from `cwd` -> click.testing.Result (stdout and stderr apart); any exception but
    SystemExit propagates: it is the traceback a user would have seen."""
    from click.testing import CliRunner

    from ftr.cli import main

    with contextlib.chdir(cwd):
        return CliRunner().invoke(main, list(map(str, args)), prog_name="ftr", catch_exceptions=False)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (subfolders too), by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
