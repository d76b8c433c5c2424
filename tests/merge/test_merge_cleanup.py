"""`ftr merge` cleans what killed merges left in the run folder (a whole model each), never a live merge's folder."""

import os
import subprocess
import sys

import pytest
from merge_helpers import copy_run, ftr

pytestmark = pytest.mark.slow


def test_merge_removes_temp_folders_of_dead_merges_only(trained_tiny_rephrase, tmp_path):
    run = copy_run(trained_tiny_rephrase, tmp_path)
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    killed = run / f".merge-{exited.pid}-k9x2"  # what `kill -9` of a merge leaves: its half-made model
    (killed / "merged").mkdir(parents=True)
    (killed / "merged" / "model.safetensors").write_bytes(b"\0" * 4096)
    live = run / f".merge-{os.getpid()}-a1b2"  # a merge still running (this process is alive)
    live.mkdir()
    proc = ftr(["merge", "tiny-rephrase", "--golden", "1", "--max-new-tokens", "4"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"removed {killed}, left by a merge that did not finish" in proc.stdout
    assert not killed.exists() and live.is_dir()
    assert sorted(p.name for p in run.glob(".merge*")) == [live.name]  # the merge's own temp folder went too
    assert (run / "merged" / "verification.json").exists()
