"""The session never writes into the checkout's build/: FTR_BUILD is a temporary folder, and the guard that fails the
session when build/ changed does see a change."""

import os
from pathlib import Path

from build_guard import changes, snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_ftr_build_is_a_temporary_folder_outside_the_checkout(build_root):
    from ftr import paths

    assert Path(os.environ["FTR_BUILD"]) == build_root == paths.BUILD_DIR
    assert paths.TINY_MODELS_DIR == build_root / "tiny-models"
    assert not build_root.resolve().is_relative_to(REPO_ROOT.resolve())


def test_the_guard_flags_an_added_a_changed_and_a_removed_path(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.json").write_text("{}")
    (tmp_path / "old.txt").write_text("old")
    before = snapshot(tmp_path)
    assert changes(before, snapshot(tmp_path)) == []
    (tmp_path / "run" / "new.json").write_text("{}")
    (tmp_path / "run" / "keep.json").write_text('{"a": 1}')
    (tmp_path / "old.txt").unlink()
    (tmp_path / "empty").mkdir()
    found = changes(before, snapshot(tmp_path))
    assert {"added run/new.json", "changed run/keep.json", "removed old.txt", "added empty"} <= set(found)


def test_the_guard_skips_only_setuptools_output(tmp_path):
    before = snapshot(tmp_path)
    for name in ("lib", "bdist.linux-x86_64"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.py").write_text("")
    assert changes(before, snapshot(tmp_path)) == []
    (tmp_path / "tiny-models").mkdir()
    assert changes(before, snapshot(tmp_path)) == ["added tiny-models"]
