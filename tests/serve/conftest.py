"""The merged tiny-rephrase run the live server tests serve (merged once per session, reused if tests/merge did)."""

import json

import pytest
from serve_helpers import ftr


@pytest.fixture(scope="session")
def merged_tiny_rephrase(trained_tiny_rephrase, build_root):
    report = trained_tiny_rephrase / "merged" / "verification.json"
    if not report.exists():
        proc = ftr(["merge", "tiny-rephrase"], build_root)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert json.loads(report.read_text())["verification"]["passed"]
    return trained_tiny_rephrase
