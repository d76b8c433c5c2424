"""`ftr merge`'s decisions without a model: training dtype (bf16 and QLoRA recipes included), 16-bit overrides,
dtype casting, tokenizer files, golden prompts, the comparison verdict, the model card and the atomic rename."""

import json
import os
import subprocess
import sys

import click
import pytest
import torch
from safetensors.torch import load_file, save_file

from ftr.inference import training_dtype
from ftr.merge import (TEMP_PREFIX, cast_checkpoint, checkpoint_dtypes, clean_stale, eval_section,
                       finish_checkpoint, merge_overrides, publish)
from ftr.merge_verify import RELATIVE_TOLERANCE, compare, golden_prompts, tolerance_for
from ftr.recipes import load_recipe


def test_tiny_cpu_recipe_keeps_fp32():
    assert training_dtype(load_recipe("tiny-rephrase").vars)[0] == "float32"


def test_bf16_auto_recipe_merges_to_bf16_even_on_a_cpu_host():
    # qwen-rephrase trains a 7B with bf16: auto; this host has no GPU, the merge must still be bf16, not fp32.
    recipe = load_recipe("qwen-rephrase")
    assert recipe.vars["bf16"] == "auto"
    assert training_dtype(recipe.vars)[0] == "bfloat16"


@pytest.mark.parametrize("cfg, model_config, expected", [
    ({"bf16": True}, None, "bfloat16"),
    ({"bf16": "true", "fp16": False}, None, "bfloat16"),
    ({"bf16": False, "fp16": True}, None, "float16"),
    ({"bf16": "auto", "fp16": True}, None, "float16"),
    ({"bf16": "auto"}, {"dtype": "float16"}, "float16"),  # trained on a GPU without bf16: auto became fp16
    ({"bf16": "auto"}, {"dtype": "float32"}, "bfloat16"),
    ({"bf16": False, "fp16": False}, {"dtype": "bfloat16"}, "float32"),
    ({}, None, "float32"),
])
def test_training_dtype(cfg, model_config, expected):
    assert training_dtype(cfg, model_config)[0] == expected


@pytest.mark.parametrize("recipe_id", ["qwen-domain-zh", "mistral-stories"])
def test_qlora_recipe_merges_into_a_16bit_base(recipe_id):
    recipe = load_recipe(recipe_id)
    assert recipe.vars["adapter"] == "qlora" and recipe.vars["load_in_4bit"] is True
    overrides = merge_overrides(recipe.vars)
    assert overrides["adapter"] == "lora"
    assert overrides["load_in_4bit"] is False and overrides["load_in_8bit"] is False
    assert training_dtype(recipe.vars)[0] in ("bfloat16", "float16")


def test_tolerance_grows_with_rounding():
    assert RELATIVE_TOLERANCE["float32"] < RELATIVE_TOLERANCE["float16"] < RELATIVE_TOLERANCE["bfloat16"]
    assert RELATIVE_TOLERANCE["float32"] <= 1e-3


def test_tolerance_scales_with_the_logits_spread():
    logits = torch.randn(8, 1000, generator=torch.Generator().manual_seed(0))
    assert tolerance_for("bfloat16", [logits * 10], 4) == pytest.approx(10 * tolerance_for("bfloat16", [logits], 4))
    assert tolerance_for("bfloat16", [logits], 4) == pytest.approx(2 * RELATIVE_TOLERANCE["bfloat16"], rel=0.05)


def _checkpoint(folder, dtype=torch.float32, config=None):
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.randn(4, 4, dtype=dtype), "ids": torch.arange(3)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config or {"dtype": str(dtype).removeprefix("torch.")}))
    return folder


def test_cast_checkpoint_halves_an_fp32_base(tmp_path):
    folder = _checkpoint(tmp_path / "m")
    original = load_file(str(folder / "model.safetensors"))
    assert cast_checkpoint(folder, "bfloat16") == ["model.safetensors"]
    cast = load_file(str(folder / "model.safetensors"))
    assert cast["w"].dtype == torch.bfloat16 and cast["ids"].dtype == torch.int64
    assert torch.equal(cast["w"], original["w"].to(torch.bfloat16))
    assert checkpoint_dtypes(folder) == {"BF16": 1, "I64": 1}
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert cast_checkpoint(folder, "bfloat16") == []  # already right: untouched


def test_finish_checkpoint_takes_the_training_tokenizer(tmp_path):
    merged = _checkpoint(tmp_path / "merged")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name, text in {"tokenizer.json": "{}", "tokenizer_config.json": "{}", "chat_template.jinja": "TRAINING"}.items():
        (adapter / name).write_text(text)
    # what Axolotl's merge copied from the base: its own template and files the training tokenizer lacks
    (merged / "chat_template.jinja").write_text("BASE")
    (merged / "vocab.json").write_text("{}")
    result = finish_checkpoint(merged, "float32", adapter)
    assert (merged / "chat_template.jinja").read_text() == "TRAINING"
    assert not (merged / "vocab.json").exists()
    assert result["tensor_dtypes"] == {"F32": 1, "I64": 1}


def test_finish_checkpoint_refuses_a_quantized_merge(tmp_path):
    merged = _checkpoint(tmp_path / "merged", config={"quantization_config": {"quant_method": "bitsandbytes"}})
    with pytest.raises(click.ClickException, match="16-bit"):
        finish_checkpoint(merged, "bfloat16", tmp_path)


def test_golden_prompts_are_the_first_rows_without_their_answers(tmp_path):
    rows = [{"id": i, "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
                                   {"role": "assistant", "content": f"a{i}"}]} for i in range(5)]
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = golden_prompts(test_file, 3)
    assert [p["id"] for p in prompts] == [0, 1, 2]
    assert prompts[1]["messages"] == rows[1]["messages"][:2]


def _logits(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_compare_passes_identical_positions_within_tolerance():
    result = compare([_logits([[2.0, 1.0], [0.0, 3.0]])], [_logits([[2.0, 1.0005], [0.0, 3.0]])], 1e-3)
    assert result["passed"] and result["top1_agreement"] == 1.0 and result["positions_compared"] == 2
    assert result["max_abs_logit_diff"] == pytest.approx(5e-4, abs=1e-6)


def test_compare_fails_on_logits_beyond_tolerance_even_with_the_same_top1():
    result = compare([_logits([[2.0, 1.0]])], [_logits([[2.1, 1.0]])], 1e-3)
    assert not result["passed"] and result["top1_agreement"] == 1.0


def test_compare_fails_on_a_clear_top1_flip_and_says_where():
    result = compare([_logits([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])],
                     [_logits([[2.0, 1.0], [3.0, 0.0], [1.0, 0.0]])], 1e-3)
    prompt = result["prompts"][0]
    assert not result["passed"] and prompt["top1_flips"] == [1] and prompt["unexplained_flips"] == [1]
    assert prompt["reference_top2_margin_at_flips"] == [3.0]


def test_a_near_tie_passes_and_does_not_hide_the_positions_after_it():
    # Teacher forcing: a swap of two logits closer than the tolerance changes one position, nothing after it.
    ref = [_logits([[2.0, 1.0], [1.0, 1.0004], [0.0, 5.0]])]
    cand = [_logits([[2.0, 1.0], [1.0004, 1.0], [0.0, 5.0]])]
    result = compare(ref, cand, 1e-3)
    assert result["passed"] and result["near_ties"] == 1 and result["top1_agreement"] == pytest.approx(2 / 3)
    broken_later = [_logits([[2.0, 1.0], [1.0004, 1.0], [0.0, 4.0]])]
    assert not compare(ref, broken_later, 1e-3)["passed"]


def test_model_card_eval_section(tmp_path):
    assert "make eval RECIPE=r" in eval_section(tmp_path, "r")
    (tmp_path / "eval").mkdir()
    metrics = {"split": "test", "n": 60, "bars_passed": True,
               "models": {"tuned": {"metrics": {"json_valid_rate": 0.9833, "fields": {"keyword": 1.0}}}}}
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    section = eval_section(tmp_path, "r")
    assert "| json_valid_rate | 0.9833 |" in section and "| fields.keyword | 1 |" in section
    assert "n=60" in section and "passed: True" in section


def test_publish_replaces_the_previous_merge(tmp_path):
    final, staged = tmp_path / "merged", tmp_path / ".staged"
    final.mkdir()
    (final / "old").write_text("old")
    staged.mkdir()
    (staged / "new").write_text("new")
    publish(staged, final)
    assert sorted(p.name for p in final.iterdir()) == ["new"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_stale_removes_killed_merges_only(tmp_path):
    dead = _dead_pid()
    killed = tmp_path / f"{TEMP_PREFIX}{dead}-x8k2"  # a killed merge: a whole model in its temp folder
    (killed / "merged").mkdir(parents=True)
    (killed / "merged" / "model.safetensors").write_bytes(b"\0" * 4096)
    running = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-a1b2"  # a merge of a live process (this one)
    running.mkdir()
    final = tmp_path / "merged"
    final.mkdir()
    (final / "config.json").write_text("{}")
    aside = tmp_path / f".merged-old-{dead}"  # killed after its successor was in place
    aside.mkdir()
    assert sorted(clean_stale(tmp_path, final)) == sorted([killed, aside])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["merged", running.name])
    assert clean_stale(tmp_path, final) == [] and running.is_dir()


def test_clean_stale_puts_back_a_merge_moved_aside_by_a_killed_publish(tmp_path):
    final = tmp_path / "merged"
    aside = tmp_path / f".merged-old-{_dead_pid()}"  # killed between the two renames of publish
    aside.mkdir()
    (aside / "verification.json").write_text('{"verification": {"passed": true}}')
    assert clean_stale(tmp_path, final) == []
    assert (final / "verification.json").exists() and not aside.exists()
