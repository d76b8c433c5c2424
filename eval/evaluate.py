"""`ftr eval`'s pipeline: a trained run's split -> batched greedy answers -> scores + perplexity -> files under eval/.

The run decides what is evaluated: its base model, dtype and chat template (generation.load), its split, and its
training rows, which the scored rows must not include (overlap.check). Everything is written into a temp folder
beside the eval folder and moved in only when complete, metrics.json last (staging.commit_files): a killed eval
leaves the previous report as it was, and a metrics.json present always describes the files beside it.
Files: predictions.jsonl (and predictions.base.jsonl with --base), metrics.json, report.md and PNGs in
build/<id>/eval/ (or outdir).
"""

import gc
import json
import shutil
import time
from pathlib import Path

import click

from ftr import tasks
from ftr.eval import generation, overlap, report, staging
from ftr.eval.rows import read_references, reference_answers, split_chat, write_jsonl
from ftr.inference import Run
from ftr.paths import resolve

TEMP_PREFIX = ".eval-"
METRICS = "metrics.json"
# Every file an eval may write; a new eval removes those it does not rewrite. judge.json graded the previous
# predictions, so it goes too.
OUTPUTS = ("predictions.jsonl", "predictions.base.jsonl", "report.md", "loss_curves.png", "confusion_tuned.png",
           "confusion_base.png", "judge.json", "judge.failed.json", METRICS)


def split_rows(recipe, run: Run, split: str, limit: int | None) -> list[dict]:
    """The converted rows of the run's `split` (converting the recipe's data first if the run has none yet)."""
    data_dir = overlap.run_files(run) / "data"
    path = data_dir / f"{split}.jsonl"
    if not path.exists():
        from ftr.converters.recipe_data import convert_recipe_data

        convert_recipe_data(recipe, data_dir)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such split (known: train, val, test)")
    rows = read_references(path)
    return rows[:limit] if limit else rows


def run_model(loaded, rows: list[dict], task, batch_size: int | None, max_new_tokens: int | None,
              progress: bool = True, static_cache: bool = False) -> tuple[list[str], dict]:
    """Generate answers for rows, score them and measure perplexity; (predictions, {metrics, timings}).
    batch_size None: as many rows per batch as the GPU memory holds (generation.batch_size_for);
    max_new_tokens None: from the rows' reference answers (generation.max_new_tokens_for)."""
    prompts = [generation.prompt_text(loaded.tokenizer, row) for row in rows]
    max_new_tokens = max_new_tokens or generation.max_new_tokens_for(loaded.tokenizer, reference_answers(rows))
    lengths = generation.prompt_lengths(loaded.tokenizer, prompts) if loaded.backend == "transformers" else None
    batch_size = batch_size or generation.batch_size_for(loaded, prompts, max_new_tokens, lengths=lengths)
    loaded.timings_s["batch_size"] = batch_size
    start = time.monotonic()
    predictions = generation.generate(loaded, prompts, batch_size, max_new_tokens, progress, static_cache, lengths)
    loaded.timings_s["generate"] = round(time.monotonic() - start, 2)
    metrics = tasks.score(task.NAME, reference_answers(rows), predictions)
    start = time.monotonic()
    metrics["perplexity"] = generation.perplexity(loaded, rows, batch_size=min(batch_size, 32))
    loaded.timings_s["perplexity"] = round(time.monotonic() - start, 2)
    return predictions, {"source": loaded.source, "timings_s": loaded.timings_s, "max_new_tokens": max_new_tokens,
                         "generated_tokens": loaded.generated_tokens, "rows_at_cap": loaded.rows_at_cap,
                         "metrics": metrics}


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def base_model_note(recipe, run: Run) -> str | None:
    """A note when the recipe's base_model (with --set) is no longer the one the run trained on."""
    if not run.axolotl_yaml.exists():
        return None
    trained, local = run.base_model(), resolve(recipe.base_model)
    if recipe.base_model == trained or (local.exists() and local.resolve() == Path(trained).resolve()):
        return None
    now = local if local.exists() else recipe.base_model
    return (f"note: the recipe's base_model is now {now}, but this run trained on {trained}; evaluating with "
            f"the run's ({run.axolotl_yaml})")


def evaluate(recipe, *, adapter: Path | None = None, model_dir: Path | None = None, split: str = "test",
             limit: int | None = None, batch_size: int | None = None, max_new_tokens: int | None = None,
             base: bool = False, backend: str = "auto", outdir: Path | None = None, command: str = "",
             progress: bool = True, static_cache: bool = False, allow_overlap: bool = False) -> dict:
    """Evaluate the run's tuned model (and with base=True its base model too); returns metrics.json's content.
    Raises overlap.OverlapError before loading any model when the split overlaps the training rows."""
    run = Run.of(recipe.id)
    outdir = outdir or run.dir / "eval"
    note = base_model_note(recipe, run)
    if note:
        click.echo(note, err=True)
    rows = split_rows(recipe, run, split, limit)
    checked = overlap.check(run, rows, split, allow=allow_overlap)
    if checked.get("warning"):
        click.echo(f"WARNING (--allow-overlap): {checked['warning']}", err=True)
    staging.remove_dead(outdir.parent, TEMP_PREFIX)
    staged = staging.temp_dir(outdir.parent, TEMP_PREFIX)
    try:
        result, removed = _evaluate_into(staged, outdir, recipe, run, rows, checked, adapter=adapter,
                                         model_dir=model_dir, split=split, batch_size=batch_size,
                                         max_new_tokens=max_new_tokens, base=base, backend=backend,
                                         command=command, progress=progress, static_cache=static_cache)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    if removed:
        click.echo(f"removed from {outdir}, as it described an earlier eval: {', '.join(removed)}", err=True)
    return result


def _evaluate_into(staged: Path, outdir: Path, recipe, run: Run, rows: list[dict], checked: dict, *, adapter,
                   model_dir, split, batch_size, max_new_tokens, base, backend, command, progress, static_cache
                   ) -> tuple[dict, list[str]]:
    task = tasks.of(recipe)
    models, figures = {}, []
    for name in ("tuned", "base") if base else ("tuned",):
        loaded = generation.load(recipe, adapter=adapter, model_dir=model_dir, base=name == "base", backend=backend,
                                 run=run)
        predictions, models[name] = run_model(loaded, rows, task, batch_size, max_new_tokens, progress,
                                              static_cache)
        del loaded  # before loading the next model: two 7Bs need not fit at once
        _release_memory()
        suffix = "" if name == "tuned" else f".{name}"
        write_jsonl(staged / f"predictions{suffix}.jsonl",
                    [{"id": row.get("id", i), "prediction": p} for i, (row, p) in enumerate(zip(rows, predictions))])
        if name == "tuned":
            examples = [{"id": row.get("id", i), "prompt": split_chat(row)[0][-1]["content"][:200],
                         "reference": split_chat(row)[1][:300], "prediction": p[:300]}
                        for i, (row, p) in enumerate(zip(rows[:3], predictions))]
        if task.CONFUSION:
            figures.append(report.confusion_png(models[name]["metrics"]["confusion"], staged / f"confusion_{name}.png",
                                                f"{task.CONFUSION} ({name})"))
    # The training curves of what was evaluated, else of the run's own (e.g. --model build/<id>/merged).
    states = [report.newest_trainer_state(folder) for folder in (model_dir or adapter, run.adapter)
              if folder is not None and folder.is_dir()]
    state = next((s for s in states if s is not None), None)
    curves = report.loss_curves_png(state, staged / "loss_curves.png")
    figures = ([curves] if curves else []) + figures
    bars = report.check_bars(recipe.bars, models["tuned"]["metrics"])
    measured = [bar["passed"] for bar in bars if bar["passed"] is not None]
    result = {"recipe": recipe.id, "split": split, "task": task.NAME, "n": len(rows), "command": command,
              "run": str(overlap.run_files(run)), "batch_size": batch_size or models["tuned"]["timings_s"]["batch_size"],
              "max_new_tokens": max_new_tokens or models["tuned"]["max_new_tokens"],
              "static_cache": static_cache, "overlap": checked, "models": models, "bars": bars,
              "bars_passed": all(measured) if measured else None, "figures": [p.name for p in figures]}
    (staged / "report.md").write_text(report.markdown(result, figures, examples), encoding="utf-8")
    (staged / METRICS).write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    removed = staging.commit_files(staged, outdir, OUTPUTS, last=METRICS)
    return result, removed
