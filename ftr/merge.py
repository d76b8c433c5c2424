"""`ftr merge RECIPE`: fold the run's LoRA adapter into a 16-bit base with Axolotl's merge-lora, then prove the
merged model is the adapter model before it becomes build/<id>/merged.

Steps: Axolotl's merge-lora into a temp folder beside build/<id>/merged (QLoRA runs merge into the 16-bit base,
never into a 4-bit one) -> the training dtype kept (no fp32 doubling), the training tokenizer and a model card
written -> next-token logits of the adapter model and the merged model compared under teacher forcing on golden
prompts (ftr/merge_verify.py) ->
renamed to build/<id>/merged only if they agree. Otherwise exit 1: the adapter stays the deliverable.
The temp folder is named .merge-<pid>-<random>: the next merge removes those whose process is dead (a killed merge
leaves a whole model there), never those of a merge still running.
"""

import json
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from ftr import tasks
from ftr.eval import staging

# Files that make up a tokenizer; the merged folder gets the adapter's (the training ones), not the base's.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model")
FAILED_REPORT = "merge-failed.json"
TEMP_PREFIX = ".merge-"


def merge_overrides(cfg: dict) -> dict:
    """Axolotl config overrides for the merge: a 16-bit base (QLoRA included), no distributed or GPU-only bits."""
    overrides = {"merge_lora": True, "merge_method": "memory_efficient", "load_in_8bit": False,
                 "load_in_4bit": False, "quantize_moe_experts": False, "ple_cpu_offload": False,
                 "attn_implementation": None, "context_parallel_size": None, "deepspeed": None, "fsdp": None,
                 "fsdp_config": None, "lora_mlp_kernel": False, "lora_qkv_kernel": False, "lora_o_kernel": False}
    if cfg.get("adapter") in ("qlora", "lora"):
        # Also what keeps Axolotl from simulating NF4 on the base (it keys that on adapter == qlora).
        overrides["adapter"] = "lora"
    return overrides


@contextmanager
def output_to(log_path: Path):
    """Send everything written to stdout/stderr (Axolotl's logging, tqdm, C extensions) to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _log_tail(log_path: Path, lines: int = 15) -> str:
    if not log_path.exists():
        return ""
    return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])


def run_axolotl_merge(config_yaml: Path, adapter_dir: Path, output_dir: Path, overrides: dict, log_path: Path) -> Path:
    """Axolotl's merge-lora (do_merge_lora, its memory-efficient shard-by-shard merge); returns the merged folder."""
    try:
        with output_to(log_path):
            from axolotl.cli.config import load_cfg
            from axolotl.cli.merge_lora import do_merge_lora

            cfg = load_cfg(str(config_yaml), lora_model_dir=str(adapter_dir), output_dir=str(output_dir), **overrides)
            do_merge_lora(cfg=cfg)
    except Exception as exc:
        raise click.ClickException(f"Axolotl's merge failed: {type(exc).__name__}: {exc}\n"
                                   f"{_log_tail(log_path)}") from None
    merged = output_dir / "merged"
    if not (merged / "config.json").exists():
        raise click.ClickException(f"Axolotl's merge wrote no model into {merged}; see {log_path}")
    return merged


def checkpoint_dtypes(folder: Path) -> dict[str, int]:
    """Floating-point dtypes of the safetensors in folder -> number of tensors (read from headers only)."""
    from safetensors import safe_open

    counts: dict[str, int] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for key in fh.keys():
                dtype = str(fh.get_slice(key).get_dtype())
                counts[dtype] = counts.get(dtype, 0) + 1
    return counts


SAFETENSORS_NAMES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def cast_checkpoint(folder: Path, dtype: str) -> list[str]:
    """Rewrite the floating-point tensors of every shard to dtype (one shard in memory at a time); the shards
    that changed. A base stored in fp32 would otherwise merge into an fp32 model twice the trained size."""
    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype)
    changed = []
    for shard in sorted(folder.glob("*.safetensors")):
        tensors = load_file(str(shard))
        if all(not t.is_floating_point() or t.dtype == target for t in tensors.values()):
            continue
        save_file({k: t.to(target) if t.is_floating_point() else t for k, t in tensors.items()}, str(shard),
                  metadata={"format": "pt"})
        changed.append(shard.name)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config.pop("torch_dtype", None)
    config["dtype"] = dtype
    config_file.write_text(json.dumps(config, indent=2) + "\n")
    return changed


def finish_checkpoint(folder: Path, dtype: str, adapter_dir: Path) -> dict:
    """Keep the training dtype, put the training tokenizer in, and refuse anything quantized."""
    if not list(folder.glob("*.safetensors")):
        raise click.ClickException(f"{folder}: the merge wrote no safetensors")
    config = json.loads((folder / "config.json").read_text())
    if config.get("quantization_config"):
        raise click.ClickException(f"{folder}: the merged model carries a quantization_config "
                                   f"({config['quantization_config'].get('quant_method')}); a merge must be 16-bit")
    cast = cast_checkpoint(folder, dtype)
    found = checkpoint_dtypes(folder)
    wrong = {d: n for d, n in found.items() if d not in (SAFETENSORS_NAMES[dtype], "I64", "I32", "BOOL", "U8")}
    if wrong:
        raise click.ClickException(f"{folder}: tensors not in {dtype}: {wrong}")
    for name in TOKENIZER_FILES:
        (folder / name).unlink(missing_ok=True)
        if (adapter_dir / name).exists():
            shutil.copy2(adapter_dir / name, folder / name)
    return {"dtype": dtype, "tensor_dtypes": found, "cast_shards": cast}


def adapter_summary(adapter_dir: Path) -> dict:
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    keys = ("peft_type", "r", "lora_alpha", "lora_dropout", "target_modules", "use_rslora", "use_dora",
            "modules_to_save", "base_model_name_or_path")
    return {key: config.get(key) for key in keys}


def data_sha256(run_dir: Path) -> str | None:
    """The raw data's sha256 from run.json (or the converter's manifest)."""
    manifest = run_dir / "run.json"
    run = json.loads(manifest.read_text()) if manifest.exists() else {}
    found = (run.get("data") or {}).get("input_sha256") or (run.get("hashes") or {}).get("data")
    if not found and (run_dir / "data" / "manifest.json").exists():
        found = json.loads((run_dir / "data" / "manifest.json").read_text()).get("input", {}).get("sha256")
    return found


def _scalars(value, prefix=""):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _scalars(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, (int, float, str, bool)) or value is None:
        yield prefix, value


def eval_section(run_dir: Path, recipe_id: str) -> str:
    metrics_file = run_dir / "eval" / "metrics.json"
    if not metrics_file.exists():
        return f"Not evaluated yet: `make eval RECIPE={recipe_id}` writes build/{recipe_id}/eval/metrics.json.\n"
    metrics = json.loads(metrics_file.read_text())
    tuned = ((metrics.get("models") or {}).get("tuned") or {}).get("metrics") or metrics
    rows = [f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
            for key, value in _scalars(tuned) if value is not None][:40]
    head = f"From build/{recipe_id}/eval/metrics.json (the adapter model on the {metrics.get('split', 'test')} split"
    head += f", n={metrics['n']})" if "n" in metrics else ")"
    bars = f"\nAcceptance bars passed: {metrics['bars_passed']}\n" if "bars_passed" in metrics else ""
    return f"{head}:\n\n| metric | value |\n|---|---|\n" + "\n".join(rows) + "\n" + bars


def model_card(recipe, figures: dict, run_dir: Path) -> str:
    lora = figures["adapter_config"]
    verification = figures["verification"]
    task = tasks.of(recipe)
    system = (f"\nThe model was trained with this system prompt; send it with every request:\n\n"
              f"> {recipe.system_prompt}\n") if task.CARD_SYSTEM_PROMPT and recipe.system_prompt else ""
    predict = " (+ /predict)" if task.PREDICT else ""
    return f"""---
base_model: {figures['base_model']}
library_name: transformers
tags: [axolotl, lora, merged, ftr]
---
# {recipe.id} (merged)

{recipe.description}

LoRA adapter of `ftr train {recipe.id}` merged into its base by `ftr merge {recipe.id}` (Axolotl
{figures['axolotl_version']} merge-lora), saved as {figures['dtype']} safetensors: the training precision
({figures['dtype_reason']}).

| | |
|---|---|
| recipe | `{recipe.id}` ({recipe.data_format}) |
| base model | `{figures['base_model']}` |
| adapter | {lora.get('peft_type', 'LORA')} r={lora.get('r')} alpha={lora.get('lora_alpha')}, modules: {', '.join(sorted(lora.get('target_modules') or []))} |
| training data | `{recipe.data['path']}`, sha256 `{figures['data_sha256']}` |
| dtype | {figures['dtype']} |
| chat template | the one used in training (`{recipe.vars.get('chat_template')}`), saved with the tokenizer |
{system}
## Verification

The adapter model (base + adapter, unmerged) continued {verification['prompts_compared']} golden prompts (the first
rows of the test split) greedily; both it and this model then read those {verification['positions_compared']} tokens
(teacher forcing). Top-1 next-token agreement {verification['top1_agreement']:.4f}
({verification['near_ties']} near ties); max |logit difference| {verification['max_abs_logit_diff']:.3g} (tolerance
{verification['tolerance']:.3g} for {figures['dtype']}, logits spread {verification['logit_scale']:.3g}); the adapter itself moves logits by up to
{verification['adapter_effect_max_abs_logit']:.3g}.
Details: verification.json.

## Evaluation

{eval_section(run_dir, recipe.id)}
## Use

    make serve RECIPE={recipe.id}          # OpenAI-compatible API on 127.0.0.1:8000{predict}
    make serve-vllm RECIPE={recipe.id}     # vLLM on a GPU host
"""


def _aside_prefix(final: Path) -> str:
    return f".{final.name}-old-"


def honour_umask(folder: Path) -> None:
    """Give folder and everything in it the permissions a plain write would (0666/0777 minus the umask): the
    staging folder comes from mkdtemp (0700) and safetensors' save_file writes through a private temp file (0600),
    which would leave the merged model unreadable by anyone else, e.g. the host user of a container's build/."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def publish(staged: Path, final: Path) -> None:
    """Rename staged to final; a previous final is moved aside first (named after this process) and removed after."""
    honour_umask(staged)
    old = None
    if final.exists():
        old = final.with_name(f"{_aside_prefix(final)}{os.getpid()}")
        os.rename(final, old)
    os.rename(staged, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale(run_dir: Path, final: Path) -> list[Path]:
    """Remove what killed merges left in run_dir (what was removed): their temp folders, and a previous merged model
    that publish moved aside, which goes back into place instead when the kill came before its successor did."""
    for entry in sorted(run_dir.glob(_aside_prefix(final) + "*")):
        pid = staging.owner(entry.name, _aside_prefix(final))
        if pid is not None and not staging.alive(pid) and not final.exists():
            os.rename(entry, final)
    return staging.remove_dead(run_dir, TEMP_PREFIX) + staging.remove_dead(run_dir, _aside_prefix(final))


def verify(run, staged: Path, base_model: str, dtype: str, prompts: list[dict], max_new_tokens: int,
           tolerance: float | None, device: str, end_of_turn: str | None = None) -> dict:
    """Adapter model vs merged model under teacher forcing on the golden prompts, one model in memory at a time.
    tolerance: an absolute bound on |logit difference|; None: the dtype's relative bound times the logit spread."""
    import gc

    from ftr import inference
    from ftr.merge_verify import adapter_effect, compare, forced_logits, greedy_sequences, tolerance_for

    tokenizer = inference.load_tokenizer(run.adapter)
    merged_tokenizer = inference.load_tokenizer(staged)
    if merged_tokenizer.chat_template != tokenizer.chat_template:
        raise click.ClickException(f"{staged}: the saved chat template differs from training's ({run.adapter})")
    timings = {}
    start = time.monotonic()
    model = inference.load_adapter_model(base_model, run.adapter, dtype, device)
    sequences = greedy_sequences(model, tokenizer, prompts, max_new_tokens, inference.stop_token_ids(tokenizer, model, end_of_turn))
    reference = [forced_logits(model, sequence) for sequence in sequences]
    effect = adapter_effect(model, sequences, reference)
    layers = model.config.num_hidden_layers
    timings["adapter_model"] = round(time.monotonic() - start, 2)
    del model
    gc.collect()
    start = time.monotonic()
    model = inference.load_model(staged, dtype, device)
    candidate = [forced_logits(model, sequence) for sequence in sequences]
    timings["merged_model"] = round(time.monotonic() - start, 2)
    del model
    gc.collect()
    result = compare(reference, candidate, tolerance_for(dtype, reference, layers) if tolerance is None else tolerance)
    for entry, prompt, sequence in zip(result["prompts"], prompts, sequences):
        entry.update(id=prompt["id"], tokens=len(sequence.tokens), reference_text=sequence.text)
    result.update(adapter_effect_max_abs_logit=effect, layers=layers, chat_template_matches_training=True,
                  max_new_tokens=max_new_tokens, timings_s=timings)
    return result


def _summary(result: dict) -> list[str]:
    ties = f", {result['near_ties']} near ties" if result["near_ties"] else ""
    return [f"  top-1 agreement under teacher forcing: {result['top1_agreement']:.4f} of "
            f"{result['positions_compared']} positions in {result['prompts_compared']} sequences{ties}",
            f"  max |logit diff| adapter vs merged: {result['max_abs_logit_diff']:.3g} (tolerance "
            f"{result['tolerance']:.3g}; logit spread {result['logit_scale']:.3g}); the adapter moves logits by up "
            f"to {result['adapter_effect_max_abs_logit']:.3g}"]


def merge_and_verify(recipe, run, workdir: Path, *, golden: int, max_new_tokens: int, tolerance: float | None,
                     device: str) -> tuple[Path, dict]:
    """Merge into workdir/merged and verify it; (staged folder, figures). Raises ClickException on any failure."""
    from importlib.metadata import version

    from ftr import inference
    from ftr.merge_verify import RELATIVE_TOLERANCE, golden_prompts

    try:
        run.require_adapter()
        cfg = run.axolotl_config()
        dtype, dtype_reason = inference.run_training_dtype(run)
        base_model = run.base_model()
    except inference.RunError as exc:
        raise click.ClickException(str(exc)) from None
    test_file = run.data / "test.jsonl"
    if not test_file.exists():
        raise click.ClickException(f"{test_file} not found: the golden prompts come from the run's test split")
    prompts = golden_prompts(test_file, golden)
    inference.prefer_offline(base_model)
    device = inference.pick_device(device)
    log_path = run.logs / "merge.log"
    log_path.unlink(missing_ok=True)
    click.echo(f"{recipe.id}: merging the {cfg.get('adapter')} adapter {run.adapter} into the unquantized base "
               f"{base_model}, saved in {dtype} ({dtype_reason}); Axolotl log: {log_path}")

    start = time.monotonic()
    staged = run_axolotl_merge(run.axolotl_yaml, run.adapter, workdir, merge_overrides(cfg), log_path)
    checkpoint = finish_checkpoint(staged, dtype, run.adapter)
    merge_s = round(time.monotonic() - start, 2)
    click.echo(f"merged in {merge_s} s ({dtype}, tensors by dtype {checkpoint['tensor_dtypes']})")
    click.echo(f"verifying: {len(prompts)} golden prompts (first rows of {os.path.relpath(test_file, run.dir.parent)}), "
               f"{max_new_tokens} greedy tokens each, then teacher forcing on {device}; adapter model vs merged model; "
               f"tolerance max |logit diff| <= " + (f"{tolerance:g} (--tolerance)" if tolerance is not None else
               f"{RELATIVE_TOLERANCE[dtype]:g} x the logits' spread x sqrt(layers) ({dtype})"))
    compute_dtype, _ = inference.inference_dtype(dtype, device, verifying=True)
    result = verify(run, staged, base_model, compute_dtype, prompts, max_new_tokens, tolerance, device,
                    recipe.end_of_turn)
    result["timings_s"]["merge"] = merge_s
    click.echo("\n".join(_summary(result)))
    if result["adapter_effect_max_abs_logit"] <= result["tolerance"]:
        click.echo("  warning: the adapter barely moves the base's logits here, so this check cannot tell the "
                   "merged model from the base model", err=True)
    figures = {"recipe": recipe.id, "base_model": base_model, "adapter": str(run.adapter),
               "adapter_sha256": inference.adapter_fingerprint(run.adapter), "adapter_config": adapter_summary(run.adapter),
               "dtype": dtype, "dtype_reason": dtype_reason, "data_sha256": data_sha256(run.home),
               "axolotl_version": version("axolotl"), "device": device, "checkpoint": checkpoint,
               "golden_source": str(test_file), "verification": result,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return staged, figures


@click.command("merge")
@click.argument("recipe_id")
@click.option("--golden", default=8, show_default=True, help="Golden prompts: the first N rows of the test split.")
@click.option("--max-new-tokens", default=64, show_default=True, help="Greedy tokens generated per golden prompt.")
@click.option("--tolerance", type=float,
              help="Max |logit difference| allowed, absolute (default: per dtype, float32 1e-3, float16 0.094, "
                   "bfloat16 0.75, times the standard deviation of the adapter model's logits, times sqrt(layers)).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the verification runs the two models.")
def merge(recipe_id, golden, max_new_tokens, tolerance, device):
    """Merge RECIPE_ID's adapter into its 16-bit base, verify it against the adapter, write build/RECIPE_ID/merged."""
    from ftr.recipes_cli import load_or_fail
    from ftr.inference import Run

    recipe = load_or_fail(recipe_id)
    run = Run.of(recipe_id)
    if not run.dir.is_dir():
        raise click.ClickException(f"{run.dir} not found: train first with `make train RECIPE={recipe_id}`")
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    for path in clean_stale(run.dir, run.merged):
        click.echo(f"removed {path}, left by a merge that did not finish")
    workdir = staging.temp_dir(run.dir, TEMP_PREFIX)
    try:
        staged, figures = merge_and_verify(recipe, run, workdir, golden=golden, max_new_tokens=max_new_tokens,
                                           tolerance=tolerance, device=device)
        result = figures["verification"]
        if not result["passed"]:
            report = run.dir / FAILED_REPORT
            staging.write_atomic(report, json.dumps(figures, indent=2, ensure_ascii=False))
            raise click.ClickException(
                f"VERIFICATION FAILED: the merged model does not reproduce the adapter model "
                f"(teacher forcing on {result['prompts_compared']} golden sequences: max |logit diff| "
                f"{result['max_abs_logit_diff']:.3g} vs tolerance {result['tolerance']:.3g}, top-1 agreement "
                f"{result['top1_agreement']:.4f}). Nothing was written to {run.merged}; the adapter {run.adapter} "
                f"stays the deliverable (`make serve RECIPE={recipe_id} MODEL=adapter`). Figures: {report}")
        (staged / "verification.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False), encoding="utf-8")
        (staged / "README.md").write_text(model_card(recipe, figures, run.dir), encoding="utf-8")
        publish(staged, run.merged)
        (run.dir / FAILED_REPORT).unlink(missing_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    size_mb = sum(p.stat().st_size for p in run.merged.glob("*.safetensors")) / 1e6
    click.echo(f"verified: {run.merged} ({figures['dtype']} safetensors, {size_mb:.1f} MB); "
               f"figures in {run.merged / 'verification.json'}")
