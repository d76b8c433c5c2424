"""Without a model: the prompt hash the overlap check compares, its verdicts on a run folder, and the dtype eval
takes from the run."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml

from ftr.eval.generation import model_dtype
from ftr.eval.overlap import OverlapError, check, prompt_key


@dataclass
class RunFolder:
    """The part of ftr.inference.Run these functions read: a run folder's paths and its axolotl.yaml."""

    dir: Path

    @property
    def adapter(self) -> Path:
        return self.dir / "adapter"

    @property
    def axolotl_yaml(self) -> Path:
        return self.dir / "axolotl.yaml"

    def axolotl_config(self) -> dict:
        return yaml.safe_load(self.axolotl_yaml.read_text())


def chat(row_id, question, answer="a", system="s"):
    return {"id": row_id, "messages": [{"role": "system", "content": system}, {"role": "user", "content": question},
                                       {"role": "assistant", "content": answer}]}


def make_run(tmp_path, train_rows) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    (run.dir / "data").mkdir(parents=True)
    (run.dir / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train_rows))
    run.adapter.mkdir()
    (run.adapter / "adapter_model.safetensors").write_bytes(b"weights")
    (run.dir / "run.json").write_text(json.dumps({"data": {"rows": {"train": len(train_rows)}}}))
    return run


def test_prompt_key_is_the_prompt_only():
    assert prompt_key(chat(1, "q")) == prompt_key(chat("other", "q", answer="another answer"))
    assert prompt_key(chat(1, "q")) != prompt_key(chat(1, "q", system="another system prompt"))
    assert prompt_key(chat(1, "q")) != prompt_key(chat(1, "q2"))


def test_check_counts_scored_rows_seen_in_training(tmp_path):
    run = make_run(tmp_path, [chat(i, f"train {i}") for i in range(4)])
    clean = check(run, [chat(10, "test 0"), chat(11, "test 1")], "test")
    assert clean == {"checked": True, "train_rows_file": str(run.dir / "data" / "train.jsonl"), "scored_rows": 2,
                     "overlapping": 0, "train_rows": 4, "overlapping_ids": []}
    mixed = [chat(10, "test 0"), chat(20, "train 2", answer="other"), chat(21, "train 3")]
    with pytest.raises(OverlapError, match=r"2 of the 3 test rows to score are training rows .*ids 20, 21"):
        check(run, mixed, "test")
    allowed = check(run, mixed, "test", allow=True)
    assert allowed["overlapping"] == 2 and allowed["allowed"] and "2 of the 3" in allowed["warning"]


def test_check_distrusts_training_rows_written_after_the_adapter(tmp_path):
    run = make_run(tmp_path, [chat(0, "train 0")])
    saved = (run.adapter / "adapter_model.safetensors").stat().st_mtime
    os.utime(run.dir / "data" / "train.jsonl", (saved + 60, saved + 60))
    with pytest.raises(OverlapError, match="written after the adapter"):
        check(run, [chat(1, "test")], "test")
    assert check(run, [chat(1, "test")], "test", allow=True)["checked"] is False


def test_check_distrusts_training_rows_other_than_recorded(tmp_path):
    run = make_run(tmp_path, [chat(0, "train 0"), chat(1, "train 1")])
    (run.dir / "run.json").write_text(json.dumps({"data": {"rows": {"train": 3}}}))
    with pytest.raises(OverlapError, match="holds 2 rows but .* recorded 3 training rows"):
        check(run, [chat(5, "test")], "test")
    (run.dir / "run.json").write_text(json.dumps({"data": {"outputs": {"train": {"sha256": "0" * 64}}}}))
    with pytest.raises(OverlapError, match="sha256 differs"):
        check(run, [chat(5, "test")], "test")


def test_check_without_training_rows_records_why(tmp_path):
    run = RunFolder(tmp_path / "never-trained")
    assert check(run, [chat(1, "q")], "test") == {
        "checked": False, "train_rows_file": str(run.dir / "data" / "train.jsonl"), "scored_rows": 1,
        "overlapping": None, "reason": "no training rows to compare with"}


@pytest.mark.parametrize("flags, bf16_gpu, expected", [
    ({"bf16": True}, True, "bfloat16"),
    ({"bf16": "auto"}, True, "bfloat16"),
    ({"bf16": True}, False, "float16"),  # a GPU without bf16
    ({"bf16": False, "fp16": True}, True, "float16"),
    ({"bf16": False, "fp16": False}, True, "float32"),
])
def test_eval_dtype_is_the_runs_training_dtype(tmp_path, monkeypatch, flags, bf16_gpu, expected):
    run = RunFolder(tmp_path)
    run.axolotl_yaml.write_text(yaml.safe_dump({"base_model": "b", **flags}))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    assert model_dtype(run, "cuda")[0] == expected
    name, reason = model_dtype(run, "cpu")
    assert name == "float32" and reason.startswith("fp32 on CPU")
