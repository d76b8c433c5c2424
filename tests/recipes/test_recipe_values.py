"""Values that could only fail later (mid-training, or never: a bar nothing measures) are refused up front, naming the
key and where it came from: the recipe file or --set."""

from pathlib import Path

import pytest
import yaml

from ftr.recipes import RecipeError, load_recipe, parse_sets
from ftr.validate import TEXT_KEYS, known_bars

# (key, value, message after "<key>: ")
BAD = [
    ("lora_r", -5, "must be > 0, got -5"),
    ("lora_r", 8.0, "must be an integer, got 8.0"),
    ("micro_batch_size", 0, "must be > 0, got 0"),
    ("learning_rate", float("nan"), "must be finite, got nan"),
    ("learning_rate", float("inf"), "must be finite, got inf"),
    ("learning_rate", -1e-4, "must be > 0, got -0.0001"),
    ("learning_rate", "2e-4", "must be a number (YAML reads 2e-4 as text"),
    ("max_steps", -3, "must be > 0, got -3"),
    ("sequence_len", True, "must be an integer, got True"),
    ("sequence_len", None, "must be an integer, got None"),
    ("lora_alpha", 0, "must be > 0, got 0"),
    ("lora_dropout", 1.5, "must be < 1, got 1.5"),
    ("lora_dropout", -0.1, "must be >= 0, got -0.1"),
    ("num_epochs", 0, "must be > 0, got 0"),
    ("gradient_accumulation_steps", 0, "must be > 0, got 0"),
    ("warmup_ratio", 1.5, "must be <= 1"),
    ("warmup_ratio", -0.5, "must be >= 0"),
    ("seed", -1, "must be >= 0, got -1"),
    ("bf16", "maybe", "must be one of 'auto', True or False, got 'maybe'"),
    ("load_in_4bit", "yes please", "must be true or false, got 'yes please'"),
    ("adapter", "ia3", "must be one of 'lora' or 'qlora', got 'ia3'"),
    ("base_model", "", "must not be empty, got ''"),
    ("base_model", "x" * 300, "has a path component longer than 255 bytes"),
    ("data.format", "evil", "must be one of 'rephrase', 'chat', 'sharegpt' or 'instruct', got 'evil'"),
    ("data.seed", 1.5, "must be an integer, got 1.5"),
    ("data.seed", "42", "must be an integer, got '42'"),
    ("data.too_long", "sometimes", "must be one of 'drop', 'truncate' or 'error', got 'sometimes'"),
    ("data.path", "a\0b", "must not contain a NUL character"),
]


@pytest.mark.parametrize("key, value, message", BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_bad_set_value_is_refused_naming_the_key(key, value, message):
    with pytest.raises(RecipeError) as exc:
        load_recipe("tiny-rephrase", {key: value})
    assert str(exc.value).startswith(f"recipe 'tiny-rephrase': --set {key}: {message}"), str(exc.value)



def child(root: Path, keys: dict) -> Path:
    (root / "tiny-child").mkdir()
    path = root / "tiny-child" / "recipe.yaml"
    path.write_text(yaml.safe_dump({"extends": "tiny-rephrase", **keys}), encoding="utf-8")
    return path


@pytest.mark.parametrize("key, value, message", BAD, ids=[f"{k}={v!r}"[:40] for k, v, _ in BAD])
def test_bad_file_value_is_refused_naming_the_file_and_key(key, value, message, tree):
    section, name = key.split(".", 1) if key.startswith("data.") else ("vars", key)
    path = child(tree, {section: {name: value}})
    with pytest.raises(RecipeError) as exc:
        load_recipe("tiny-child")
    assert str(exc.value).startswith(f"{path}: {section}.{name}: {message}"), str(exc.value)


@pytest.mark.parametrize("split, message", [
    ([0.5, 0.5, 0.5], "summing to 1"), ([0.8, 0.2], "must have 3 items"), ("0.8,0.1,0.1", "must be a list"),
    ([0.0, 0.5, 0.5], "non-empty train share"), ([1.2, -0.1, -0.1], "must be >= 0"), ([0.8, 0.1, True], "must be a number"),
])
def test_split_must_be_three_fractions_summing_to_one(split, message, tree):
    child(tree, {"data": {"split": split}})
    with pytest.raises(RecipeError, match="data.split") as exc:
        load_recipe("tiny-child")
    assert message in str(exc.value) or (message == "non-empty train share" and "summing to 1" in str(exc.value))


def test_every_problem_of_a_file_is_reported_at_once(tree):
    path = child(tree, {"vars": {"lora_r": 0, "sequence_len": "long"}, "data": {"seed": "x"}})
    with pytest.raises(RecipeError) as exc:
        load_recipe("tiny-child")
    lines = str(exc.value).splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{path}: ") for line in lines)


def test_good_values_still_pass():
    recipe = load_recipe("tiny-rephrase", {"lora_r": 32, "learning_rate": 1, "max_steps": None, "bf16": "auto",
                                           "eval_steps": 0.25, "data.seed": 7, "data.too_long": "truncate",
                                           "gradient_checkpointing": "offload", "adapter": None})
    assert recipe.vars["learning_rate"] == 1 and recipe.seed == 7 and recipe.too_long == "truncate"


def test_set_text_keys_keep_their_text_and_others_are_typed():
    sets = parse_sets(["base_model=1e-4", "data.system_prompt=42", "data.path=007", "lora_r=8", "bf16=auto",
                       "max_steps=null", "data.seed=3", "learning_rate=nan"])
    assert sets["base_model"] == "1e-4" and sets["data.system_prompt"] == "42" and sets["data.path"] == "007"
    assert sets["lora_r"] == 8 and sets["bf16"] == "auto" and sets["max_steps"] is None and sets["data.seed"] == 3
    assert {"vars.base_model", "data.system_prompt", "data.path"} <= TEXT_KEYS


def test_unknown_set_key_suggests_the_close_one():
    with pytest.raises(RecipeError, match=r"unknown key 'lora_rr' \(did you mean 'lora_r'\?\)"):
        load_recipe("tiny-rephrase", {"lora_rr": 8})


@pytest.mark.parametrize("args, message", [
    (["render", "tiny-rephrase", "--set", "lora_r=-5"], "--set lora_r: must be > 0, got -5"),
    (["validate", "tiny-rephrase", "--set", "sequence_len=true"], "--set sequence_len: must be an integer, got True"),
    (["render", "tiny-rephrase", "--sets", "data.format=evil lora_r=8"], "--set data.format: must be one of"),
    (["render", "tiny-rephrase", "--sets", "learning_rate='unclosed"], "No closing quotation"),
])
def test_cli_refuses_bad_values_without_a_traceback(args, message, cli):
    result = cli(args)  # in-process: an exception other than click's exit would fail the test as a traceback
    assert result.exit_code == 1 and message in result.stderr, result.stderr


def test_bars_are_names_eval_measures(tree):
    path = child(tree, {"bars": {"json_valid_rate_max": 1.0, "perplexity_max": 9.0, "per_class.true.recall": 0.9}})
    assert load_recipe("tiny-child").bars["perplexity_max"] == 9.0
    path.write_text(yaml.safe_dump({"extends": "tiny-rephrase", "bars": {"bleu": 5.0}}), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"bars.bleu: not a metric `ftr eval` measures for task 'rephrase'"):
        load_recipe("tiny-child")  # rephrase scores BLEU per field; a plain `bleu` bar would never be checked
    assert "bleu" in known_bars("chat") and "judge.overall" in known_bars("chat")
