"""`make bench` / `python -m ftr.bench`: training throughput of qwen-rephrase, side by side, on one GPU.

One command, one run, the same data and model shape for every config:
  (a) seed_baseline    the seed-000 setup: no packing, micro-batch 4, gradient checkpointing, LoRA dropout 0.1
  (b) axolotl_default  Axolotl's defaults with sample packing: micro-batch 2, gradient checkpointing, dropout 0.05
  (c) recipe           `qwen-rephrase` exactly as shipped (recipes/qwen-rephrase/recipe.yaml)
then a leave-one-out ablation of (c)'s levers, and QLoRA at mistral-stories' shape.

Every config is rendered by ftr's own recipe machinery (load_recipe + render), pointed at a random-init model of
the real 7B shape built on the GPU (throughput does not depend on weight values), the real tokenizer, and rows
from data/examples/make_examples.py; Axolotl trains it (`python -m axolotl.cli.train`), with the plugin
ftr.bench.plugin recording per-step time and token counts. Results: --results-dir/results.json (+ logs); with
--write-docs the table goes into docs/BENCHMARKS.md (## Training throughput (GPU), ## Data preparation) and the
figures into docs/benchmarks/train-gpu.json. `--from-results FILE --write-docs` re-renders the docs from a
results.json brought back from a GPU host. `--smoke` runs the same pipeline on CPU with the tiny model (tests).
The configs and the arithmetic live in ftr.bench.train_setups, the tables and docs in ftr.bench.train_report.
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

from ftr.bench.rows import Pipeline, Row, start_logged
from ftr.bench.train_report import finalize, ratios, train_table, write_docs
from ftr.bench.train_setups import (ALL, DROP_PLUGINS, LOSS_CURVE, ORDER, PACKAGES, add_mfu, apply_log_peaks,
                                   row_need_s, smoke_sets, summarise_steps)
from ftr.paths import BUILD_DIR, REPO_ROOT, TINY_MODELS_DIR
from ftr.tiny_models import SHAPES
from ftr.train import versions as installed_versions


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
    """A random-init model of the real shape in bf16, built on the GPU and saved once (no weights travel)."""
    started = time.perf_counter()
    import torch

    from ftr.tiny_models import build

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    log(f"imports done ({device})")
    built = build(shape_name, out.parent, device, "bfloat16", tokenizer_from=tokenizer_dir, log=log)
    log("tokenizer saved, done")
    return built


def build_model_subprocess(shape_name: str, out: Path, tokenizer_dir: Path, logs: Path) -> Path:
    code, _ = run_logged([sys.executable, "-m", "ftr.bench", "--build-model", shape_name, str(out), str(tokenizer_dir)],
                         logs / f"build-{shape_name}.log")
    if code != 0:
        raise RuntimeError(f"building the {shape_name} model failed:\n{tail(logs / f'build-{shape_name}.log')}")
    return out


class Models:
    """The random-init models of the run, each built once on the GPU by its own subprocess, all at once, while the
    bench goes on with what needs no GPU (data preparation, the first row's start-up).

    Rows name a model by `path(shape)`. While the model is being built that is a folder holding only its config.json
    (all that Axolotl reads of the model before `pre_model_load`, where ftr.bench.plugin holds the row), so a row's
    start-up need not wait for the build; `wait` links the built files in beside it before any row is released."""

    def __init__(self, args, logs: Path, timings: dict, workdir: Path | None = None):
        self.args, self.logs, self.timings = args, logs, timings
        self.views = (workdir or Path(args.workdir)) / "models"
        self.ready: dict[str, Path] = {}
        self.building: dict[str, tuple] = {}
        self.errors: dict[str, str] = {}

    def start(self, shape: str, tokenizer_dir: Path) -> None:
        out = Path(self.args.model_root) / shape
        if (out / "config.json").exists():
            self.ready[shape] = out
            return
        log = self.logs / f"build-{shape}.log"
        cmd = [sys.executable, "-m", "ftr.bench", "--build-model", shape, str(out), str(tokenizer_dir)]
        proc, fh = start_logged(cmd, log, run_env(), REPO_ROOT)
        self.building[shape] = (proc, fh, time.monotonic(), out)

    def path(self, shape: str) -> Path:
        """The folder rows name as their model: the built one, or (while it builds) its view, config.json only."""
        if shape in self.ready:
            return self.ready[shape]
        view = self.views / shape
        if not (view / "config.json").exists():
            from ftr.tiny_models import model_classes

            model_classes(shape)[0].save_pretrained(view)
        return view

    def _link_view(self, shape: str, built: Path) -> Path:
        """Fill the view of `shape` (if rows were given it) with links to the built files; the folder rows use."""
        view = self.views / shape
        if not view.exists():
            return built
        for item in built.iterdir():
            link = view / (item.name + ".link")
            link.unlink(missing_ok=True)
            link.symlink_to(item.resolve())
            os.replace(link, view / item.name)  # atomic: config.json is never missing for a row reading it
        return view

    def wait(self, shape: str) -> bool:
        """Block until `shape` is built (starting its build if nobody did); False if it failed."""
        if shape in self.ready:
            return True
        if shape in self.errors:
            return False
        if shape not in self.building:
            self.start(shape, Path(self.args.qwen_tokenizer if shape.startswith("qwen") else self.args.mistral_tokenizer))
            if shape in self.ready:
                return True
        proc, fh, start, out = self.building.pop(shape)
        waited = time.monotonic()
        code = proc.wait()
        fh.close()
        self.timings[f"build_{shape}"] = round(time.monotonic() - start, 1)
        self.timings[f"build_{shape}_waited_s"] = round(time.monotonic() - waited, 1)
        if code != 0:
            self.errors[shape] = tail(self.logs / f"build-{shape}.log")
            return False
        self.ready[shape] = self._link_view(shape, out)
        return True

    def close(self) -> None:
        for proc, fh, *_ in self.building.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            fh.close()
        self.building.clear()


def _smoke_model(shape: str) -> Path:
    """The tiny CPU stand-in of `shape` (its own tokenizer inside)."""
    from ftr.tiny_models import build

    return build("qwen2" if shape.startswith("qwen") else "mistral", TINY_MODELS_DIR)


def render_config(key: str, model_dir: Path, data: Path, workdir: Path, steps: int, smoke: bool,
                  tokenizer: Path | None = None) -> dict:
    """The Axolotl config of one benchmarked setup: ftr's own rendering of the recipe, then the bench's changes
    (model, tokenizer folder if given, data, steps, no eval or checkpoints, the step recorder)."""
    from ftr.recipes import load_recipe, render

    label, recipe_id, sets, raw, _shape = ALL[key]
    sets = dict(sets)
    if smoke:
        sets.update(smoke_sets())
    recipe = load_recipe(recipe_id, sets)
    cfg = yaml.safe_load(render(recipe, command=f"ftr.bench {key}"))
    cfg["base_model"] = str(model_dir)
    cfg.pop("tokenizer_config", None)
    if tokenizer is not None:
        cfg["tokenizer_config"] = str(tokenizer)
    cfg["datasets"][0]["path"] = str(data)
    cfg.pop("test_datasets", None)
    cfg["val_set_size"] = 0
    cfg["dataset_prepared_path"] = str(workdir / "prepared")
    cfg["dataset_num_proc"] = 1
    cfg["output_dir"] = str(workdir / "runs" / key)
    cfg.update(max_steps=steps, num_epochs=1, eval_steps=None, evals_per_epoch=None, saves_per_epoch=None,
               save_steps=None, save_strategy="no", early_stopping_patience=None, load_best_model_at_end=False,
               logging_steps=1 if smoke else 5, save_total_limit=None)
    raw = dict(raw)
    drop = raw.pop(DROP_PLUGINS, ())
    cfg.update(raw)
    cfg["plugins"] = [p for p in cfg.get("plugins") or [] if p not in drop] + ["ftr.bench.plugin.BenchPlugin"]
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


def run_logged(cmd: list[str], log: Path, timeout: float | None = None, env: dict | None = None) -> tuple[int, float]:
    """Run cmd with run_env() (plus `env`), its output into log; (exit code, seconds), 124 on timeout."""
    start = time.monotonic()
    proc, fh = start_logged(cmd, log, {**run_env(), **(env or {})}, REPO_ROOT)
    with fh:
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = 124
    return code, time.monotonic() - start


def prepare_row(cfg: dict, cfg_path: Path, cmd: list[str], name: str, logs: Path, env: dict | None = None) -> Row:
    """Write cfg to cfg_path; the Row that trains it with cmd (a launcher ending in, or naming, cfg_path), its log
    logs/train-NAME.log."""
    cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return Row(name=name, cmd=cmd, log=logs / f"train-{name}.log",
               steps_file=Path(cfg["output_dir"]) / "bench_steps.jsonl", env=dict(env or {}), cfg=cfg)


def summarise_row(row: Row, code: int, seconds: float, warmup: int, logs: Path, times: dict | None = None) -> dict:
    """What ftr.bench.plugin recorded for a finished row: rc, wall_s, the figures after `warmup` steps, train_s
    (train begin to end), the start-up phases, the peak memory, and the log's tail on failure."""
    recorded = [json.loads(line) for line in row.steps_file.read_text().splitlines() if line.strip()] \
        if row.steps_file.exists() else []
    entry = {"rc": code, "wall_s": round(seconds, 1), **summarise_steps(recorded, warmup)}
    marks = {r["event"]: r["t"] for r in recorded if r.get("event") in ("train_begin", "train_end")}
    if len(marks) == 2:
        entry["train_s"] = round(marks["train_end"] - marks["train_begin"], 1)
    if times:
        entry["phases_s"] = phases(recorded, times)
        entry["started_early_s"] = times["started_early_s"]
    apply_log_peaks({"configs": {row.name: entry}}, logs)
    if code != 0:
        entry["error_tail"] = tail(row.log)
    return entry


def phases(recorded: list[dict], times: dict) -> dict:
    """Where a row's wall time went, from the plugin's wall-clock marks and the process's start and exit:
    start_s (imports, config, data: before the GPU is needed; imports_s is its part up to the plugin's registration),
    held_s (waiting for the previous row), load_s (go to model built), setup_s (model built to training), train_s,
    teardown_s (training end to exit)."""
    wall = {}
    for r in recorded:
        if "wall" in r:
            wall.setdefault(r["event"], r["wall"])  # the first of a mark made twice (Axolotl registers plugins twice)
    spans = {"start_s": ("spawned", "ready"), "imports_s": ("spawned", "registered"), "held_s": ("ready", "go"),
             "load_s": ("go", "model_built"), "setup_s": ("model_built", "train_begin"),
             "train_s": ("train_begin", "train_end"), "teardown_s": ("train_end", "exited")}
    at = {**wall, "spawned": times.get("spawned"), "exited": times.get("exited")}
    return {name: round(at[b] - at[a], 1) for name, (a, b) in spans.items() if at.get(a) and at.get(b)}


def train_and_summarise(cfg: dict, cfg_path: Path, cmd: list[str], name: str, logs: Path, warmup: int,
                        timeout: float | None, env: dict | None = None) -> dict:
    """Train one config on its own (no process started early): prepare_row, run it, summarise_row."""
    row = prepare_row(cfg, cfg_path, cmd, name, logs, env)
    row.steps_file.unlink(missing_ok=True)
    code, seconds = run_logged(cmd, row.log, timeout, env=env)
    return summarise_row(row, code, seconds, warmup, logs)


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
    # `--only` with no names runs no table config (with --loss-steps: only the loss curves)
    keys = [k for k in ORDER if k in args.only] if args.only is not None else list(ORDER)
    plan = [(key, args.steps, results["configs"], key, False) for key in keys]
    if args.loss_steps:
        results["loss_curve_runs"] = {}
        plan += [(key, args.loss_steps, results["loss_curve_runs"], f"loss-{key}", True) for key in LOSS_CURVE]
    shapes = list(dict.fromkeys(ALL[key][4] for key, *_ in plan))
    tokenizers = {shape: Path(args.qwen_tokenizer if shape.startswith("qwen") else args.mistral_tokenizer)
                  for shape in shapes}
    models = Models(args, logs, results["setup_s"], workdir)
    if args.smoke:
        for shape in shapes:
            models.ready[shape] = tokenizers[shape] = _smoke_model(shape)
    else:
        for shape in shapes:  # all at once, while the data is prepared: each writes its file straight from the GPU
            models.start(shape, tokenizers[shape])
    save()

    # Data preparation: once for the shared tokenisation (every qwen config below reuses it). Rows name the
    # tokenizer folder, not the model's, so this needs only the model's config.json, not its weights, and its
    # prepared data is theirs (Axolotl keys prepared data by the tokenizer's path, not the model's).
    qwen_tok = tokenizers.get("qwen2.5-7b", _smoke_model("qwen2.5-7b") if args.smoke else Path(args.qwen_tokenizer))
    prep_cfg = render_config("recipe", qwen_tok if args.smoke else models.path("qwen2.5-7b"), data, workdir,
                             args.steps, args.smoke, tokenizer=qwen_tok)
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
    pipeline = Pipeline(run_env(), REPO_ROOT, workdir / "gates", overlap=args.overlap)
    prepared: dict[str, Row] = {}

    def need(key: str, steps: int, partial: bool) -> float:
        return row_need_s(key, steps, args.steps, args.min_run_s, partial)

    def prepare(key: str, steps: int, name: str) -> Row:
        if name not in prepared:
            shape = ALL[key][4]
            cfg = render_config(key, models.path(shape), data if shape.startswith("qwen") else _stories_data(workdir, args),
                                workdir, steps, args.smoke, tokenizer=tokenizers[shape])
            cfg["output_dir"] = str(workdir / "runs" / name)
            path = workdir / "configs" / f"{name}.yaml"
            profile = {"FTR_BENCH_PROFILE": str(args.profile_steps)} \
                if args.profile_steps and key in args.profile_rows and name == key else {}
            prepared[name] = prepare_row(cfg, path, [sys.executable, "-m", "axolotl.cli.train", str(path)], name, logs,
                                         env=profile)
        return prepared[name]

    try:
        if not args.smoke and plan:
            # the first row's process starts up (imports, config, data) while the models are still being built; it
            # is released once they all are (no row trains beside a build)
            if left() >= need(plan[0][0], plan[0][1], plan[0][4]):
                pipeline.prestart([prepare(plan[0][0], plan[0][1], plan[0][3])])
            for shape in shapes:
                models.wait(shape)
        for i, (key, steps, store, name, partial) in enumerate(plan):
            label, recipe_id, _sets, _raw, shape = ALL[key]
            entry = store[key] = {"label": label, "recipe": recipe_id, "shape": shape, "steps": steps}
            if left() < need(key, steps, partial):
                entry["skipped"] = f"time budget ({left():.0f} s left, {need(key, steps, partial):.0f} s needed)"
                pipeline.drop()
                save()
                continue
            if not models.wait(shape):
                entry["skipped"] = f"building the {shape} model failed: {models.errors.get(shape)}"
                pipeline.drop()
                save()
                continue
            if left() < need(key, steps, partial):
                entry["skipped"] = "time budget (after building the model)"
                pipeline.drop()
                save()
                continue
            row = prepare(key, steps, name)
            then, budget = [], left() - need(key, steps, partial)
            for nkey, nsteps, _s, nname, npartial in plan[i + 1:i + 1 + pipeline.depth]:
                budget -= need(nkey, nsteps, npartial)
                if ALL[nkey][4] not in models.ready or budget < 0:
                    break
                then.append(prepare(nkey, nsteps, nname))
            timeout = max(30.0, min(args.run_timeout_s, left() - 5)) if deadline else args.run_timeout_s
            code, seconds, times = pipeline.run(row, timeout, then)
            entry.update(summarise_row(row, code, seconds, args.warmup, logs, times))
            cfg = row.cfg
            entry["settings"] = {k: cfg.get(k) for k in ("sample_packing", "micro_batch_size",
                                                         "gradient_accumulation_steps", "gradient_checkpointing",
                                                         "lora_dropout", "optimizer", "lora_mlp_kernel", "sequence_len",
                                                         "adapter", "load_in_4bit", "lora_r", "torch_compile",
                                                         "sdpa_varlen")} \
                | {"liger": any("Liger" in p for p in cfg.get("plugins", []))}
            add_mfu(entry, SHAPES[shape], None if args.smoke else results["device"])
            save()
    finally:
        pipeline.close()
        models.close()

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


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m ftr.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny model, 2 configs, 4 steps (tests)")
    p.add_argument("--only", nargs="*", help=f"configs to run (default all; none with --loss-steps: only the "
                                             f"loss curves): {', '.join(ORDER)}")
    p.add_argument("--rows", type=int, default=2000)
    # 15 steps (4 of warm-up) per row: ~20 s of GPU time a row, so that the 18 rows without torch.compile fit about
    # ten minutes (each torch_compile row adds a cold compile of ~275 s: COLD_COMPILE_S)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--warmup", type=int, default=4, help="steps left out of the timing")
    p.add_argument("--loss-steps", type=int, default=0,
                   help="also train (c) and (c) without its kernel levers this many steps each: the loss curves")
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
    p.add_argument("--profile-steps", type=int, default=0,
                   help="torch.profiler over the last N steps of the --profile-rows (left out of their throughput)")
    p.add_argument("--profile-rows", nargs="*", default=["recipe"])
    p.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=True,
                   help="start each row's process while the previous row trains (held before its model load)")
    p.add_argument("--logs-dir", help="where the logs go (default: --results-dir)")
    p.add_argument("--build-model", nargs=3, metavar=("SHAPE", "OUT", "TOKENIZER_DIR"), help=argparse.SUPPRESS)
    p.add_argument("--write-docs", action=argparse.BooleanOptionalAction, default=None,
                   help="write docs/BENCHMARKS.md and docs/benchmarks/train-gpu.json (default: on for a full GPU run)")
    p.add_argument("--from-results", help="results.json of an earlier run: only write the docs")
    p.add_argument("--doc", default=str(REPO_ROOT / "docs" / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(REPO_ROOT / "docs" / "benchmarks" / "train-gpu.json"))
    args = p.parse_args(argv)
    args.command = "python -m ftr.bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    if args.only == [] and not args.loss_steps:
        p.error("--only with no configs runs nothing without --loss-steps")
    if args.write_docs is None:
        args.write_docs = not (args.smoke or args.prep_only or args.only is not None or args.time_budget_s)
    if args.smoke:
        args.rows, args.steps, args.warmup = min(args.rows, 48), min(args.steps, 4), min(args.warmup, 1)
        args.only = ["recipe", "seed_baseline"] if args.only is None else args.only
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
