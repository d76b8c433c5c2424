"""`ftr train RECIPE`: raw data -> converted splits -> Axolotl YAML -> `axolotl preprocess` -> `accelerate launch`.

Everything a run writes stays under build/<id>/: data/ (splits + converter manifest), axolotl.yaml, prepared/
(tokenised, keyed by a content hash), adapter/ (Axolotl's output_dir), logs/ and run.json (the run manifest).
"""

import json
import os
import platform
import re
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path

import click

from ftr.paths import ACCELERATE_DIR, REPO_ROOT, TINY_MODELS_DIR, resolve, run_dir
from ftr.recipes import Recipe, RecipeError, input_hashes, invocation, render
from ftr.recipes_cli import load_or_fail, set_option

PACKAGES = ("ftr", "axolotl", "torch", "transformers", "peft", "trl", "accelerate", "datasets")


def axolotl_env(recipe: Recipe) -> dict:
    """Environment for Axolotl subprocesses: no telemetry, and no hub when the base model is a local folder."""
    env = dict(os.environ)
    env.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    env.setdefault("WANDB_MODE", "disabled")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if resolve(recipe.base_model).exists() or Path(recipe.base_model).is_absolute():
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("HF_DATASETS_OFFLINE", "1")
    return env


def ensure_tiny_model(recipe: Recipe) -> None:
    """Build the recipe's offline model (build/tiny-models/<kind>) on demand when the recipe trains it."""
    from ftr.tiny_models import build

    base = resolve(recipe.base_model).resolve()
    if base.parent == TINY_MODELS_DIR.resolve() and not (base / "config.json").exists():
        build(base.name, TINY_MODELS_DIR)


def convert_data(recipe: Recipe, outdir: Path) -> dict:
    """Convert the recipe's raw data into train/val/test chat rows (errors abort, naming file and line).

    Warnings are printed by file and line (rows dropped as too long among them); empty train or val splits stop
    here, before preprocessing, since Axolotl needs rows in both.
    """
    from ftr.converters.convert import convert_file
    from ftr.converters.errors import DataError, ProblemLog

    try:
        path = recipe.ensure_data()
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None
    log = ProblemLog(path, lambda line: click.echo(line, err=True))
    try:
        manifest = convert_file(path, outdir, fmt=recipe.data_format, system_prompt=recipe.system_prompt,
                                split=recipe.split, seed=recipe.seed, requires_alternating=recipe.requires_alternating,
                                sequence_len=recipe.sequence_len, too_long=recipe.data.get("too_long", "drop"),
                                on_warning=log)
    except DataError as exc:
        raise click.ClickException(f"data conversion failed:\n{exc}\n(run `ftr lint {recipe.data['path']}` "
                                   "for every problem, or convert with --drop-invalid)") from None
    except (OSError, ValueError) as exc:  # an unwritable build folder, a bad split or too_long value
        raise click.ClickException(f"data conversion failed: {exc}") from None
    finally:
        log.close()
    rows = {split: out["rows"] for split, out in manifest["outputs"].items()}
    click.echo(f"{outdir}: {manifest['kept']} rows ({', '.join(f'{k} {n}' for k, n in rows.items())}); "
               f"{len(manifest['rejected'])} rejected, {manifest['warnings']} warnings", err=True)
    require_train_and_val(manifest, path, outdir)
    return manifest


def require_train_and_val(manifest: dict, path: Path, outdir: Path) -> None:
    """Stop with the reasons when the train or val split is empty (Axolotl would fail later, less clearly)."""
    empty = [split for split in ("train", "val") if manifest["outputs"][split]["rows"] == 0]
    if not empty:
        return
    reasons = Counter(code for entry in manifest["rejected"] for code in re.findall(r"\[(\w+)\]", entry["reason"]))
    why = f"; rejected: {', '.join(f'{code} {n}' for code, n in reasons.most_common())}" if reasons else ""
    raise click.ClickException(
        f"the {' and '.join(empty)} split of {path} is empty ({manifest['kept']} rows kept of "
        f"{manifest['input']['records']} records{why}; see {outdir / 'manifest.json'}): Axolotl needs rows in both "
        "train and val. Add rows, or check data.split and data.too_long.")


def run_logged(cmd: list[str], log: Path, env: dict) -> float:
    """Run cmd with its output shown and kept in log; return seconds taken; fail loudly on non-zero exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    click.echo(f"$ {' '.join(cmd)}   (log: {log})", err=True)
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                                text=True, bufsize=1)
        for line in proc.stdout:
            fh.write(line)
            sys.stderr.write(line)
        code = proc.wait()
    if code != 0:
        raise click.ClickException(f"`{' '.join(cmd[:4])} ...` exited {code}; see {log}")
    return time.monotonic() - start


def accelerate_command(accel: str, config: Path, num_processes: int | None) -> list[str]:
    accel_file = ACCELERATE_DIR / f"{accel}.yaml"
    if not accel_file.exists():
        known = ", ".join(sorted(p.stem for p in ACCELERATE_DIR.glob("*.yaml")))
        raise click.ClickException(f"unknown ACCEL {accel!r}; known: {known}")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accel_file)]
    if accel != "single":
        cmd += ["--num_processes", str(num_processes or _gpu_count())]
    return cmd + ["-m", "axolotl.cli.train", str(config)]


def _gpu_count() -> int:
    import torch

    return max(torch.cuda.device_count(), 1)


def loss_history(output_dir: Path) -> list[dict]:
    """Training log rows from the newest trainer_state.json under output_dir."""
    states = sorted(output_dir.glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    if not states:
        return []
    return json.loads(states[-1].read_text())["log_history"]


def versions(names: tuple[str, ...] = PACKAGES) -> dict:
    """Installed version of each distribution in names (None when absent)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def train_recipe(recipe: Recipe, accel: str = "single", num_processes: int | None = None) -> dict:
    out = run_dir(recipe.id)
    env = axolotl_env(recipe)
    ensure_tiny_model(recipe)
    manifest = {"recipe": recipe.id, "command": invocation(), "accelerate": accel, "versions": versions(),
                "python": platform.python_version(), "machine": platform.node(), "timings_s": {}}
    start = time.monotonic()
    conversion = convert_data(recipe, out / "data")
    manifest["timings_s"]["convert"] = round(time.monotonic() - start, 2)
    manifest["data"] = {"input": conversion["input"], "kept": conversion["kept"],
                        "rejected": len(conversion["rejected"]),
                        "rows": {split: out["rows"] for split, out in conversion["outputs"].items()}}
    config = out / "axolotl.yaml"
    try:
        config.write_text(render(recipe, command=invocation()), encoding="utf-8")
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None
    manifest["hashes"] = input_hashes(recipe)
    manifest["config"] = str(config)
    # ftr.prep = `axolotl preprocess` without its fingerprint/spawn-save overhead (same tokens; docs/BENCHMARKS.md)
    manifest["timings_s"]["preprocess"] = round(run_logged(
        [sys.executable, "-m", "ftr.prep", str(config)], out / "logs" / "preprocess.log", env), 2)
    manifest["timings_s"]["train"] = round(run_logged(
        accelerate_command(accel, config, num_processes), out / "logs" / "train.log", env), 2)
    history = [row for row in loss_history(out / "adapter") if "loss" in row]
    manifest["loss"] = {"first": history[0]["loss"], "last": history[-1]["loss"]} if history else None
    manifest["adapter"] = str(out / "adapter")
    (out / "run.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    return manifest


@click.command("train")
@click.argument("recipe_id")
@set_option
@click.option("--accel", default="single", show_default=True,
              help="Accelerate config from recipes/accelerate/ (single, ddp, zero2, zero3, fsdp2).")
@click.option("--num-processes", type=int, help="Processes for multi-GPU configs (default: visible GPUs).")
def train(recipe_id, sets, accel, num_processes):
    """Train RECIPE_ID end to end through Axolotl; outputs under build/RECIPE_ID/."""
    recipe = load_or_fail(recipe_id, sets)
    manifest = train_recipe(recipe, accel, num_processes)
    loss = manifest["loss"]
    summary = f"loss {loss['first']:.3f} -> {loss['last']:.3f}" if loss else "no loss logged"
    click.echo(f"{recipe_id}: trained ({summary}); adapter: {manifest['adapter']}; manifest: "
               f"{run_dir(recipe_id) / 'run.json'}")
