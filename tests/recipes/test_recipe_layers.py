"""Defaults once: recipes/_defaults.yaml holds every shared value, `extends:` applies a list of layers in order, and a
recipe file states only what it changes, so defaults cannot drift back into recipes."""


import pytest
import yaml

from ftr import paths, recipes
from ftr.recipes import RecipeError, discover, load_recipe

ALL = sorted(discover())
ROOTS = ("qwen-rephrase", "mistral-stories", "qwen-domain-zh", "chat-lora")


def flat(raw: dict) -> dict:
    """{"vars.lora_r": 16, "data.seed": 42, "family": ..., ...}: a recipe file's settings, one per key."""
    out = {}
    for key, value in raw.items():
        if key in ("data", "vars", "axolotl") and isinstance(value, dict):
            out.update({f"{key}.{name}": item for name, item in value.items()})
        elif key != "extends":
            out[key] = value
    return out


@pytest.mark.parametrize("recipe_id", ALL)
def test_no_recipe_file_restates_an_inherited_value(recipe_id):
    """Each recipe.yaml (not the shared layers) against what the layers beneath it, and its family, already give."""
    found, twice = recipes.scan()
    chain = recipes._chain(recipe_id, found, twice)
    recipe = load_recipe(recipe_id)
    inherited = {"vars.chat_template": recipe.family_spec["chat_template"], "template": recipe.family_spec["template"],
                 "tokenizer_stand_in": recipe.family_spec.get("tokenizer_stand_in")}
    for path, keys in chain:
        own = flat(keys)
        if path.name == "recipe.yaml":
            same = {key: value for key, value in own.items() if key in inherited and inherited[key] == value}
            assert not same, f"{path} restates inherited values: {same}"
        inherited.update(own)


def test_root_recipes_state_only_their_choices():
    for recipe_id in ROOTS:
        raw = yaml.safe_load((paths.RECIPES_DIR / recipe_id / "recipe.yaml").read_text(encoding="utf-8"))
        assert raw["extends"] == "_defaults" and "family" in raw, recipe_id
        assert len(raw["vars"]) <= 25, (recipe_id, len(raw["vars"]))


def test_tiny_recipes_use_the_cpu_profile():
    cpu = yaml.safe_load((paths.RECIPES_DIR / "profiles" / "cpu.yaml").read_text(encoding="utf-8"))["vars"]
    for recipe_id in ("tiny-rephrase", "tiny-stories"):
        raw = yaml.safe_load((paths.RECIPES_DIR / recipe_id / "recipe.yaml").read_text(encoding="utf-8"))
        assert "profiles/cpu" in raw["extends"]
        recipe = load_recipe(recipe_id)
        assert {key: recipe.vars[key] for key in cpu} == cpu


def test_defaults_and_layers_are_not_recipes():
    assert not {"_defaults", "cpu", "profiles", "families", "mistral", "qwen2_5"} & set(ALL)



def write(root, name, raw):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_extends_applies_in_order_and_later_layers_win(tree):
    write(tree, "profiles/fast.yaml", {"vars": {"learning_rate": 0.01, "num_epochs": 2}})
    write(tree, "tiny-fast/recipe.yaml", {"extends": ["tiny-rephrase", "profiles/fast"], "vars": {"num_epochs": 4}})
    recipe = load_recipe("tiny-fast")
    assert recipe.vars["learning_rate"] == 0.01 and recipe.vars["num_epochs"] == 4
    write(tree, "tiny-slow/recipe.yaml", {"extends": ["profiles/fast", "tiny-rephrase"]})
    assert load_recipe("tiny-slow").vars["learning_rate"] == 0.002  # tiny-rephrase's cpu profile applies later


def test_a_layer_with_a_bad_value_names_its_file(tree):
    path = write(tree, "profiles/bad.yaml", {"vars": {"lora_r": -1}})
    write(tree, "tiny-bad/recipe.yaml", {"extends": ["tiny-rephrase", "profiles/bad"]})
    with pytest.raises(RecipeError, match=rf"{path}: vars.lora_r: must be > 0"):
        load_recipe("tiny-bad")
    write(tree, "tiny-typo/recipe.yaml", {"extends": ["tiny-rephrase", "profiles/cpuu"]})
    with pytest.raises(RecipeError, match=r"unknown layer 'profiles/cpuu'.*did you mean 'profiles/cpu'"):
        load_recipe("tiny-typo")
