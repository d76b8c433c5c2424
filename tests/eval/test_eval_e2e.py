"""`ftr eval` on the session's tiny trained adapter, perplexity against transformers' own loss, and the bench."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftr.eval import generation
from ftr.eval.rows import read_references
from ftr.recipes import load_recipe

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def ftr(build: Path, *args, module="ftr.cli"):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, FTR_BUILD=str(build)), timeout=600)


@pytest.fixture(scope="module")
def evaluated(trained_tiny_rephrase):
    """The run after `ftr eval tiny-rephrase --base --check-bars` on its first 4 test rows."""
    proc = ftr(trained_tiny_rephrase.parent, "eval", "tiny-rephrase", "--limit", 4, "--batch-size", 3,
               "--max-new-tokens", 16, "--base", "--check-bars")
    return trained_tiny_rephrase, proc


def test_eval_writes_predictions_metrics_report_and_figures(evaluated):
    run, proc = evaluated
    out = run / "eval"
    metrics = json.loads((out / "metrics.json").read_text())
    # --check-bars: exit 1 exactly when a bar failed (a 20-step tiny model fails them)
    assert proc.returncode == (1 if metrics["bars_passed"] is False else 0), proc.stderr[-3000:]
    test_ids = [row["id"] for row in read_references(run / "data" / "test.jsonl")[:4]]
    for name in ("predictions.jsonl", "predictions.base.jsonl"):
        rows = [json.loads(line) for line in (out / name).open()]
        assert [row["id"] for row in rows] == test_ids and all(isinstance(r["prediction"], str) for r in rows)
    assert metrics["n"] == 4 and metrics["task"] == "rephrase" and set(metrics["models"]) == {"tuned", "base"}
    overlap = metrics["overlap"]  # none of the scored test rows is a training row
    assert overlap["checked"] and (overlap["scored_rows"], overlap["overlapping"]) == (4, 0)
    assert not list(run.glob(".eval-*"))  # the staging folder went once the outputs were in place
    tuned, base = metrics["models"]["tuned"], metrics["models"]["base"]
    assert tuned["source"]["adapter"].endswith("adapter") and base["source"]["adapter"] is None
    assert tuned["source"]["dtype"] == "float32" and tuned["source"]["backend"] == "transformers"
    assert 1 < tuned["metrics"]["perplexity"] < math.inf and tuned["metrics"]["per_class"]["true"]["support"] > 0
    assert 0 < tuned["generated_tokens"] <= 4 * 16
    assert [bar["bar"] for bar in metrics["bars"]] == ["json_valid_rate", "field_completeness",
                                                       "per_class.true.recall", "per_class.false.recall"]
    assert metrics["bars"][0]["value"] == tuned["metrics"]["json_valid_rate"]
    report = (out / "report.md").read_text()
    assert "| metric | tuned | base |" in report and "| json_valid_rate | >= 0.95 |" in report
    for png in ("loss_curves.png", "confusion_tuned.png", "confusion_base.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"({png})" in report
    assert "bar json_valid_rate >= 0.95:" in proc.stdout and "report:" in proc.stdout


def test_score_cli_agrees_with_eval(evaluated, tmp_path):
    run, _ = evaluated
    refs = tmp_path / "refs.jsonl"
    refs.write_text("".join((run / "data" / "test.jsonl").read_text().splitlines(keepends=True)[:4]))
    proc = ftr(run.parent, "score", "--task", "rephrase", "--refs", refs, "--preds", run / "eval" / "predictions.jsonl",
               "--json")
    assert proc.returncode == 0, proc.stderr
    tuned = json.loads((run / "eval" / "metrics.json").read_text())["models"]["tuned"]["metrics"]
    assert json.loads(proc.stdout) == {k: v for k, v in tuned.items() if k != "perplexity"}


def test_perplexity_counts_answer_tokens_only_and_ignores_padding(trained_tiny_rephrase):
    import torch

    recipe = load_recipe("tiny-rephrase")
    loaded = generation.load(recipe, adapter=trained_tiny_rephrase / "adapter", backend="transformers")
    rows = read_references(trained_tiny_rephrase / "data" / "test.jsonl")[:3]
    ids, start = generation.answer_tokens(loaded.tokenizer, rows[0])
    assert loaded.tokenizer.decode(ids[start:]) == rows[0]["messages"][-1]["content"] + "<|im_end|>"
    # transformers' own causal-LM loss, one row at a time, with everything but the answer masked
    nll, count = 0.0, 0
    with torch.inference_mode():
        for row in rows:
            ids, start = generation.answer_tokens(loaded.tokenizer, row)
            labels = torch.tensor([[-100] * start + ids[start:]])
            loss = loaded.model(input_ids=torch.tensor([ids]), labels=labels).loss.item()
            nll, count = nll + loss * (len(ids) - start), count + len(ids) - start
    expected = math.exp(nll / count)
    assert generation.perplexity(loaded, rows, batch_size=3) == pytest.approx(expected, rel=1e-4)


def test_bench_smoke_on_cpu(trained_tiny_rephrase, tmp_path):
    recipe = load_recipe("tiny-rephrase")
    model, _ = generation.model_folders(recipe, trained_tiny_rephrase / "adapter", None, base=True)  # its base
    proc = ftr(trained_tiny_rephrase.parent, "--model", model, "--data", trained_tiny_rephrase / "data" / "test.jsonl",
               "--rows", 4, "--seed-rows", 2, "--max-new-tokens", 8, "--seed-max-new-tokens", 8,
               "--recipe", "tiny-rephrase", "--json", tmp_path / "eval-gpu.json", "--markdown", tmp_path / "B.md",
               module="ftr.bench.eval")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval-gpu.json").read_text())
    assert result["rows"] == 4 and result["seed_loop"]["measured_rows"] == 2 and result["seed_loop"]["extrapolated"]
    # speedup comes from unrounded seconds; the stored seconds are rounded to 0.001 s
    assert result["speedup"] == pytest.approx(result["seed_loop"]["seconds"] / result["batched_greedy"]["seconds"],
                                              rel=0.05, abs=0.2)
    assert 0 < result["batched_greedy"]["generated_tokens"] <= 4 * 8
    assert "Speedup: **" in (tmp_path / "B.md").read_text()
