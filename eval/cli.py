"""`ftr score`, `ftr eval` and `ftr judge`: thin click verbs over ftr.eval's modules (imported inside them)."""

import json
import os
from pathlib import Path

import click

from ftr import tasks
from ftr.recipes_cli import load_or_fail, set_option
from ftr.tasks import ALIASES, TASKS


def _summary(metrics: dict) -> list[str]:
    """Human-readable lines for a score dict (the headline numbers; --json prints everything)."""
    from ftr.eval.report import flatten

    return [f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}"
            for key, value in flatten(metrics).items()]


@click.command("score")
@click.option("--task", type=click.Choice([*TASKS, *ALIASES]), required=True,
              help="rephrase: JSON validity, fields, is_in_scope per class; chat (or text): BLEU, chrF, exact match.")
@click.option("--refs", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Chat rows JSONL; the reference is each row's last assistant message.")
@click.option("--preds", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help='JSONL of {"id", "prediction"}, matched by id (else by order).')
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score(task, refs, preds, as_json):
    """Score prediction files against references (no model needed)."""
    from ftr.eval.rows import RowsError, pair, read_predictions, read_references, reference_answers

    try:
        references, predictions, _ = pair(read_references(refs), read_predictions(preds))
        metrics = tasks.score(task, reference_answers(references), predictions)
    except (RowsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(metrics, ensure_ascii=False) if as_json else "\n".join(_summary(metrics)))


@click.command("eval")
@click.argument("recipe_id")
@click.option("--adapter", type=click.Path(file_okay=False, path_type=Path),
              help="PEFT adapter (or full fine-tune) folder. Default: build/RECIPE_ID/adapter.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path),
              help="A whole model folder (e.g. merged) instead of base + adapter.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--limit", type=int, help="Only the first N rows of the split.")
@click.option("--batch-size", type=int, help="Rows per generation batch. Default: as many as the GPU memory free holds (all rows when they fit), 8 on CPU.")
@click.option("--max-new-tokens", type=int,
              help="Generation budget per answer. Default: 1.5x the split's longest reference answer + 16 tokens "
                   "(answers that reach it are counted as rows_at_cap in metrics.json).")
@click.option("--base", is_flag=True, help="Also evaluate the base model; report.md shows base vs tuned.")
@click.option("--backend", default="auto", show_default=True, type=click.Choice(["auto", "transformers", "vllm"]),
              help="auto: vLLM when installed and a GPU is present, else transformers.")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Where the report goes. Default: build/RECIPE_ID/eval.")
@click.option("--static-cache", is_flag=True,
              help="GPU: static KV cache + torch.compile; faster steps, about a minute of compiling for a 7B.")
@click.option("--check-bars", is_flag=True, help="Exit 1 when a recipe bar fails.")
@click.option("--allow-overlap", is_flag=True,
              help="Score the split even when it holds rows the adapter trained on (or its training rows cannot be "
                   "told); warns, and metrics.json records the overlap.")
@set_option
def eval_cmd(recipe_id, adapter, model_dir, split, limit, batch_size, max_new_tokens, base, backend, outdir,
             static_cache, check_bars, allow_overlap, sets):
    """Batched greedy generation on a split of the trained run, then score, perplexity and report.

    Base model, dtype and chat template are the run's (build/RECIPE_ID/axolotl.yaml and the adapter's tokenizer),
    as for merge and serve; --set changes bars and data settings, not the model trained."""
    from ftr.eval.evaluate import evaluate
    from ftr.eval.overlap import OverlapError
    from ftr.recipes import invocation
    from ftr.inference import Run, RunError

    if adapter and model_dir:
        raise click.UsageError("pass --adapter or --model, not both")
    recipe = load_or_fail(recipe_id, sets)
    try:
        result = evaluate(recipe, adapter=adapter, model_dir=model_dir, split=split, limit=limit,
                          batch_size=batch_size, max_new_tokens=max_new_tokens, base=base, backend=backend,
                          outdir=outdir, command=invocation(), static_cache=static_cache, allow_overlap=allow_overlap)
    except (FileNotFoundError, OverlapError, RunError) as exc:
        raise click.ClickException(str(exc)) from None
    for name, model in result["models"].items():
        metrics = model["metrics"]
        headline = (*tasks.of(recipe).HEADLINE, tasks.PERPLEXITY)
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in headline if isinstance(metrics.get(k), float))
        click.echo(f"{name}: {shown} ({model['timings_s']['generate']} s to generate {result['n']} rows, "
                   f"max_new_tokens {model['max_new_tokens']}, {model['rows_at_cap']} cut off there)")
    for bar in result["bars"]:
        verdict = {True: "PASS", False: "FAIL", None: "not measured"}[bar["passed"]]
        value = "–" if bar["value"] is None else f"{bar['value']:.4f}"
        click.echo(f"bar {bar['bar']} {'<=' if bar['kind'] == 'max' else '>='} {bar['threshold']}: {value} {verdict}")
    click.echo(f"report: {(outdir or Run.of(recipe_id).dir / 'eval') / 'report.md'}")
    if check_bars and result["bars_passed"] is False:
        raise SystemExit(1)


@click.command("judge")
@click.argument("recipe_id")
@click.option("--url", required=True, help="Base URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000.")
@click.option("--model", "model_name", required=True, help="The judge model's name on that server.")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the API key (sent as Bearer).")
@click.option("--limit", type=int, help="Judge only the first N predictions.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]),
              help="The split the predictions were generated on.")
@click.option("--concurrency", default=4, show_default=True, type=int, help="Requests in flight at once.")
@click.option("--timeout", default=120.0, show_default=True, type=float, help="Seconds per request.")
@click.option("--max-tokens", type=int, help="Cap on the judge's reply length (default: the server's).")
@click.option("--max-failures", "max_failure_rate", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Largest fraction of rows whose judgement may fail for the result to replace judge.json.")
@click.option("-o", "--outdir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder holding predictions.jsonl; judge.json is written there. Default: build/RECIPE_ID/eval.")
def judge(recipe_id, url, model_name, api_key_env, limit, split, concurrency, timeout, max_tokens, max_failure_rate,
          outdir):
    """LLM-as-judge (seed 004's rubric) of build/RECIPE_ID/eval/predictions.jsonl against the references.

    judge.json is replaced (atomically) only by a result with at most --max-failures of its rows failed; otherwise
    the command exits 1, the previous judge.json stays as it was and the attempt goes to judge.failed.json."""
    import hashlib

    from ftr.eval.judge import Judge, judge_rows, rejection
    from ftr.eval.overlap import run_files
    from ftr.eval.report import check_bars
    from ftr.eval.rows import RowsError, pair, read_predictions, read_references, split_chat
    from ftr.eval.staging import write_atomic
    from ftr.inference import Run

    recipe = load_or_fail(recipe_id)
    run = Run.of(recipe_id)
    outdir = outdir or run.dir / "eval"
    preds_path, refs_path = outdir / "predictions.jsonl", run_files(run) / "data" / f"{split}.jsonl"
    for path in (preds_path, refs_path):
        if not path.exists():
            raise click.ClickException(f"{path} not found; run `ftr eval {recipe_id}` first")
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise click.ClickException(f"environment variable {api_key_env} is not set")
    try:
        references, predictions, ids = pair(read_references(refs_path), read_predictions(preds_path),
                                            allow_missing=True)
    except RowsError as exc:
        raise click.ClickException(str(exc)) from None
    items = []
    for row, prediction, row_id in list(zip(references, predictions, ids))[:limit]:
        prompt, reference = split_chat(row)
        question = next((m["content"] for m in reversed(prompt) if m.get("role") == "user"), "")
        items.append({"id": row_id, "question": question, "reference": reference, "prediction": prediction})
    grader = Judge(url, model_name, api_key, timeout, max_tokens)
    try:
        result = judge_rows(grader, items, concurrency)
    finally:
        grader.close()
    judge_bars = {k: v for k, v in recipe.bars.items() if k.startswith("judge.")}
    with open(preds_path, "rb") as fh:
        predictions_sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
    result = {"recipe": recipe_id, "url": grader.url, "model": model_name, "predictions": str(preds_path),
              "predictions_sha256": predictions_sha256, **result,
              "failed_ids": [row["id"] for row in result["rows"] if row["scores"] is None],
              "max_failure_rate": max_failure_rate,
              "bars": check_bars(judge_bars, {"judge": result["averages"] or {}})}
    averages = result["averages"]
    click.echo(f"judged {result['judged']}/{result['n']} rows ({result['failures']} failures, {result['retried']} "
               f"retried)" + (": " + ", ".join(f"{k} {v:.2f}" for k, v in averages.items()) if averages else ""))
    target, failed = outdir / "judge.json", outdir / "judge.failed.json"
    problem = rejection(result, max_failure_rate)
    payload = json.dumps(result, indent=2, ensure_ascii=False)
    if problem:
        write_atomic(failed, payload)
        kept = f"{target} left as it was" if target.exists() else f"no {target.name} written"
        raise click.ClickException(f"{problem}: {kept}; this attempt is in {failed}")
    write_atomic(target, payload)
    failed.unlink(missing_ok=True)
    if result["failures"]:
        shown = ", ".join(map(str, result["failed_ids"][:20])) + (" ..." if result["failures"] > 20 else "")
        click.echo(f"warning: {result['failures']} of {result['n']} rows were not judged (ids {shown}); the "
                   f"averages cover the other {result['judged']}; judge.json lists each failure", err=True)
    for bar in result["bars"]:
        click.echo(f"bar {bar['bar']} >= {bar['threshold']}: "
                   f"{'not measured' if bar['passed'] is None else ('PASS' if bar['passed'] else 'FAIL')}")
    click.echo(f"wrote {target}")
