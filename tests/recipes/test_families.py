"""A model family (recipes/families/<name>.yaml) fixes the model template, chat template, end-of-turn and pad tokens
and turn alternation; `family:` picks it, --set can change it, a local base model's config.json must agree."""

import json

import pytest
import yaml

from ftr.recipes import RecipeError, families, load_recipe, parse_sets, render, split_sets

MISTRAL_SET = "base_model=mistralai/Mistral-7B-Instruct-v0.2 chat_template=mistral_v1"  # README's chat-lora command


def config(recipe) -> dict:
    return yaml.safe_load(render(recipe))


def assert_mistral(recipe):
    assert recipe.family == "mistral" and recipe.template == "mistral.yaml.j2" and recipe.requires_alternating
    assert recipe.tokenizer_stand_in == "mistral" and recipe.end_of_turn == "</s>"
    cfg = config(recipe)
    assert "eot_tokens" not in cfg and cfg["special_tokens"] == {"pad_token": "</s>"}
    assert cfg["chat_template"] == "mistral_v1"


def test_shipped_families():
    assert {"qwen2_5", "mistral"} <= set(families())
    qwen = config(load_recipe("chat-lora"))
    assert qwen["eot_tokens"] == ["<|im_end|>"] and qwen["special_tokens"] == {"pad_token": "<|endoftext|>"}
    assert not load_recipe("qwen-rephrase").requires_alternating and load_recipe("tiny-stories").requires_alternating


@pytest.mark.parametrize("set_text", [MISTRAL_SET, "base_model=mistralai/Mistral-7B-Instruct-v0.2",
                                      "family=mistral base_model=mistralai/Mistral-7B-Instruct-v0.2"])
def test_chat_lora_on_mistral_renders_mistrals_tokens(set_text):
    """The documented command: a hub id naming a family picks it when `family` is not set on the command line."""
    assert_mistral(load_recipe("chat-lora", parse_sets(split_sets(set_text))))


def test_set_family_switches_template_tokens_and_chat_template():
    assert_mistral(load_recipe("chat-lora", {"family": "mistral"}))
    back = load_recipe("tiny-stories", {"family": "qwen2_5", "base_model": "Qwen/Qwen2.5-0.5B-Instruct"})
    assert back.template == "qwen.yaml.j2" and config(back)["eot_tokens"] == ["<|im_end|>"]


def test_a_chat_template_of_another_family_is_refused():
    with pytest.raises(RecipeError, match=r"chat_template 'mistral_v1' is family 'mistral'.*set family=mistral"):
        load_recipe("chat-lora", {"chat_template": "mistral_v1"})


def test_unknown_family_has_did_you_mean():
    with pytest.raises(RecipeError, match=r"--set family: unknown family 'mistrall' \(did you mean 'mistral'\?\)"):
        load_recipe("chat-lora", parse_sets(["family=mistrall"]))
    with pytest.raises(RecipeError, match=r"unknown key 'famly' \(did you mean 'family'\?\)"):
        load_recipe("chat-lora", {"famly": "mistral"})


def local_model(tmp_path, model_type: str):
    folder = tmp_path / f"model-{model_type}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": model_type}), encoding="utf-8")
    return str(folder)


def test_a_local_base_model_picks_its_family(tmp_path):
    assert load_recipe("chat-lora", {"base_model": local_model(tmp_path, "mistral")}).family == "mistral"
    assert load_recipe("tiny-stories", {"base_model": local_model(tmp_path, "qwen2")}).family == "qwen2_5"


def test_family_and_local_base_model_mismatch_is_an_error(tmp_path):
    mistral = local_model(tmp_path, "mistral")
    with pytest.raises(RecipeError, match=r"--set family: family 'qwen2_5' is for model_type qwen2, but base model "
                                          r".* is 'mistral' \(its config.json\); set family=mistral"):
        load_recipe("chat-lora", {"family": "qwen2_5", "base_model": mistral})
    with pytest.raises(RecipeError, match="'llama'.*which no family in recipes/families/ covers"):
        load_recipe("chat-lora", {"base_model": local_model(tmp_path, "llama")})



def write(root, recipe_id, raw):
    (root / recipe_id).mkdir()
    path = root / recipe_id / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def test_a_recipe_file_whose_family_contradicts_its_local_model_is_refused(tree, tmp_path):
    path = write(tree, "tiny-wrong", {"extends": "tiny-rephrase", "vars": {"base_model": local_model(tmp_path, "mistral")}})
    with pytest.raises(RecipeError, match=rf"{path.parent.parent}/qwen-rephrase/recipe.yaml: family: family 'qwen2_5'"):
        load_recipe("tiny-wrong")


def test_a_recipe_without_family_derives_it_from_a_local_model(tree, tmp_path):
    raw = yaml.safe_load((tree / "chat-lora" / "recipe.yaml").read_text(encoding="utf-8"))
    del raw["family"]
    raw["vars"]["base_model"] = local_model(tmp_path, "mistral")
    write(tree, "chat-any", raw)
    assert_mistral(load_recipe("chat-any"))
    raw["vars"]["base_model"] = "someone/unnamed-7b"
    (tree / "chat-any" / "recipe.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(RecipeError, match="missing key 'family'"):
        load_recipe("chat-any")


def test_a_new_family_is_a_file(tree):
    spec = yaml.safe_load((tree / "families" / "qwen2_5.yaml").read_text(encoding="utf-8"))
    spec.update(description="a fork", model_types=["qwen2"], hub_names=["myfork"], end_of_turn="<|endoftext|>")
    (tree / "families" / "myfork.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    recipe = load_recipe("chat-lora", {"base_model": "me/myfork-7b"})
    assert recipe.family == "myfork" and config(recipe)["eot_tokens"] == ["<|endoftext|>"]
    (tree / "families" / "broken.yaml").write_text("description: x\ntemplate: qwen.yaml.j2\n", encoding="utf-8")
    with pytest.raises(RecipeError, match=r"families/broken.yaml: chat_template: missing"):
        load_recipe("chat-lora", {"family": "broken"})
