"""Every recipe found recursively under recipes/ passes Axolotl's own validate_config (CPU, no model)."""

import pytest

from ftr.recipes import discover, load_recipe, render
from ftr.validate import validate_yaml


@pytest.mark.parametrize("recipe_id", sorted(discover()))
def test_axolotl_accepts_recipe(recipe_id):
    result = validate_yaml(render(load_recipe(recipe_id)))
    # Axolotl may fill defaults, but must not silently rewrite a value the recipe chose.
    assert not result.changed, result.changed


def test_axolotl_rejects_a_broken_recipe():
    with pytest.raises(ValueError, match="early_stopping_patience"):
        validate_yaml(render(load_recipe("qwen-rephrase", {"eval_steps": None, "save_steps": None})))
