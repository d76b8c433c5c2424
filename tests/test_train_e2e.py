"""The README's main command, end to end: `ftr train tiny-rephrase` saves a LoRA adapter and the loss falls."""

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow


def test_adapter_files_saved(trained_tiny_rephrase):
    adapter = trained_tiny_rephrase / "adapter"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (adapter / name).is_file(), f"missing {name} in {adapter}"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 16
    # all linear projections of the Qwen2 block carry LoRA weights
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(config["target_modules"])


def test_loss_goes_down(trained_tiny_rephrase):
    from ftr.train import loss_history

    losses = [row["loss"] for row in loss_history(trained_tiny_rephrase / "adapter") if "loss" in row]
    assert len(losses) >= 10
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.05, f"loss did not fall: first {losses[:3]}, last {losses[-3:]}"


def test_everything_stays_under_the_run_dir(trained_tiny_rephrase):
    run = trained_tiny_rephrase
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["recipe"] == "tiny-rephrase" and manifest["versions"]["axolotl"] == "0.19.0"
    assert set(manifest["timings_s"]) == {"convert", "preprocess", "train"}
    config = yaml.safe_load((run / "axolotl.yaml").read_text())
    for key in ("output_dir", "dataset_prepared_path"):
        assert str(run) in config[key]
    assert Path(config["datasets"][0]["path"]).resolve() == (run / "data" / "train.jsonl").resolve()
    assert (run / "logs" / "train.log").is_file() and (run / "logs" / "preprocess.log").is_file()
    split_rows = sum(1 for split in ("train", "val", "test") for _ in open(run / "data" / f"{split}.jsonl"))
    assert split_rows == 600


def test_tiny_stories_small_data_just_works(ftr, build_root):
    """24 story rows: a 2-3 row eval split, no packing, Mistral template -- trains without any tuning."""
    ftr(["train", "tiny-stories"])
    run = build_root / "tiny-stories"
    counts = {split: sum(1 for _ in open(run / "data" / f"{split}.jsonl")) for split in ("train", "val", "test")}
    assert sum(counts.values()) == 24 and counts["val"] >= 1 and counts["test"] >= 1
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["loss"]["last"] < manifest["loss"]["first"]
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
