"""`ftr serve` refuses, before loading anything, a merged model that is missing, failed or older than the adapter."""

import json

import pytest
from serve_helpers import ftr

from ftr.serving.loading import Run, RunError, adapter_fingerprint, check_merged


def _run(tmp_path, figures):
    run = Run("r", tmp_path / "r")
    (run.adapter).mkdir(parents=True)
    (run.adapter / "adapter_config.json").write_text("{}")
    (run.adapter / "adapter_model.safetensors").write_bytes(b"weights")
    run.merged.mkdir()
    (run.merged / "verification.json").write_text(json.dumps(figures))
    return run


def test_a_verified_merge_of_the_current_adapter_is_accepted(tmp_path):
    run = _run(tmp_path, {"verification": {"passed": True}})
    figures = json.loads((run.merged / "verification.json").read_text())
    figures["adapter_sha256"] = adapter_fingerprint(run.adapter)
    (run.merged / "verification.json").write_text(json.dumps(figures))
    assert check_merged(run)["verification"]["passed"]


def test_a_merge_of_an_earlier_adapter_is_refused(tmp_path):
    run = _run(tmp_path, {"verification": {"passed": True}, "adapter_sha256": "0" * 64})
    with pytest.raises(RunError, match="earlier adapter"):
        check_merged(run)


def test_a_failed_merge_is_refused(tmp_path):
    run = _run(tmp_path, {"verification": {"passed": False}})
    with pytest.raises(RunError, match="did not pass"):
        check_merged(run)


def test_serve_without_a_merge_says_what_to_run(tmp_path):
    proc = ftr(["serve", "tiny-rephrase"], tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "make merge RECIPE=tiny-rephrase" in proc.stderr and "MODEL=adapter" in proc.stderr
