"""Loss masks and train/serve template parity, per recipe, with the real tokenizers and Axolotl's own tokenisation.

Only assistant content and the end-of-turn token (<|im_end|> for Qwen, </s> for Mistral) may carry labels; system,
user and template tokens are -100. The ids the trainer sees must equal apply_chat_template of the tokenizer that is
saved with the adapter, so the served model sees exactly what it was trained on.
"""

import json

import pytest

from ftr.converters.convert import convert_file
from ftr.paths import TINY_MODELS_DIR, run_dir
from ftr.recipes import discover, load_recipe, profile, render
from ftr.tiny_models import build

RECIPES = sorted(r for r in discover() if load_recipe(r).tokenizer_stand_in)


def ids_of(encoded):
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def axolotl_tokenised(recipe_id, tmp_path, n=6):
    """(tokenizer, rows, Axolotl's tokenised rows) for the first n converted training rows of a recipe."""
    from axolotl.cli.config import load_cfg
    from axolotl.loaders import load_tokenizer
    from axolotl.prompt_strategies import load as load_strategy

    recipe = load_recipe(recipe_id)
    stand_in = build(recipe.tokenizer_stand_in, TINY_MODELS_DIR)
    # The 7B weights are not here; the stand-in carries the same real tokenizer.
    recipe = load_recipe(recipe_id, {**profile("cpu"), "base_model": str(stand_in)})
    convert_file(recipe.ensure_data(), tmp_path / "data", fmt=recipe.data_format, system_prompt=recipe.system_prompt,
                 split=recipe.split, seed=recipe.seed, requires_alternating=recipe.requires_alternating)
    config = tmp_path / "axolotl.yaml"
    config.write_text(render(recipe).replace(str(run_dir(recipe_id) / "data"),
                                             str(tmp_path / "data")))
    cfg = load_cfg(str(config))
    tokenizer = load_tokenizer(cfg)
    strategy = load_strategy("chat_template", tokenizer, cfg, cfg.datasets[0])
    rows = [json.loads(line) for line in open(tmp_path / "data" / "train.jsonl", encoding="utf-8")][:n]
    return tokenizer, rows, [strategy.tokenize_prompt(row) for row in rows]


@pytest.mark.parametrize("recipe_id", RECIPES)
def test_only_assistant_content_and_end_of_turn_are_trained(recipe_id, tmp_path):
    tokenizer, rows, tokenised = axolotl_tokenised(recipe_id, tmp_path)
    eot_id = tokenizer.convert_tokens_to_ids(load_recipe(recipe_id).end_of_turn)  # the family's end of turn
    for row, out in zip(rows, tokenised):
        ids, labels = out["input_ids"], out["labels"]
        prompt = ids_of(tokenizer.apply_chat_template(row["messages"][:-1], tokenize=True, add_generation_prompt=True))
        assert ids[:len(prompt)] == prompt, "the prompt must tokenise the same inside the full conversation"
        end = ids.index(eot_id, len(prompt))  # the assistant's end-of-turn token
        trained = [i for i, label in enumerate(labels) if label != -100]
        assert trained == list(range(trained[0], end + 1)), f"row {row.get('id')}: trained tokens are not one span ending at end-of-turn"
        assert all(labels[i] == ids[i] for i in trained)
        # Between the prompt and the answer only template whitespace (Mistral's ' ' + content) may stay masked.
        assert trained[0] >= len(prompt) and tokenizer.decode(ids[len(prompt):trained[0]]).strip() == ""
        assert labels[end] == eot_id, "the end-of-turn token must be trained"
        answer = tokenizer.decode([t for t in labels if t != -100], skip_special_tokens=True).strip()
        assert answer == row["messages"][-1]["content"].strip()


@pytest.mark.parametrize("recipe_id", RECIPES)
def test_trainer_ids_equal_chat_template(recipe_id, tmp_path):
    tokenizer, rows, tokenised = axolotl_tokenised(recipe_id, tmp_path)
    for row, out in zip(rows, tokenised):
        assert out["input_ids"] == ids_of(tokenizer.apply_chat_template(row["messages"], tokenize=True))
        assert row["messages"][0]["role"] == "system", "every row carries an explicit system prompt"


@pytest.mark.slow
def test_prepared_dataset_matches_tokenizer_saved_with_adapter(trained_tiny_rephrase):
    """After the real `axolotl preprocess`, every prepared row is the saved tokenizer's rendering of a training row."""
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained_tiny_rephrase / "adapter")
    rows = [json.loads(line) for line in open(trained_tiny_rephrase / "data" / "train.jsonl", encoding="utf-8")]
    expected = {tuple(ids_of(tokenizer.apply_chat_template(r["messages"], tokenize=True))) for r in rows}
    prepared = [p for p in (trained_tiny_rephrase / "prepared").glob("*/*") if (p / "dataset_info.json").exists()]
    assert prepared, "no prepared dataset found"
    seen = set()
    for folder in prepared:
        for item in datasets.load_from_disk(str(folder)):
            seen.add(tuple(item["input_ids"]))
            eot = tokenizer.convert_tokens_to_ids("<|im_end|>")
            trained = [i for i, label in enumerate(item["labels"]) if label != -100]
            assert item["input_ids"][trained[-1]] == eot
    assert expected & seen and len(expected & seen) == len(rows), "prepared training rows differ from the template"
