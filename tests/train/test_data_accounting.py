"""`ftr train` accounts for every row before training: conversion counts, rows Axolotl drops for exceeding
sequence_len (run.json + stdout), zero-step runs stopped with the fix, --drop-invalid, val/test never empty from 10
rows on, lint hints that reproduce the errors, and one rule for a typed data.path."""

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ftr import data_accounting as acc
from ftr.converters.recipe_data import convert_recipe_data, lint_command
from ftr.converters.splits import TEST, TRAIN, VAL, assign_splits
from ftr.recipes import load_recipe
from ftr.recipes_cli import load_or_fail

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = json.loads((REPO_ROOT / "data" / "examples" / "rephrase_vi.json").read_text(encoding="utf-8"))


def raw_file(folder: Path, rows, name="raw.json") -> Path:
    path = folder / name
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


# --- zero training steps -------------------------------------------------------------------------------------------

def test_planned_steps():
    assert acc.planned_steps(10, 4, 3, None) == 9  # 3 epochs x ceil(10 / 4)
    assert acc.planned_steps(10, 4, 3, 20) == 20  # max_steps wins while there is a batch
    assert acc.planned_steps(0, 1, 3, 20) == 0


def test_batches_without_packing_drop_the_partial_batch():
    assert acc.batches_per_epoch([100] * 5, sequence_len=512, micro_batch_size=2) == 2
    assert acc.batches_per_epoch([100], sequence_len=512, micro_batch_size=2) == 0
    assert acc.batches_per_epoch([100] * 3, sequence_len=512, micro_batch_size=2, processes=2) == 0


def test_packed_rows_that_fill_one_bin_give_no_batch_of_two():
    lengths = [100] * 4  # one 512-token bin
    assert acc.batches_per_epoch(lengths, sequence_len=512, micro_batch_size=2, packing=True) == 0
    assert acc.batches_per_epoch(lengths, sequence_len=512, micro_batch_size=1, packing=True) == 1
    # flash attention packs micro_batch_size x sequence_len tokens into one batch
    assert acc.batches_per_epoch(lengths, sequence_len=512, micro_batch_size=2, packing=True,
                                 position_id_packing=True) == 1
    assert acc.batches_per_epoch([300] * 8, sequence_len=512, micro_batch_size=2, packing=True) == 4


def test_zero_step_plan_names_the_override_that_fixes_it():
    cfg = {"sequence_len": 512, "micro_batch_size": 2, "gradient_accumulation_steps": 1, "num_epochs": 1,
           "max_steps": 20, "sample_packing": True, "attn_implementation": "sdpa"}
    plan = acc.step_plan(cfg, [100] * 4)
    assert plan["estimated"] == 0 and plan["fix"] == "--set micro_batch_size=1"
    message = acc.zero_steps_message("tiny-rephrase", plan)
    assert "0 steps" in message and "4 train rows" in message and "--set micro_batch_size=1" in message
    assert acc.step_plan(cfg, [100] * 12)["estimated"] == 20
    assert acc.step_plan({**cfg, "attn_implementation": "flash_attention_2"}, [100] * 4)["estimated"] == 20


def test_over_long_rows_are_listed_by_split_and_id():
    long_rows = acc.over_long({"train": [(0, 10), (3, 600), (5, 513)], "val": [(7, 900)]}, 512)
    assert long_rows["count"] == 3 and long_rows["ids"] == {"train": [3, 5], "val": [7]}
    assert "512" in long_rows["reason"] and "drops" in long_rows["reason"]
    assert "truncates" in acc.over_long({"train": [(1, 600)]}, 512, "truncate")["reason"]


# --- splits --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [10, 11, 15, 29])
def test_val_and_test_get_a_row_from_ten_rows_on(n):
    for labels in ([str(i) for i in range(n)], ["all"] * n, ["a", "b"] * (n // 2) + ["c"] * (n % 2)):
        assignment = assign_splits(labels)
        assert assignment.count(VAL) >= 1 and assignment.count(TEST) >= 1 and assignment.count(TRAIN) >= n // 2
        assert assignment == assign_splits(labels)  # still deterministic


def test_below_ten_rows_or_a_zero_share_may_stay_empty():
    assert assign_splits([str(i) for i in range(9)]).count(VAL) == 0
    assert assign_splits([str(i) for i in range(20)], (0.9, 0.1, 0.0)).count(TEST) == 0


def test_an_empty_test_split_is_said(tmp_path, capsys):
    recipe = load_recipe("tiny-rephrase", {"data.path": str(raw_file(tmp_path, SHIPPED[:6]))})
    recipe.data["split"] = [0.5, 0.5, 0.0]
    manifest = convert_recipe_data(recipe, tmp_path / "data")
    assert manifest["outputs"]["test"]["rows"] == 0
    assert "the test split is empty (6 rows kept" in capsys.readouterr().err
    recipe = load_recipe("tiny-rephrase", {"data.path": str(raw_file(tmp_path, SHIPPED[:12], "twelve.json"))})
    manifest = convert_recipe_data(recipe, tmp_path / "data12")
    assert manifest["outputs"]["val"]["rows"] >= 1 and manifest["outputs"]["test"]["rows"] >= 1
    assert "the test split is empty" not in capsys.readouterr().err


# --- --drop-invalid and the lint hint ------------------------------------------------------------------------------

def broken_rows():
    rows = [dict(row) for row in SHIPPED[:20]]
    for i in (3, 11):
        del rows[i]["keyword"]
    return rows


def test_failed_conversion_hints_the_lint_command_that_reproduces_it(tmp_path, cli):
    path = raw_file(tmp_path, broken_rows())
    recipe = load_or_fail("tiny-rephrase", [f"data.path={path}", "lora_r=4"])
    command = f"ftr lint --recipe tiny-rephrase --set data.path={path} --set lora_r=4"
    assert lint_command(recipe) == command
    with pytest.raises(click.ClickException) as caught:
        convert_recipe_data(recipe, tmp_path / "data")
    message = caught.value.message
    assert f"`{command}` lists every problem" in message
    assert f"`ftr train tiny-rephrase --set data.path={path} --set lora_r=4 --drop-invalid`" in message
    errors = [line for line in message.splitlines() if ": error: " in line]
    assert len(errors) == 2
    linted = cli(command.split()[1:])
    assert linted.exit_code == 1 and [line for line in linted.stdout.splitlines() if ": error: " in line] == errors


def test_drop_invalid_in_the_recipe_keeps_going(tmp_path):
    path = raw_file(tmp_path, broken_rows())
    manifest = convert_recipe_data(load_or_fail("tiny-rephrase", [f"data.path={path}", "data.drop_invalid=true"]),
                                   tmp_path / "data")
    assert manifest["kept"] == 18 and len(manifest["rejected"]) == 2
    summary = acc.conversion_summary(manifest)
    assert summary["rejected"] == 2 and summary["records"] == 20 and list(summary["rejected_by_class"]) != ["unknown"]


def test_train_has_drop_invalid(cli):
    assert "--drop-invalid" in cli(["train", "--help"]).stdout


# --- paths and make ------------------------------------------------------------------------------------------------

def test_a_typed_data_path_is_relative_to_the_current_folder(tmp_path, monkeypatch, cli):
    raw_file(tmp_path, SHIPPED[:12], "mine.json")
    monkeypatch.chdir(tmp_path)
    assert load_or_fail("tiny-rephrase", ["data.path=mine.json"]).data_path == tmp_path / "mine.json"
    assert load_recipe("tiny-rephrase").data_path == REPO_ROOT / "data" / "examples" / "rephrase_vi.json"
    linted = cli(["lint", "--recipe", "tiny-rephrase", "--set", "data.path=mine.json"], cwd=tmp_path)
    assert linted.exit_code == 0 and "summary: 12 records" in linted.stdout


def test_make_lint_passes_set():
    proc = subprocess.run(["make", "-n", "lint", "RECIPE=tiny-rephrase", "SET=data.path=mine.json"], cwd=REPO_ROOT,
                          capture_output=True, text=True, check=True)
    assert 'ftr lint --recipe tiny-rephrase --sets "$FTR_SET"' in proc.stdout


def test_tiny_recipes_are_capped():
    for recipe_id in ("tiny-stories", "tiny-rephrase"):
        assert 0 < load_recipe(recipe_id).vars["max_steps"] <= 60


# --- end to end ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_reports_rows_axolotl_drops(tmp_path):
    """One real `ftr train` (own build tree): two rows over 512 tokens are counted, listed by id and printed."""
    rows = [dict(row) for row in SHIPPED[:40]]
    for i in (5, 17):
        rows[i]["reasoning"] = "Khách cần sữa. " * 120  # ~1,800 characters: under the character cap, > 512 tokens
    path = raw_file(tmp_path, rows)
    env = dict(os.environ, FTR_BUILD=str(tmp_path / "build"), AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "-m", "ftr.cli", "train", "tiny-rephrase", "--set", f"data.path={path}",
                           "--set", "max_steps=2", "--set", "evals_per_epoch=null"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    current = tmp_path / "build" / "tiny-rephrase" / "current"
    run = json.loads((current / "run.json").read_text())
    seen = {split: {json.loads(line)["id"] for line in open(current / "data" / f"{split}.jsonl")}
            for split in ("train", "val")}
    expected = {split: sorted(ids & {5, 17}) for split, ids in seen.items()}
    dropped = run["data"]["dropped_by_axolotl"]
    assert dropped["ids"] == expected and dropped["count"] == sum(map(len, expected.values())) > 0
    assert run["data"]["kept"] == 40 and run["data"]["rejected"] == 0 and run["steps_plan"]["estimated"] == 2
    assert f"Axolotl drops {dropped['count']} rows over sequence_len 512" in proc.stdout
    assert "40 records -> 40 rows kept (0 of them repaired), 0 rejected" in proc.stdout and "steps: about 2" in proc.stdout


def test_zero_steps_stop_before_preprocessing(tmp_path):
    """Too few packed rows for micro_batch_size 16: stopped with the override, run.json says failed, no prep."""
    path = raw_file(tmp_path, SHIPPED[:12])
    env = dict(os.environ, FTR_BUILD=str(tmp_path / "build"), AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, "-m", "ftr.cli", "train", "tiny-rephrase", "--set", f"data.path={path}",
                           "--set", "micro_batch_size=16"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "training would take 0 steps" in proc.stderr and "--set micro_batch_size=1" in proc.stderr
    (folder,) = (tmp_path / "build" / "tiny-rephrase" / "runs").iterdir()
    run = json.loads((folder / "run.json").read_text())
    assert run["status"] == "failed" and run["steps_plan"]["estimated"] == 0
    assert not (folder / "logs" / "preprocess.log").exists()
