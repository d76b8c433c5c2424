"""Every recipe renders byte for byte as it did before recipes were split into defaults, families and profiles.

tests/recipes/golden/ holds the renders, normalised: the build folder reads <build>, and the two values that hash
the recipe's own files (the `sha256 recipe inputs` header line and the prepared-dataset folder named by it) are
blanked, since moving a value from a recipe into _defaults.yaml changes those files but not the config.
Regenerate deliberately with FTR_UPDATE_GOLDEN=1 (and say in the commit why a render changed).
"""

import os
import re
from pathlib import Path

import pytest

from ftr import paths, recipes
from ftr.recipes import load_recipe, render

GOLDEN = Path(__file__).parent / "golden"
# case name -> (recipe id, overrides)
CASES = {
    "qwen-rephrase": ("qwen-rephrase", {}),
    "mistral-stories": ("mistral-stories", {}),
    "qwen-domain-zh": ("qwen-domain-zh", {}),
    "chat-lora": ("chat-lora", {}),
    "tiny-rephrase": ("tiny-rephrase", {}),
    "tiny-stories": ("tiny-stories", {}),
    "scratch-rephrase": ("scratch-rephrase", {}),
    "qwen-rephrase-sets": ("qwen-rephrase", {"lora_r": 32, "learning_rate": 1e-4, "liger": False,
                                             "data.system_prompt": "Be brief please"}),
    "tiny-stories-sets": ("tiny-stories", {"adapter": None, "liger": True, "max_steps": 5, "bf16": "auto"}),
    "chat-lora-sets": ("chat-lora", {"base_model": "Qwen/Qwen2.5-1.5B-Instruct", "data.path": "data/examples/x.jsonl"}),
}


@pytest.fixture
def empty_build(tmp_path, monkeypatch):
    """An empty build tree: no tiny model is built, so base models and tokenizer hashes render the same anywhere."""
    monkeypatch.setattr(paths, "BUILD_DIR", tmp_path)
    monkeypatch.setattr(recipes, "TINY_MODELS_DIR", tmp_path / "tiny-models")
    return tmp_path


def normalised(text: str, build: Path) -> str:
    text = text.replace(str(build), "<build>")
    text = re.sub(r"^# sha256 recipe inputs: [0-9a-f]{64}$", "# sha256 recipe inputs: <hash>", text, flags=re.M)
    return re.sub(r"(/prepared/)[0-9a-f]{16}", r"\1<key>", text)


@pytest.mark.parametrize("case", CASES)
def test_render_is_unchanged(case, empty_build):
    recipe_id, sets = CASES[case]
    text = normalised(render(load_recipe(recipe_id, dict(sets)), command=f"ftr render {recipe_id}"), empty_build)
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("FTR_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")
