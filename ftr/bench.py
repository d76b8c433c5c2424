"""`make bench` / `python -m ftr.bench`: training throughput of qwen-rephrase, side by side, on one GPU.

One command, one run, the same data and model shape for every config:
  (a) seed_baseline    the seed-000 setup: no packing, micro-batch 4, gradient checkpointing, LoRA dropout 0.1
  (b) axolotl_default  Axolotl's defaults with sample packing: micro-batch 2, gradient checkpointing, dropout 0.05
  (c) recipe           `qwen-rephrase` exactly as shipped (recipes/qwen-rephrase/recipe.yaml)
then a leave-one-out ablation of (c)'s levers, and QLoRA at mistral-stories' shape.

Every config is rendered by ftr's own recipe machinery (load_recipe + render), pointed at a random-init model of
the real 7B shape built on the GPU (throughput does not depend on weight values), the real tokenizer, and rows
from data/examples/make_examples.py; Axolotl trains it (`python -m axolotl.cli.train`), with the plugin
ftr.bench_plugin recording per-step time and token counts. Results: --results-dir/results.json (+ logs); with
--write-docs the table goes into docs/BENCHMARKS.md (## Training throughput (GPU), ## Data preparation) and the
figures into docs/benchmarks/train-gpu.json. `--from-results FILE --write-docs` re-renders the docs from a
results.json brought back from a GPU host. `--smoke` runs the same pipeline on CPU with the tiny model (tests).
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ftr.paths import BUILD_DIR, REPO_ROOT, TINY_MODELS_DIR
from ftr.tiny_models import SHAPES
from ftr.train import versions as installed_versions

PEAK_BF16_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "H800": 989.4e12, "A100": 312e12}
PACKAGES = ("torch", "transformers", "axolotl", "peft", "accelerate", "trl", "datasets", "liger-kernel",
            "bitsandbytes", "triton", "tokenizers")

# key: (label, recipe, recipe --set overrides, raw Axolotl keys, shape)
MAIN = {
    "seed_baseline": ("(a) seed 000: no packing, micro-batch 4, grad. checkpointing", "qwen-rephrase",
                      dict(sample_packing=False, micro_batch_size=4, lora_dropout=0.1, lora_kernels=False,
                           liger=False, gradient_checkpointing=True, optimizer="adamw_torch"), {}, "qwen2.5-7b"),
    "axolotl_default": ("(b) Axolotl defaults + sample packing: micro-batch 2, grad. checkpointing", "qwen-rephrase",
                        dict(sample_packing=True, micro_batch_size=2, lora_dropout=0.05, lora_kernels=False,
                             liger=False, gradient_checkpointing=True, optimizer="adamw_torch"), {}, "qwen2.5-7b"),
    "recipe": ("(c) qwen-rephrase as shipped", "qwen-rephrase", {}, {}, "qwen2.5-7b"),
}
# Leave one lever of (c) out at a time: tokens/s of (c) over the row's is that lever's gain.
ABLATION = {
    "recipe_mb2": ("(c) at micro-batch 2 (same batches as (b): the loss check)", "qwen-rephrase",
                   dict(micro_batch_size=2), {}, "qwen2.5-7b"),
    "recipe_no_liger": ("(c) without Liger (rope, rms_norm, glu, fused linear CE)", "qwen-rephrase",
                        dict(liger=False), {}, "qwen2.5-7b"),
    "recipe_no_lora_kernels": ("(c) without Axolotl's LoRA kernels", "qwen-rephrase",
                               dict(lora_kernels=False), {}, "qwen2.5-7b"),
    "recipe_grad_ckpt": ("(c) with gradient checkpointing", "qwen-rephrase",
                         dict(gradient_checkpointing=True), {}, "qwen2.5-7b"),
    "recipe_adamw_torch": ("(c) with unfused AdamW (adamw_torch)", "qwen-rephrase",
                           dict(optimizer="adamw_torch"), {}, "qwen2.5-7b"),
    "recipe_no_varlen": ("(c) with stock SDPA (4D mask) instead of varlen SDPA", "qwen-rephrase",
                         {}, dict(sdpa_varlen=False), "qwen2.5-7b"),
    "recipe_torch_compile": ("(c) plus torch_compile (not shipped)", "qwen-rephrase",
                             {}, dict(torch_compile=True), "qwen2.5-7b"),
}
QLORA = {
    "qlora_mistral": ("QLoRA nf4, mistral-stories as shipped (Mistral-7B shape, r64, all linear, packing off)",
                      "mistral-stories", dict(gradient_accumulation_steps=1), {}, "mistral-7b"),
}
ORDER = ["recipe", "axolotl_default", "seed_baseline", "recipe_mb2", "recipe_no_liger", "recipe_no_lora_kernels",
         "recipe_grad_ckpt", "recipe_adamw_torch", "qlora_mistral", "recipe_no_varlen", "recipe_torch_compile"]
ALL = {**MAIN, **ABLATION, **QLORA}
# Gain rows of the ablation: (lever, config without it).
LEVERS = [("micro-batch 4 (vs 2)", "recipe_mb2"), ("Liger kernels", "recipe_no_liger"),
          ("Axolotl LoRA kernels", "recipe_no_lora_kernels"), ("no gradient checkpointing", "recipe_grad_ckpt"),
          ("fused AdamW", "recipe_adamw_torch"), ("varlen SDPA (vs 4D-mask SDPA)", "recipe_no_varlen"),
          ("torch.compile (not shipped)", "recipe_torch_compile")]
SMOKE_SETS = dict(bf16=False, tf32=False, liger=False, lora_kernels=False, sequence_len=512,
                  optimizer="adamw_torch", gradient_checkpointing=False, load_in_4bit=False, adapter="lora")


# ----------------------------------------------------------------------------------------------------------------
# arithmetic


def linear_params(shape: dict) -> int:
    """Parameters of every matmul a token goes through (attention and MLP projections, LM head; no embedding)."""
    d, inter, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    head_dim = d // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head_dim
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * inter
    return layers * per_layer + d * shape["vocab_size"]


def flops_per_token(shape: dict) -> float:
    """Model FLOPs per trained token for LoRA: forward 2N + backward through the frozen weights 2N (no weight
    gradients for them; LoRA's own matmuls are <1% and attention scores ~1% at these lengths, both left out).
    Gradient checkpointing's recomputed forward is not counted (MFU, not hardware FLOPs utilisation)."""
    return 4.0 * linear_params(shape)


def peak_flops(device_name: str | None) -> float | None:
    for key, value in PEAK_BF16_FLOPS.items():
        if device_name and key in device_name:
            return value
    return None


def summarise_steps(rows: list[dict], warmup: int) -> dict:
    """Throughput over the steps after `warmup`, from ftr.bench_plugin's JSON lines."""
    steps = [r for r in rows if r.get("event") == "step"]
    end = [r for r in rows if r.get("event") == "train_end"]
    losses = {r["step"]: r["loss"] for r in rows if r.get("event") == "log" and "loss" in r}
    timed = [r for r in steps if r.get("t") is not None]
    out = {"steps": len(steps), "loss": losses}
    # Axolotl resets the peak counter when it logs, so the run's peak is the largest reading, not the last.
    peaks = [r["peak_mem_gib"] for r in steps + end if r.get("peak_mem_gib") is not None]
    if peaks:
        out["peak_mem_gib"] = max(peaks)
    start = next((r for r in timed if r["step"] >= warmup), None)
    if start is None or start is timed[-1]:
        return out
    stop = timed[-1]
    window = [r for r in steps if start["step"] < r["step"] <= stop["step"]]
    seconds = stop["t"] - start["t"]
    if seconds <= 0 or not window:
        return out
    tokens = sum(r["tokens"] for r in window)
    trainable = sum(r["trainable"] for r in window)
    slots = sum(r["slots"] for r in window)
    out.update(measured_steps=len(window), seconds=round(seconds, 3), step_time_s=round(seconds / len(window), 4),
               tokens_per_s_per_gpu=round(tokens / seconds, 1), trainable_tokens_per_s=round(trainable / seconds, 1),
               slot_tokens_per_s=round(slots / seconds, 1), padding_fraction=round(1 - tokens / slots, 4) if slots else None,
               tokens_per_step=round(tokens / len(window), 1))
    return out


def axolotl_peak_mem(log_text: str) -> float | None:
    """Largest `memory/max_allocated (GiB)` Axolotl logged (torch.cuda.max_memory_allocated, reset at each log)."""
    import re

    values = [float(v) for v in re.findall(r"memory/max_allocated \(GiB\)'?: '?([0-9.]+)", log_text)]
    return max(values) if values else None


def apply_log_peaks(results: dict, logs: Path) -> dict:
    """Take each config's peak memory as the larger of the step recorder's and Axolotl's own log."""
    for key, entry in results.get("configs", {}).items():
        log = logs / f"train-{key}.log"
        if not log.exists():
            continue
        peak = axolotl_peak_mem(log.read_text(encoding="utf-8", errors="replace"))
        if peak is not None:
            entry["peak_mem_gib_axolotl_log"] = peak
            entry["peak_mem_gib"] = max(peak, entry.get("peak_mem_gib") or 0)
    return results


def add_mfu(result: dict, shape: dict, device_name: str | None, gpus: int = 1) -> dict:
    peak = peak_flops(device_name)
    rate = result.get("tokens_per_s_per_gpu")
    result["flops_per_token"] = flops_per_token(shape)
    result["mfu"] = round(rate * flops_per_token(shape) / peak, 4) if (peak and rate) else None
    return result


def loss_at_tokens(losses: dict, tokens_per_step: float) -> list[tuple[float, float]]:
    """[(training tokens seen, logged loss)], steps converted to tokens."""
    return [(int(step) * tokens_per_step, loss) for step, loss in sorted(losses.items(), key=lambda kv: int(kv[0]))]


def loss_check(b: dict, c: dict) -> dict | None:
    """Compare two configs' logged losses at equal training tokens (same optimizer steps and batch)."""
    lb, lc = {int(k): v for k, v in b.get("loss", {}).items()}, {int(k): v for k, v in c.get("loss", {}).items()}
    common = sorted(set(lb) & set(lc))
    if not common:
        return None
    diffs = [lc[s] - lb[s] for s in common]
    return {"steps": common, "loss_b": [lb[s] for s in common], "loss_c": [lc[s] for s in common],
            "max_abs_diff": round(max(abs(d) for d in diffs), 4), "mean_diff": round(sum(diffs) / len(diffs), 4)}


# ----------------------------------------------------------------------------------------------------------------
# building what a run needs


def make_data(rows: int, outdir: Path, seed: int = 1) -> Path:
    """`rows` generated rephrase rows, converted by ftr's converter into one train.jsonl (no held-out split)."""
    from ftr.converters.convert import convert_file

    train = outdir / "train.jsonl"
    if train.exists():
        return train
    outdir.mkdir(parents=True, exist_ok=True)
    raw = outdir.parent / f"{outdir.name}-raw.json"  # beside the output folder: convert refuses one holding its input
    subprocess.run([sys.executable, str(REPO_ROOT / "data/examples/make_examples.py"), "--rephrase-rows", str(rows),
                    "--seed", str(seed), "-o", str(raw)], check=True, stdout=subprocess.DEVNULL)
    from ftr.recipes import load_recipe

    recipe = load_recipe("qwen-rephrase")
    convert_file(raw, outdir, fmt="rephrase", system_prompt=recipe.system_prompt, split=(1.0, 0.0, 0.0), seed=1)
    return train


def build_model(shape_name: str, out: Path, tokenizer_dir: Path) -> Path:
    """A random-init model of the real shape, built on the GPU in bf16 and saved once (no weights travel)."""
    import torch

    from ftr.tiny_models import build

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return build(shape_name, out.parent, device, "bfloat16", tokenizer_from=tokenizer_dir)


def build_model_subprocess(shape_name: str, out: Path, tokenizer_dir: Path, logs: Path) -> Path:
    code, _ = run_logged([sys.executable, "-m", "ftr.bench", "--build-model", shape_name, str(out), str(tokenizer_dir)],
                         logs / f"build-{shape_name}.log")
    if code != 0:
        raise RuntimeError(f"building the {shape_name} model failed:\n{tail(logs / f'build-{shape_name}.log')}")
    return out


def render_config(key: str, model_dir: Path, data: Path, workdir: Path, steps: int, smoke: bool) -> dict:
    """The Axolotl config of one benchmarked setup: ftr's own rendering of the recipe, then the bench's changes
    (model, data, steps, no eval or checkpoints, the step recorder)."""
    from ftr.recipes import load_recipe, render

    label, recipe_id, sets, raw, _shape = ALL[key]
    sets = dict(sets)
    if smoke:
        sets.update(SMOKE_SETS)
    recipe = load_recipe(recipe_id, sets)
    cfg = yaml.safe_load(render(recipe, command=f"ftr.bench {key}"))
    cfg["base_model"] = str(model_dir)
    for name in ("tokenizer_config",):
        cfg.pop(name, None)
    cfg["datasets"][0]["path"] = str(data)
    cfg.pop("test_datasets", None)
    cfg["val_set_size"] = 0
    cfg["dataset_prepared_path"] = str(workdir / "prepared")
    cfg["dataset_num_proc"] = 1
    cfg["output_dir"] = str(workdir / "runs" / key)
    cfg.update(max_steps=steps, num_epochs=1, eval_steps=None, evals_per_epoch=None, saves_per_epoch=None,
               save_steps=None, save_strategy="no", early_stopping_patience=None, load_best_model_at_end=False,
               logging_steps=1 if smoke else 5, save_total_limit=None)
    cfg.update(raw)
    cfg["plugins"] = list(cfg.get("plugins") or []) + ["ftr.bench_plugin.BenchPlugin"]
    return cfg


def run_env() -> dict:
    env = dict(os.environ)
    for name, value in {"AXOLOTL_DO_NOT_TRACK": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
                        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}.items():
        env.setdefault(name, value)
    import ftr

    # the folder this ftr was imported from (the checkout, or an unpacked copy on a GPU host)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(ftr.__file__).resolve().parents[1]),
                                                   env.get("PYTHONPATH", "")] if p)
    env.setdefault("FTR_ROOT", str(REPO_ROOT))
    return env


def run_logged(cmd: list[str], log: Path, timeout: float | None = None) -> tuple[int, float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        fh.write("$ " + shlex.join(cmd) + "\n")
        fh.flush()
        try:
            code = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=run_env(), cwd=REPO_ROOT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = 124
    return code, time.monotonic() - start


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def versions() -> dict:
    return installed_versions(PACKAGES)


def device_name() -> str | None:
    """The first GPU's name, asked of nvidia-smi (no CUDA context stays open in this process during the runs)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
        names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        return names[0] if out.returncode == 0 and names else None
    except (OSError, subprocess.SubprocessError):
        return None


# ----------------------------------------------------------------------------------------------------------------
# the run


def time_prep(config: Path, log: Path, plain: bool = False) -> dict:
    cmd = [sys.executable, "-m", "ftr.prep", str(config)]
    env_plain = os.environ.get("FTR_PREP_PLAIN")
    if plain:
        os.environ["FTR_PREP_PLAIN"] = "1"
    try:
        code, seconds = run_logged(cmd, log)
    finally:
        if env_plain is None:
            os.environ.pop("FTR_PREP_PLAIN", None)
        else:
            os.environ["FTR_PREP_PLAIN"] = env_plain
    return {"seconds": round(seconds, 2), "rc": code, "mode": "axolotl preprocess (plain)" if plain else "ftr.prep"}


def run_bench(args) -> dict:
    t0 = time.monotonic()
    deadline = t0 + args.time_budget_s if args.time_budget_s else None
    workdir = Path(args.workdir).resolve()
    results_dir = Path(args.results_dir).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    logs = Path(args.logs_dir).resolve() if args.logs_dir else results_dir
    logs.mkdir(parents=True, exist_ok=True)
    results = {"command": args.command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "device": device_name() or f"CPU ({platform.processor() or platform.machine()})",
               "versions": versions(), "python": platform.python_version(), "steps": args.steps,
               "warmup": args.warmup, "rows": args.rows, "smoke": args.smoke, "configs": {}, "prep": {},
               "setup_s": {}}
    out_json = results_dir / "results.json"

    def save():
        out_json.write_text(json.dumps(results, indent=2), encoding="utf-8")

    def left() -> float:
        return deadline - time.monotonic() if deadline else float("inf")

    for tok_dir, kind in ((args.qwen_tokenizer, "qwen2"), (args.mistral_tokenizer, "mistral")):
        if not (Path(tok_dir) / "tokenizer.json").exists() and Path(tok_dir).resolve().parent == TINY_MODELS_DIR.resolve():
            from ftr.tiny_models import build  # the real tokenizers, rebuilt offline (needs dashscope / mistral-common)

            build(kind, TINY_MODELS_DIR)
    data = make_data(args.rows, workdir / f"data{args.rows}")
    keys = [k for k in ORDER if k in args.only] if args.only else list(ORDER)
    models: dict[str, Path] = {}
    for key in keys:
        shape = ALL[key][4]
        if shape in models:
            continue
        if args.smoke:
            kind = "qwen2" if shape.startswith("qwen") else "mistral"
            from ftr.tiny_models import build

            models[shape] = build(kind, TINY_MODELS_DIR)
        else:
            start = time.monotonic()
            tok = Path(args.qwen_tokenizer if shape.startswith("qwen") else args.mistral_tokenizer)
            models[shape] = build_model_subprocess(shape, Path(args.model_root) / shape, tok, logs)
            results["setup_s"][f"build_{shape}"] = round(time.monotonic() - start, 1)
            break  # build the other shape only if its configs get their turn
    save()

    # Data preparation: once for the shared tokenisation (every qwen config below reuses it).
    prep_cfg = render_config("recipe", models["qwen2.5-7b"], data, workdir, args.steps, args.smoke)
    (workdir / "configs").mkdir(exist_ok=True)
    prep_path = workdir / "configs" / "prep.yaml"
    prep_path.write_text(yaml.safe_dump(prep_cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    if args.prep_plain:
        plain_cfg = dict(prep_cfg, dataset_prepared_path=str(workdir / "prepared-plain"))
        plain_path = workdir / "configs" / "prep-plain.yaml"
        plain_path.write_text(yaml.safe_dump(plain_cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        results["prep"][f"{args.rows}_plain"] = time_prep(plain_path, logs / "prep-plain.log", plain=True)
    results["prep"][str(args.rows)] = time_prep(prep_path, logs / "prep.log")
    save()

    for key in keys:
        label, recipe_id, _sets, _raw, shape = ALL[key]
        entry = {"label": label, "recipe": recipe_id, "shape": shape}
        results["configs"][key] = entry
        need = args.min_run_s * (3 if "compile" in key else 1)
        if left() < need:
            entry["skipped"] = f"time budget ({left():.0f} s left, {need:.0f} s needed)"
            save()
            continue
        if shape not in models:
            start = time.monotonic()
            tok = Path(args.qwen_tokenizer if shape.startswith("qwen") else args.mistral_tokenizer)
            models[shape] = build_model_subprocess(shape, Path(args.model_root) / shape, tok, logs)
            results["setup_s"][f"build_{shape}"] = round(time.monotonic() - start, 1)
            if left() < need:
                entry["skipped"] = "time budget (after building the model)"
                save()
                continue
        cfg = render_config(key, models[shape], data if shape.startswith("qwen") else _stories_data(workdir, args),
                            workdir, args.steps, args.smoke)
        cfg_path = workdir / "configs" / f"{key}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        steps_file = Path(cfg["output_dir"]) / "bench_steps.jsonl"
        steps_file.unlink(missing_ok=True)
        log = logs / f"train-{key}.log"
        timeout = max(30.0, min(args.run_timeout_s, left() - 5)) if deadline else args.run_timeout_s
        code, seconds = run_logged([sys.executable, "-m", "axolotl.cli.train", str(cfg_path)], log, timeout)
        entry.update(rc=code, wall_s=round(seconds, 1),
                     settings={k: cfg.get(k) for k in ("sample_packing", "micro_batch_size", "gradient_accumulation_steps",
                                                        "gradient_checkpointing", "lora_dropout", "optimizer",
                                                        "lora_mlp_kernel", "sequence_len", "adapter", "load_in_4bit",
                                                        "lora_r", "torch_compile", "sdpa_varlen")}
                     | {"liger": any("Liger" in p for p in cfg.get("plugins", []))})
        rows = [json.loads(line) for line in steps_file.read_text().splitlines() if line.strip()] \
            if steps_file.exists() else []
        entry.update(summarise_steps(rows, args.warmup))
        apply_log_peaks({"configs": {key: entry}}, logs)
        add_mfu(entry, SHAPES[shape], None if args.smoke else results["device"])
        if code != 0:
            entry["error_tail"] = tail(log)
        save()

    if args.prep_rows:
        for rows in args.prep_rows:
            if rows == args.rows or left() < 60:
                continue
            more = make_data(rows, workdir / f"data{rows}")
            cfg = dict(prep_cfg, dataset_prepared_path=str(workdir / f"prepared{rows}"))
            cfg["datasets"] = [dict(prep_cfg["datasets"][0], path=str(more))]
            path = workdir / "configs" / f"prep{rows}.yaml"
            path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
            results["prep"][str(rows)] = time_prep(path, logs / f"prep{rows}.log")
            save()
    results["total_s"] = round(time.monotonic() - t0, 1)
    save()
    return results


def run_prep_only(args) -> dict:
    """Time data preparation alone (CPU is enough): Axolotl's preprocess as is, and through ftr.prep."""
    workdir = Path(args.workdir).resolve()
    logs = Path(args.logs_dir or args.results_dir).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    (workdir / "configs").mkdir(parents=True, exist_ok=True)
    tokenizer = Path(args.qwen_tokenizer)
    out = {"command": args.command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {platform.platform()}",
           "python": platform.python_version(), "versions": versions(), "runs": []}
    for rows in [args.rows] + [r for r in (args.prep_rows or []) if r != args.rows]:
        data = make_data(rows, workdir / f"data{rows}")
        base = render_config("recipe", tokenizer, data, workdir, args.steps, smoke=False)
        variants = ([("plain", 1)] if args.prep_plain else []) + [("ftr.prep", 1)] + \
            [("ftr.prep", n) for n in (args.prep_procs or []) if n != 1]
        for mode, procs in variants:
            name = f"{rows}-{mode}-{procs}"
            cfg = dict(base, dataset_prepared_path=str(workdir / f"prepared-{name}"), dataset_num_proc=procs)
            shutil.rmtree(workdir / f"prepared-{name}", ignore_errors=True)
            path = workdir / "configs" / f"prep-{name}.yaml"
            path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
            timing = time_prep(path, logs / f"prep-{name}.log", plain=(mode == "plain"))
            out["runs"].append({"rows": rows, "dataset_num_proc": procs, **timing})
            print(f"prep {rows} rows, {timing['mode']}, dataset_num_proc {procs}: {timing['seconds']} s", flush=True)
    (Path(args.results_dir) / "prep.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


def _stories_data(workdir: Path, args) -> Path:
    """mistral-stories' own example data, converted as its recipe does (chat rows)."""
    from ftr.converters.convert import convert_file
    from ftr.recipes import load_recipe

    out = workdir / "stories"
    if not (out / "train.jsonl").exists():
        recipe = load_recipe("mistral-stories")
        convert_file(recipe.data_path, out, fmt=recipe.data_format, system_prompt=recipe.system_prompt,
                     split=(1.0, 0.0, 0.0), seed=recipe.seed, requires_alternating=True)
    return out / "train.jsonl"


# ----------------------------------------------------------------------------------------------------------------
# reporting


def _fmt(value, spec: str = ",.0f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _why_missing(r: dict) -> str:
    if r.get("skipped"):
        return f"not run: {r['skipped']}"
    if r.get("rc"):
        return f"failed (exit {r['rc']})"
    return "no timing"


def train_table(results: dict, keys: list[str] | None = None) -> str:
    configs = results["configs"]
    lines = ["| config | tokens/s/GPU | trainable tokens/s | step s | tokens/step | padding | peak GiB | MFU |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in [k for k in (keys or ORDER) if k in configs]:
        r = configs[key]
        if "tokens_per_s_per_gpu" not in r:
            lines.append(f"| `{key}` {r['label']} | {_why_missing(r)} | | | | | | |")
            continue
        lines.append(f"| `{key}` {r['label']} | {_fmt(r['tokens_per_s_per_gpu'])} | {_fmt(r['trainable_tokens_per_s'])} "
                     f"| {_fmt(r.get('step_time_s'), '.3f')} | {_fmt(r.get('tokens_per_step'))} "
                     f"| {_fmt(r.get('padding_fraction'), '.1%')} | {_fmt(r.get('peak_mem_gib'), '.1f')} "
                     f"| {_fmt(r.get('mfu'), '.1%')} |")
    return "\n".join(lines)


def ratios(results: dict) -> dict:
    c = results["configs"]
    rate = {k: v.get("tokens_per_s_per_gpu") for k, v in c.items()}
    trainable = {k: v.get("trainable_tokens_per_s") for k, v in c.items()}
    out = {}
    for name, rates in (("", rate), ("trainable ", trainable)):
        if rates.get("recipe") and rates.get("seed_baseline"):
            out[f"{name}(c)/(a)"] = round(rates["recipe"] / rates["seed_baseline"], 2)
        if rates.get("recipe") and rates.get("axolotl_default"):
            out[f"{name}(c)/(b)"] = round(rates["recipe"] / rates["axolotl_default"], 2)
    return out


def lever_gains(results: dict) -> list[tuple[str, str, float | None, str]]:
    """(lever, config without it, tokens/s of (c) over that config, note) per lever of (c)."""
    c = results["configs"]
    base = c.get("recipe", {}).get("tokens_per_s_per_gpu")
    rows = []
    for lever, key in LEVERS:
        r = c.get(key)
        if r is None:
            continue
        rate = r.get("tokens_per_s_per_gpu")
        gain = round(base / rate, 3) if (base and rate) else None
        rows.append((lever, key, gain, "" if gain else _why_missing(r)))
    return rows


def gpu_json(results: dict, prep_cpu: dict | None = None) -> dict:
    keep = ("label", "tokens_per_s_per_gpu", "trainable_tokens_per_s", "step_time_s", "peak_mem_gib", "mfu",
            "tokens_per_step", "padding_fraction", "measured_steps", "settings", "loss", "skipped", "rc")
    out = {}
    for key, r in results["configs"].items():
        out[key] = {k: r.get(k) for k in keep if k in r}
    return {**{k: out[k] for k in ("seed_baseline", "axolotl_default", "recipe") if k in out},
            "ablation": {k: v for k, v in out.items() if k.startswith("recipe_")},
            "qlora": {k: v for k, v in out.items() if k.startswith("qlora")},
            "ratios": ratios(results),
            "lever_gains": {lever: gain for lever, _key, gain, _note in lever_gains(results)},
            "loss_check": results.get("loss_check"),
            "mfu_definition": "tokens/s x 4 x N_matmul / peak; N_matmul = attention+MLP projections + LM head "
                              "(no embedding); peak = dense bf16 of the GPU (H100 SXM: 989.4e12 FLOP/s)",
            "meta": {k: results.get(k) for k in ("command", "device", "started", "versions", "python", "steps",
                                                  "warmup", "rows", "total_s", "setup_s")},
            "prep_gpu_host": results.get("prep"), "prep_cpu": prep_cpu}


def finalize(results: dict) -> dict:
    c = results["configs"]
    if "axolotl_default" in c and "recipe_mb2" in c:
        results["loss_check"] = loss_check(c["axolotl_default"], c["recipe_mb2"])
    return results


def _replace_section(text: str, title: str, body: str) -> str:
    """Replace the `## title` section (up to the next `## `) or append it; other sections stay as they are."""
    lines = text.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {title}"), None)
    block = [f"## {title}", ""] + body.rstrip("\n").split("\n")
    if start is None:
        return "\n".join(lines + [""] + block) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    # keep other tools' markers (<!-- x:start -->) that sit right before the next section
    while end > start + 1 and lines[end - 1].startswith("<!--"):
        end -= 1
    return "\n".join(lines[:start] + block + [""] + lines[end:]).rstrip("\n") + "\n"


def write_docs(results: dict, doc: Path, json_path: Path, prep_cpu: dict | None = None) -> None:
    if prep_cpu is None and json_path.exists():  # keep the CPU prep figures of an earlier --prep-only run
        try:
            prep_cpu = json.loads(json_path.read_text(encoding="utf-8")).get("prep_cpu")
        except (ValueError, OSError):
            prep_cpu = None
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(gpu_json(results, prep_cpu), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    text = _replace_section(text, "Training throughput (GPU)", train_section(results))
    text = _replace_section(text, "Data preparation", prep_section(results, prep_cpu))
    doc.write_text(text, encoding="utf-8")


def _shape_line(shape_name: str) -> str:
    s = SHAPES[shape_name]
    return (f"{shape_name} shape (hidden {s['hidden_size']}, MLP {s['intermediate_size']}, {s['num_hidden_layers']} "
            f"layers, {s['num_attention_heads']} heads / {s['num_key_value_heads']} KV, vocab {s['vocab_size']:,}; "
            f"{linear_params(s) / 1e9:.2f}e9 matmul parameters)")


def train_section(results: dict) -> str:
    v = results.get("versions", {})
    c = results["configs"]
    vers = ", ".join(f"{k} {v[k]}" for k in PACKAGES if v.get(k))
    r = ratios(results)
    out = [
        "`make bench` (= `python -m ftr.bench`, needs one CUDA GPU and Axolotl; see docs/WHEELHOUSE.md for an offline",
        "host) runs every config below in one process tree, one after another, on the same data and model shape, and",
        "rewrites this section and `docs/benchmarks/train-gpu.json`. The figures below come from this one run:",
        "",
        f"    {results.get('command')}",
        "",
        *([f"({results['command_environment']})", ""] if results.get("command_environment") else []),
        f"- GPU: {results.get('device')} (one); Python {results.get('python')}; {vers}.",
        f"- Started {results.get('started')}, {results.get('total_s')} s in all (model build and data prep included).",
        f"- Model: random-init {_shape_line('qwen2.5-7b')}, built on the GPU in bf16 (throughput does not depend on",
        "  weight values); the real Qwen2.5 tokenizer; LoRA r16 / alpha 32 on all linear layers; bf16; "
        "`attn_implementation: sdpa`.",
        f"- Data: {results.get('rows'):,} rephrase rows (`data/examples/make_examples.py --rephrase-rows "
        f"{results.get('rows')} --seed 1`, converted by `ftr convert`, all used for training); sequence_len 2048.",
        f"- {results.get('steps')} optimizer steps per config, gradient accumulation 1 (tokens/s per GPU does not "
        f"depend on it); the first {results.get('warmup')} steps are left out of the timing.",
        "",
        train_table(results, list(MAIN)),
        "",
    ]
    if r:
        main_r = [f"{k} = **{val}x**" for k, val in r.items() if not k.startswith("trainable")]
        tr_r = [f"{k.removeprefix('trainable ')} = {val}x" for k, val in r.items() if k.startswith("trainable")]
        out.append("Ratios, same run: " + ", ".join(main_r) + " (trainable tokens/s: " + ", ".join(tr_r) + ").")
        out.append("")
    rc = c.get("recipe", {})
    if rc.get("tokens_per_s_per_gpu"):
        verdict = "meets" if rc["tokens_per_s_per_gpu"] >= 12000 else "misses"
        out.append(f"(c) {verdict} the 12,000 tokens/s/GPU target on total tokens ({_fmt(rc['tokens_per_s_per_gpu'])}); "
                   f"on trainable tokens alone it runs {_fmt(rc.get('trainable_tokens_per_s'))}/s.")
        out.append("")
    out += [
        "Columns. *tokens/s/GPU*: real tokens (padding excluded) through forward and backward per second, summed over",
        "the timed steps, divided by their wall time (GPU synchronised at each step end). *trainable tokens/s*: the",
        "tokens that carry a label (assistant answers and their `<|im_end|>`), which is what Axolotl logs as",
        "`tokens/train_per_sec_per_gpu`; system and user prompts are about a third of every row. *padding*: share of",
        "token slots that are padding. *peak GiB*: largest `torch.cuda.max_memory_allocated` of the run (Axolotl's",
        "`memory/max_allocated`). *MFU*: tokens/s x 4 x N / 989.4e12, with N the matmul parameters above and 989.4",
        "TFLOP/s the H100 SXM dense bf16 peak: LoRA runs a forward (2N FLOP/token) and a backward through the frozen",
        "weights for activations only (2N); gradient checkpointing's recomputed forward (another 2N) is work the",
        "model did not need, so it is not counted; attention scores (~1% at these lengths) and LoRA's own matmuls",
        "(<1%) are left out. On the 798 TFLOP/s an 8192-cube bf16 matmul reaches on this GPU, 4N/token caps LoRA at",
        f"about {798e12 / flops_per_token(SHAPES['qwen2.5-7b']):,.0f} tokens/s.",
        "",
        "Settings (what differs; everything else is the recipe's):",
        "",
        "| config | packing | micro-batch | grad. ckpt | LoRA dropout | Liger | LoRA kernels | optimizer |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for key in [k for k in ORDER if k in c and c[k].get("settings")]:
        st = c[key]["settings"]
        out.append(f"| `{key}` | {st.get('sample_packing')} | {st.get('micro_batch_size')} | "
                   f"{st.get('gradient_checkpointing')} | {st.get('lora_dropout')} | {st.get('liger')} | "
                   f"{st.get('lora_mlp_kernel')} | {st.get('optimizer')} |")
    out += ["", "### Ablation: what each lever of (c) buys", "",
            "Each row is (c) with one lever taken out, in the same run; gain = (c)'s tokens/s over the row's.", "",
            train_table(results, list(ABLATION)), "", "| lever kept in (c) | gain |", "|---|---:|"]
    for lever, _key, gain, note in lever_gains(results):
        out.append(f"| {lever} | {f'{gain:.2f}x' if gain else note} |")
    lc = results.get("loss_check")
    out += ["", "### Loss: do the speed levers change the maths?", ""]
    if lc:
        out += ["`recipe_mb2` is (c) at micro-batch 2: the same packed batches, optimizer steps and learning-rate",
                "schedule as (b), with all of (c)'s speed levers (no checkpointing, Liger, LoRA kernels, fused AdamW)",
                "and (c)'s LoRA dropout 0 instead of 0.05. Logged training loss (mean of each 5 steps):", "",
                "| step | " + " | ".join(str(s) for s in lc["steps"]) + " |",
                "|---|" + "---:|" * len(lc["steps"]),
                "| (b) axolotl_default | " + " | ".join(f"{x:.3f}" for x in lc["loss_b"]) + " |",
                "| (c) at micro-batch 2 | " + " | ".join(f"{x:.3f}" for x in lc["loss_c"]) + " |", "",
                f"Largest difference {lc['max_abs_diff']} (mean {lc['mean_diff']:+}) at losses of 7.5-12.6."]
        b, rc_ = c.get("axolotl_default", {}), c.get("recipe", {})
        if b.get("tokens_per_step") and rc_.get("tokens_per_step") and rc_.get("loss") and b.get("loss"):
            lb = {int(k): x for k, x in b["loss"].items()}
            lcm = {int(k): x for k, x in rc_["loss"].items()}
            pairs = [(s, s * 2) for s in sorted(lcm) if s * 2 in lb]
            if pairs:
                txt = ", ".join(f"(c) step {s} {lcm[s]:.2f} vs (b) step {t} {lb[t]:.2f}" for s, t in pairs)
                out += ["", f"At equal training tokens with (c) as shipped (micro-batch 4 = twice (b)'s tokens per "
                            f"optimizer step, so half the steps): {txt}. That gap is the optimizer taking half as many "
                            "steps early in training, not the kernels (the micro-batch-2 rows above match)."]
    else:
        out.append("Not measured in this run (`recipe_mb2` or `axolotl_default` missing).")
    out += ["", "### QLoRA (mistral-stories)", "", train_table(results, list(QLORA)), "",
            f"Model: random-init {_shape_line('mistral-7b')}, nf4 through bitsandbytes, as shipped in "
            "recipes/mistral-stories (r64, all linear, no packing, gradient checkpointing), gradient accumulation 1.",
            ""]
    if results.get("notes", {}).get("train"):
        out += ["### Notes on this run", "", results["notes"]["train"], ""]
    return "\n".join(out)


def prep_section(results: dict, prep_cpu: dict | None = None) -> str:
    out = [
        "`axolotl preprocess` of the rephrase rows spends less than half of its time tokenising. Profiled on CPU (2,000 rows,",
        "Axolotl 0.19.0, datasets 4.8.4, transformers 5.16.1), the rest went to:",
        "",
        "1. **Fingerprinting.** Every `Dataset.map`/`filter` dill-pickles its function to name a cache file. Axolotl's",
        "   tokenise function holds the tokenizer, and a transformers-5 Qwen2.5 tokenizer keeps its 151,643-entry vocab",
        "   and 294,166 merges as Python objects: ~1.2 M objects per hash, ~1 s per map (7 s of a 27 s run), paid again",
        "   by every worker when `dataset_num_proc` > 1. Preprocess runs with datasets caching off, so the hash names",
        "   nothing.",
        "2. **Saving.** Axolotl calls `save_to_disk(num_proc>=1)`; datasets then writes through a *spawn* pool whose",
        "   child re-imports the caller's `__main__` (torch, Axolotl, bitsandbytes) and is sent the whole table by",
        "   pickle: up to ~7 s for 2,000 rows on CPU here, ~22 s on the GPU host (earlier measurement), for a write",
        "   that takes well under a second in-process.",
        "3. **The model \"pre-download\"** at the end re-opens the base model on the meta device, pointless for a local",
        "   folder offline.",
        "",
        "`ftr.prep` (`python -m ftr.prep CONFIG`, now what `ftr train` runs) is Axolotl's own preprocess with those",
        "three removed: tokenizers are hashed by a digest of their backend JSON plus their small Python state (still",
        "content-derived), `save_to_disk` writes in-process with the same shard count, and the pre-download is skipped",
        "for a local base model. Tokenisation is untouched: the prepared Arrow file is byte-identical to Axolotl's, and",
        "the mask and template-parity tests (tests/recipes/test_masking.py) pass. `FTR_PREP_PLAIN=1` runs the original.",
        "",
    ]
    if prep_cpu and prep_cpu.get("runs"):
        out += [f"On this repository's CPU machine ({prep_cpu.get('machine')}; Python {prep_cpu.get('python')}), "
                f"measured by `{prep_cpu.get('command')}`:", "",
                "| rows | path | dataset_num_proc | seconds |", "|---:|---|---:|---:|"]
        grouped: dict = {}
        for run in prep_cpu["runs"]:
            grouped.setdefault((run["rows"], run["mode"], run["dataset_num_proc"]), []).append(run["seconds"])
        for (rows, mode, procs), secs in grouped.items():
            out.append(f"| {rows:,} | {mode} | {procs} | {' / '.join(str(x) for x in secs)} |")
        if any(len(v) > 1 for v in grouped.values()):
            out += ["", "(several figures: repeated runs of the same command, in order.)"]
        out.append("")
    host = results.get("prep") or {}
    if host:
        out += [f"On the GPU host ({results.get('device')} machine, 16 cores), inside the benchmark run above:", "",
                "| rows | path | seconds |", "|---:|---|---:|"]
        for key, run in host.items():
            rows = key.split("_")[0]
            out.append(f"| {int(rows):,} | {run['mode']} | {run['seconds']} |")
        out += ["", "Earlier host measurements of plain `axolotl preprocess` for 2,000 rows, not from this run: ~107 s "
                "(issue), 79 s with `dataset_num_proc: 1` and 123 s with the default 16 workers (2026-11-22)."]
        missing = [r for r in (2000, 20000) if str(r) not in host]
        if missing:
            out.append(f"Not measured on the host in this run: {', '.join(f'{m:,}' for m in missing)} rows "
                       "(device time ran out; rerun `make bench`).")
        out.append("")
    if results.get("notes", {}).get("prep"):
        out += [results["notes"]["prep"], ""]
    out += ["With fingerprinting gone, workers pay for themselves only on larger data: keep `dataset_num_proc: 1`",
            "for a few thousand rows, and raise it (e.g. `SET='dataset_num_proc=8'`) for tens of thousands."]
    return "\n".join(out)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m ftr.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, 2 configs, 4 steps (tests)")
    p.add_argument("--only", nargs="*", help=f"configs to run (default all): {', '.join(ORDER)}")
    p.add_argument("--rows", type=int, default=2000)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5, help="steps left out of the timing")
    p.add_argument("--prep-rows", type=int, nargs="*", default=[20000], help="also time data prep at these sizes")
    p.add_argument("--prep-plain", action="store_true", help="also time Axolotl's preprocess without ftr.prep")
    p.add_argument("--prep-only", action="store_true", help="only time data preparation (no GPU needed)")
    p.add_argument("--prep-procs", type=int, nargs="*", help="with --prep-only: also time these dataset_num_proc")
    p.add_argument("--prep-results", help="prep.json of a --prep-only run, for the Data preparation section")
    p.add_argument("--workdir", default=str(BUILD_DIR / "bench"))
    p.add_argument("--results-dir", default=str(BUILD_DIR / "bench" / "results"))
    p.add_argument("--model-root", default=os.environ.get("FTR_BENCH_MODELS", "/tmp/ftr-bench-models"))
    p.add_argument("--qwen-tokenizer", default=str(TINY_MODELS_DIR / "qwen2"))
    p.add_argument("--mistral-tokenizer", default=str(TINY_MODELS_DIR / "mistral"))
    p.add_argument("--time-budget-s", type=float, default=0, help="skip configs that would not finish in time")
    p.add_argument("--min-run-s", type=float, default=60, help="time a config needs (for --time-budget-s)")
    p.add_argument("--run-timeout-s", type=float, default=900)
    p.add_argument("--logs-dir", help="where the logs go (default: --results-dir)")
    p.add_argument("--build-model", nargs=3, metavar=("SHAPE", "OUT", "TOKENIZER_DIR"), help=argparse.SUPPRESS)
    p.add_argument("--write-docs", action=argparse.BooleanOptionalAction, default=None,
                   help="write docs/BENCHMARKS.md and docs/benchmarks/train-gpu.json (default: on for a full GPU run)")
    p.add_argument("--from-results", help="results.json of an earlier run: only write the docs")
    p.add_argument("--doc", default=str(REPO_ROOT / "docs" / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(REPO_ROOT / "docs" / "benchmarks" / "train-gpu.json"))
    args = p.parse_args(argv)
    args.command = "python -m ftr.bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.write_docs is None:
        args.write_docs = not (args.smoke or args.prep_only or args.only or args.time_budget_s)
    if args.smoke:
        args.rows, args.steps, args.warmup = min(args.rows, 48), min(args.steps, 4), min(args.warmup, 1)
        args.only = args.only or ["recipe", "seed_baseline"]
        args.prep_rows = []
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.build_model:
        shape, out, tok = args.build_model
        build_model(shape, Path(out), Path(tok))
        return 0
    if args.prep_only:
        Path(args.results_dir).mkdir(parents=True, exist_ok=True)
        run_prep_only(args)
        return 0
    if args.from_results:
        results = json.loads(Path(args.from_results).read_text(encoding="utf-8"))
        if args.logs_dir:
            apply_log_peaks(results, Path(args.logs_dir))
            for entry in results["configs"].values():
                if entry.get("tokens_per_s_per_gpu"):
                    add_mfu(entry, SHAPES[entry["shape"]], results.get("device"))
    else:
        if not args.smoke and device_name() is None:
            print("ftr.bench needs a CUDA GPU (use --smoke on CPU)", file=sys.stderr)
            return 2
        results = run_bench(args)
    finalize(results)
    print(train_table(results))
    print(json.dumps(ratios(results)))
    if args.write_docs:
        prep_cpu = json.loads(Path(args.prep_results).read_text(encoding="utf-8")) if args.prep_results else None
        write_docs(results, Path(args.doc), Path(args.json), prep_cpu)
    failed = [k for k, v in results["configs"].items() if v.get("rc")]
    return 1 if failed and not args.from_results else 0


if __name__ == "__main__":
    sys.exit(main())
