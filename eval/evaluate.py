"""`ftr eval`'s pipeline: a recipe's split -> batched greedy answers -> scores + perplexity -> files under eval/.

Writes predictions.jsonl (and predictions.base.jsonl with --base), metrics.json, report.md and PNGs into
build/<id>/eval/ (or outdir).
"""

import gc
import json
import time
from pathlib import Path

from ftr.eval import generation, report
from ftr.eval.metrics import score, task_for
from ftr.eval.rows import read_references, reference_answers, split_chat, write_jsonl
from ftr.paths import run_dir


def split_rows(recipe, split: str, limit: int | None) -> list[dict]:
    """The converted rows of `split` (converting the recipe's data first if this run has none yet)."""
    data_dir = run_dir(recipe.id) / "data"
    path = data_dir / f"{split}.jsonl"
    if not path.exists():
        from ftr.train import convert_data

        convert_data(recipe, data_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such split (known: train, val, test)")
    rows = read_references(path)
    return rows[:limit] if limit else rows


def default_batch_size() -> int:
    # 100 test rows in one batch on a GPU (a 7B's KV cache for them is a few GiB); small batches on CPU.
    return 128 if generation.device() == "cuda" else 8


def run_model(loaded, rows: list[dict], task: str, batch_size: int, max_new_tokens: int, progress: bool = True,
              static_cache: bool = False) -> tuple[list[str], dict]:
    """Generate answers for rows, score them and measure perplexity; (predictions, {metrics, timings})."""
    prompts = [generation.prompt_text(loaded.tokenizer, row) for row in rows]
    start = time.monotonic()
    predictions = generation.generate(loaded, prompts, batch_size, max_new_tokens, progress, static_cache)
    loaded.timings_s["generate"] = round(time.monotonic() - start, 2)
    metrics = score(task, reference_answers(rows), predictions)
    start = time.monotonic()
    metrics["perplexity"] = generation.perplexity(loaded, rows, batch_size=min(batch_size, 32))
    loaded.timings_s["perplexity"] = round(time.monotonic() - start, 2)
    return predictions, {"source": loaded.source, "timings_s": loaded.timings_s,
                         "generated_tokens": loaded.generated_tokens, "metrics": metrics}


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def evaluate(recipe, *, adapter: Path | None = None, model_dir: Path | None = None, split: str = "test",
             limit: int | None = None, batch_size: int | None = None, max_new_tokens: int = 256,
             base: bool = False, backend: str = "auto", outdir: Path | None = None, command: str = "",
             progress: bool = True, static_cache: bool = False) -> dict:
    """Evaluate the recipe's tuned model (and with base=True its base model too); returns metrics.json's content."""
    outdir = outdir or run_dir(recipe.id) / "eval"
    outdir.mkdir(parents=True, exist_ok=True)
    for stale in ("predictions.base.jsonl", "confusion_base.png", "loss_curves.png"):  # this run may not rewrite them
        (outdir / stale).unlink(missing_ok=True)
    rows = split_rows(recipe, split, limit)
    task = task_for(recipe.data_format)
    batch_size = batch_size or default_batch_size()
    models, figures = {}, []
    for name in ("tuned", "base") if base else ("tuned",):
        loaded = generation.load(recipe, adapter=adapter, model_dir=model_dir, base=name == "base", backend=backend)
        predictions, models[name] = run_model(loaded, rows, task, batch_size, max_new_tokens, progress,
                                              static_cache)
        del loaded  # before loading the next model: two 7Bs need not fit at once
        _release_memory()
        suffix = "" if name == "tuned" else f".{name}"
        write_jsonl(outdir / f"predictions{suffix}.jsonl",
                    [{"id": row.get("id", i), "prediction": p} for i, (row, p) in enumerate(zip(rows, predictions))])
        if name == "tuned":
            examples = [{"id": row.get("id", i), "prompt": split_chat(row)[0][-1]["content"][:200],
                         "reference": split_chat(row)[1][:300], "prediction": p[:300]}
                        for i, (row, p) in enumerate(zip(rows[:3], predictions))]
        if task == "rephrase":
            figures.append(report.confusion_png(models[name]["metrics"]["confusion"], outdir / f"confusion_{name}.png",
                                                f"is_in_scope ({name})"))
    # The training curves of what was evaluated, else of the recipe's own run (e.g. --model build/<id>/merged).
    states = [report.newest_trainer_state(folder) for folder in (model_dir or adapter, run_dir(recipe.id) / "adapter")
              if folder is not None and folder.is_dir()]
    state = next((s for s in states if s is not None), None)
    curves = report.loss_curves_png(state, outdir / "loss_curves.png")
    figures = ([curves] if curves else []) + figures
    bars = report.check_bars(recipe.bars, models["tuned"]["metrics"])
    measured = [bar["passed"] for bar in bars if bar["passed"] is not None]
    result = {"recipe": recipe.id, "split": split, "task": task, "n": len(rows), "command": command,
              "batch_size": batch_size, "max_new_tokens": max_new_tokens, "static_cache": static_cache,
              "models": models, "bars": bars,
              "bars_passed": all(measured) if measured else None, "figures": [p.name for p in figures]}
    (outdir / "metrics.json").write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    (outdir / "report.md").write_text(report.markdown(result, figures, examples), encoding="utf-8")
    return result
