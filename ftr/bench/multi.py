"""`make bench-multi` / `python -m ftr.bench.multi`: how qwen-rephrase's training throughput scales over GPUs.

One run trains ftr.bench.train's config (c) ("recipe": qwen-rephrase as shipped, random-init 7B shape, the same
data) once on one GPU as a single process (the baseline), then at each --gpus count with each --accels launcher,
started by ftr.train's own `accelerate launch` command. Convention: tokens/s/GPU is rank 0's recorded real tokens
over rank 0's timed window (the steps after the warm-up, CUDA events); every rank steps together (each optimizer
step all-reduces), so that window is the run's, and all GPUs together move GPUs x that. Per-GPU efficiency is
tokens/s/GPU at N over the baseline's. Targets (issue 16): DDP >= 97% at 2 GPUs, >= 95% at 4, >= 93% at 8; ZeRO-2
within 2% of DDP's tokens/s at the same count. End-to-end wall time (launch, model and data load, training, exit)
is reported apart. Counts above the visible GPUs, ZeRO without deepspeed and sharded launchers without CUDA are
skipped with the reason. `--smoke`: CPU, tiny model, 1 and 2 processes (DDP over gloo), 3 steps (tests).
Results: --results-dir/results.json; with --write-docs (default for a GPU run) the `## Multi-GPU scaling` section
of docs/BENCHMARKS.md and docs/benchmarks/train-multi-gpu.json; `--from-results FILE...` merges earlier runs'
results.json (e.g. one command per launcher on a host with a per-command time limit) and only writes the docs.
"""

import argparse
import importlib.util
import json
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import click
import yaml

from ftr.bench.train import (build_model_subprocess, device_name, make_data, render_config, time_prep,
                             train_and_summarise)
from ftr.bench.train_report import replace_section, multi_section, multi_table
from ftr.bench.train_setups import ALL, PACKAGES, add_mfu
from ftr.paths import BUILD_DIR, REPO_ROOT, TINY_MODELS_DIR
from ftr.tiny_models import SHAPES
from ftr.train import DEEPSPEED_ACCELS, gpu_count, accelerate_command, launch_env
from ftr.train import versions as installed_versions

KEY = "recipe"
ACCELS = ("ddp", "zero2", "zero3", "fsdp2")
DDP_TARGETS = {2: 0.97, 4: 0.95, 8: 0.93}  # per-GPU efficiency against one GPU
ZERO2_OF_DDP = 0.98  # ZeRO-2's tokens/s at least this share of DDP's at the same count
SMOKE_PROCESSES = 2
ROWS_PER_GPU = 2000  # enough packed rows that no rank starts a second epoch within the default 30 steps


def scaling(runs: dict) -> dict:
    """Add each measured run's all-GPU tokens/s, per-GPU efficiency against `single@1` and the issue's target."""
    base = runs.get("single@1", {}).get("tokens_per_s_per_gpu")
    for r in runs.values():
        rate = r.get("tokens_per_s_per_gpu")
        if not rate:
            continue
        r["total_tokens_per_s"] = round(rate * r["gpus"], 1)
        r["efficiency"] = round(rate / base, 4) if base else None
        if r["accel"] == "ddp" and r["gpus"] in DDP_TARGETS:
            goal = DDP_TARGETS[r["gpus"]]
            r["target"] = f">= {goal:.0%} of 1 GPU"
            r["meets_target"] = None if r["efficiency"] is None else r["efficiency"] >= goal
        elif r["accel"] == "zero2":
            ddp = runs.get(f"ddp@{r['gpus']}", {}).get("tokens_per_s_per_gpu")
            r["of_ddp"] = round(rate / ddp, 4) if ddp else None
            r["target"] = f">= {ZERO2_OF_DDP:.0%} of DDP"
            r["meets_target"] = None if r["of_ddp"] is None else r["of_ddp"] >= ZERO2_OF_DDP
    return runs


def plan(gpus: list[int], accels: list[str]) -> list[tuple[str, int]]:
    """(launcher, process count) in run order: the single-process baseline at 1, then every launcher above 1."""
    return ([("single", 1)] if 1 in gpus else []) + [(a, n) for a in accels for n in sorted(set(gpus)) if n > 1]


def skip_reason(accel: str, gpus: int, visible: int, smoke: bool) -> str | None:
    """Why (accel, gpus) cannot run here, or None; ftr.train's launch checks give the rest (see launch)."""
    if accel in DEEPSPEED_ACCELS and importlib.util.find_spec("deepspeed") is None:
        return "deepspeed is not installed (`.venv/bin/pip install 'deepspeed>=0.18.6,<0.19'` or the wheelhouse)"
    if visible and gpus > visible:
        return f"needs {gpus} GPUs, {visible} visible"
    if not visible and smoke and gpus > SMOKE_PROCESSES:
        return f"the CPU smoke mode runs at most {SMOKE_PROCESSES} processes"
    return None


def launch(accel: str, gpus: int, config: Path) -> list[str]:
    if accel == "single":
        return [sys.executable, "-m", "axolotl.cli.train", str(config)]
    cmd = accelerate_command(accel, config, gpus)
    at = cmd.index("--config_file")
    return cmd[:at] + ["--main_process_port", "0"] + cmd[at:]  # a free port: another run may hold 29500


def env_changes(accel: str, gpus: int, visible: int) -> dict:
    """ftr.train's launch environment, and the first `gpus` visible GPUs only (one process must not see all)."""
    changes = launch_env(accel, {})
    if visible:
        ids = [i for i in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if i.strip()] or \
            [str(i) for i in range(visible)]
        changes["CUDA_VISIBLE_DEVICES"] = ",".join(ids[:gpus])
    return changes


def merge(parts: list[dict]) -> dict:
    """Several runs' results as one: the first's metadata; a measured row replaces, a skipped or failed one only
    fills a gap."""
    out = dict(parts[0], runs={}, commands=[p.get("command") for p in parts])
    for part in parts:
        for key, row in part.get("runs", {}).items():
            if key not in out["runs"] or row.get("tokens_per_s_per_gpu"):
                out["runs"][key] = row
    return out


def run_multi(args) -> dict:
    t0 = time.monotonic()
    deadline = t0 + args.time_budget_s if args.time_budget_s else None
    workdir, results_dir = Path(args.workdir).resolve(), Path(args.results_dir).resolve()
    logs = Path(args.logs_dir).resolve() if args.logs_dir else results_dir
    for folder in (workdir / "configs", results_dir, logs):
        folder.mkdir(parents=True, exist_ok=True)
    visible = gpu_count()
    todo = plan(args.gpus, args.accels)
    runnable = [n for a, n in todo if skip_reason(a, n, visible, args.smoke) is None] or [1]
    rows = args.rows or (48 if args.smoke else ROWS_PER_GPU) * max(runnable)
    results = {"command": args.command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "device": device_name() or f"CPU ({platform.processor() or platform.machine()})",
               "gpus_visible": visible, "versions": installed_versions(PACKAGES + ("deepspeed",)),
               "python": platform.python_version(), "steps": args.steps, "warmup": args.warmup, "rows": rows,
               "smoke": args.smoke, "config": KEY, "runs": {}, "setup_s": {}}
    out_json = results_dir / "results.json"

    def save():
        out_json.write_text(json.dumps(results, indent=2), encoding="utf-8")

    shape = ALL[KEY][4]
    from ftr.tiny_models import build

    if args.smoke:
        model = build("qwen2", TINY_MODELS_DIR)
    else:
        tok = Path(args.qwen_tokenizer)
        if not (tok / "tokenizer.json").exists() and tok.resolve().parent == TINY_MODELS_DIR.resolve():
            build("qwen2", TINY_MODELS_DIR)  # the real tokenizer, rebuilt offline
        start = time.monotonic()
        model = build_model_subprocess(shape, Path(args.model_root) / shape, tok, logs)
        results["setup_s"][f"build_{shape}"] = round(time.monotonic() - start, 1)
    data = make_data(rows, workdir / f"data{rows}")
    prep_cfg = render_config(KEY, model, data, workdir, args.steps, args.smoke)
    prep_path = workdir / "configs" / "multi-prep.yaml"
    prep_path.write_text(yaml.safe_dump(prep_cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    results["prep"] = time_prep(prep_path, logs / "multi-prep.log")  # once: every run below loads it
    save()

    for accel, gpus in todo:
        name = f"{accel}@{gpus}"
        entry = results["runs"][name] = {"accel": accel, "gpus": gpus, "steps": args.steps}
        reason = skip_reason(accel, gpus, visible, args.smoke)
        left = deadline - time.monotonic() if deadline else float("inf")
        if reason is None and left < args.min_run_s:
            reason = f"time budget ({left:.0f} s left, {args.min_run_s:.0f} s needed)"
        stem = f"multi-{accel}-{gpus}"
        cfg = dict(render_config(KEY, model, data, workdir, args.steps, args.smoke),
                   output_dir=str(workdir / "runs" / stem))
        cfg_path = workdir / "configs" / f"{stem}.yaml"
        if reason is None:
            try:
                cmd = launch(accel, gpus, cfg_path)
            except click.ClickException as exc:  # ftr.train's own launch checks (e.g. sharding without CUDA)
                reason = exc.format_message()
        if reason is not None:
            entry["skipped"] = reason
            save()
            continue
        timeout = max(30.0, min(args.run_timeout_s, left - 5)) if deadline else args.run_timeout_s
        entry.update(train_and_summarise(cfg, cfg_path, cmd, stem, logs, args.warmup, timeout,
                                         env=env_changes(accel, gpus, visible)), command=shlex.join(cmd))
        add_mfu(entry, SHAPES[shape], None if args.smoke else results["device"])
        save()
    scaling(results["runs"])
    results["total_s"] = round(time.monotonic() - t0, 1)
    save()
    return results


def write_docs(results: dict, doc: Path, json_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    doc.write_text(replace_section(text, "Multi-GPU scaling", multi_section(results)), encoding="utf-8")


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"a GPU count is at least 1, not {value}")
    return value


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m ftr.bench.multi", description=__doc__.split("\n\n")[0])
    p.add_argument("--gpus", type=_count, nargs="+", default=[1, 2, 4, 8], help="process counts (1 = the baseline)")
    p.add_argument("--accels", nargs="+", choices=ACCELS, default=["ddp", "zero2", "fsdp2"],
                   help="launchers (recipes/accelerate/NAME.yaml) at each count above 1")
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, 1 and 2 processes, 3 steps (tests)")
    p.add_argument("--rows", type=int, help=f"data rows (default {ROWS_PER_GPU} x the largest count that runs)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    p.add_argument("--workdir", default=str(BUILD_DIR / "bench-multi"))
    p.add_argument("--results-dir", default=str(BUILD_DIR / "bench-multi" / "results"))
    p.add_argument("--logs-dir", help="where the logs go (default: --results-dir)")
    p.add_argument("--model-root", default=os.environ.get("FTR_BENCH_MODELS", "/tmp/ftr-bench-models"))
    p.add_argument("--qwen-tokenizer", default=str(TINY_MODELS_DIR / "qwen2"))
    p.add_argument("--time-budget-s", type=float, default=0, help="skip runs that would not finish in time")
    p.add_argument("--min-run-s", type=float, default=90, help="time a run needs (for --time-budget-s)")
    p.add_argument("--run-timeout-s", type=float, default=900)
    p.add_argument("--write-docs", action=argparse.BooleanOptionalAction, default=None,
                   help="write the docs (default: on unless --smoke)")
    p.add_argument("--from-results", nargs="+", help="results.json of earlier runs: merge them, only write the docs")
    p.add_argument("--doc", default=str(REPO_ROOT / "docs" / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(REPO_ROOT / "docs" / "benchmarks" / "train-multi-gpu.json"))
    args = p.parse_args(argv)
    args.command = "python -m ftr.bench.multi " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.write_docs is None:
        args.write_docs = not args.smoke
    if args.smoke:
        args.steps, args.warmup = min(args.steps, 3), min(args.warmup, 1)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_results:
        results = merge([json.loads(Path(f).read_text(encoding="utf-8")) for f in args.from_results])
        scaling(results["runs"])
    else:
        if not args.smoke and gpu_count() == 0:
            print("ftr.bench.multi needs CUDA GPUs (use --smoke on CPU)", file=sys.stderr)
            return 2
        results = run_multi(args)
    print(multi_table(results))
    if args.write_docs:
        write_docs(results, Path(args.doc), Path(args.json))
    failed = [k for k, v in results["runs"].items() if v.get("rc")]
    return 1 if failed and not args.from_results else 0


if __name__ == "__main__":
    sys.exit(main())
