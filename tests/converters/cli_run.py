"""Run the real `ftr` CLI in a subprocess from any folder, and snapshot folders to prove nothing else changed."""

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


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (subfolders too), by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
