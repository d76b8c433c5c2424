"""Recipe paths: `build/...` follows the build tree (FTR_BUILD), other relative paths the repo root."""

import subprocess
import sys
from pathlib import Path

from ftr import paths


def test_build_paths_follow_the_build_tree():
    assert paths.resolve("build/tiny-models/qwen2") == paths.TINY_MODELS_DIR / "qwen2"
    assert paths.resolve("data/examples/rephrase_vi.json") == paths.REPO_ROOT / "data/examples/rephrase_vi.json"
    assert paths.resolve("/abs/model") == Path("/abs/model")
    assert paths.resolve("buildings/x") == paths.REPO_ROOT / "buildings/x"


def test_ftr_build_moves_build_paths(tmp_path):
    code = "from ftr import paths; print(paths.resolve('build/tiny-models/qwen2'))"
    out = subprocess.run([sys.executable, "-c", code], env={"FTR_BUILD": str(tmp_path), "PATH": ""},
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == str(tmp_path / "tiny-models" / "qwen2")
