"""`ftr train RECIPE`: raw data -> converted splits -> Axolotl YAML -> `axolotl preprocess` -> `accelerate launch`.

Each run lives in its own folder, build/<id>/runs/<UTC time>-<identity>/ (data/, axolotl.yaml, adapter/ with the
checkpoints, logs/, run.json); build/<id>/current points at the last completed one, which is what eval, merge and
serve use (ftr.runs has the layout). One `ftr train` per build folder at a time (a lock). Re-running the same
command after a crash or a kill resumes the interrupted run from its newest complete checkpoint, unless its inputs
changed (then it refuses) or --fresh is given. Tokenised data is shared across runs in build/<id>/prepared/<key>/.
"""

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import click
import yaml

from ftr import data_accounting, runs
from ftr.converters.recipe_data import convert_recipe_data
from ftr.paths import ACCELERATE_DIR, REPO_ROOT, TINY_MODELS_DIR, resolve, run_dir
from ftr.recipes import Recipe, RecipeError, input_hashes, invocation, prepared_key, render, sha256_file
from ftr.recipes_cli import load_or_fail, set_option

PACKAGES = ("ftr", "axolotl", "torch", "transformers", "peft", "trl", "accelerate", "datasets")
TOKENISING = ("axolotl", "transformers", "tokenizers", "datasets")  # versions that can change prepared tokens
PROGRESS = re.compile(r"\|\s*(\d+)/(\d+) \[")  # tqdm's "| 5/12 [00:10<00:14": how far a trainer got
GRACE_S = float(os.environ.get("FTR_STOP_GRACE_S", 30))  # how long a signalled trainer may take to stop
IDENTITY = {"data": "the data file", "recipe": "the recipe settings or templates", "tokenizer": "the tokenizer",
            "base_model": "the base model"}


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


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP reached ftr while no child was running."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class Supervisor:
    """Runs ftr's children each in its own process group and turns SIGINT/SIGTERM/SIGHUP into a clean stop: the
    signal is passed to the child's whole group (accelerate's launcher and the trainer under it), the child gets
    GRACE_S seconds, then the group is killed; a second signal kills it at once. The signal is remembered, so the
    caller reports an interrupted run, whatever the child's own exit code says."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, grace: float = GRACE_S):
        self.grace, self.signum, self.child, self._old = grace, None, None, {}
        self.on_child = lambda pgid: None  # told each child's process group (the lock file records it)
        self.bars: dict[int, int] = {}  # progress bar total -> the last count the child printed

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._old.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        first, self.signum = self.signum is None, self.signum or signum
        if self.child is None:
            raise Interrupted(signum)
        if first:
            click.echo(f"ftr: {signal.Signals(signum).name}: passing it to the trainer (process group {self.child}); "
                       f"it has {self.grace:.0f} s to stop", err=True)
            _killpg(self.child, signum)
            timer = threading.Timer(self.grace, _killpg, (self.child, signal.SIGKILL))
            timer.daemon = True
            timer.start()
        else:
            click.echo(f"ftr: second signal: killing process group {self.child}", err=True)
            _killpg(self.child, signal.SIGKILL)

    def run(self, cmd: list[str], log: Path, env: dict, keep_fds: tuple = (), append: bool = False) -> tuple[int, str]:
        """Run cmd with its output shown and kept in log; (exit code, the lines that matter for the outcome)."""
        if self.signum:
            raise Interrupted(self.signum)
        log.parent.mkdir(parents=True, exist_ok=True)
        click.echo(f"$ {' '.join(cmd)}   (log: {log})", err=True)
        summary = []
        with open(log, "a" if append else "w", encoding="utf-8") as fh:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT,
                                    text=True, errors="replace", bufsize=1, process_group=0, pass_fds=keep_fds)
            self.child = proc.pid
            self.on_child(proc.pid)
            for line in proc.stdout:  # ends when every process of the group has closed it
                fh.write(line)
                sys.stderr.write(line)
                if "train_runtime" in line:
                    summary.append(line)
                for done, total in PROGRESS.findall(line):
                    self.bars[int(total)] = int(done)
            code = proc.wait()
        _killpg(proc.pid, signal.SIGKILL)  # nothing of the group may outlive it (a trainer under a dead launcher)
        self.child = None
        return code, "".join(summary)


DEEPSPEED_ACCELS = ("zero2", "zero3")


def process_count(accel: str, num_processes: int | None) -> int:
    """Training processes ACCEL starts on this node: 1 for single, else --num-processes or every visible GPU."""
    if num_processes is not None and num_processes < 1:
        raise click.ClickException(f"--num-processes must be at least 1, not {num_processes}")
    if accel == "single":
        if num_processes not in (None, 1):
            raise click.ClickException(f"--accel single runs one process; for {num_processes} use --accel ddp "
                                       "(or zero2, zero3, fsdp2)")
        return 1
    count = num_processes or gpu_count()
    if count == 0:
        raise click.ClickException(f"--accel {accel}: no CUDA GPU is visible, so the process count cannot default to "
                                   "the GPUs; give --num-processes N (--accel ddp runs N CPU processes over gloo)")
    if accel == "ddp" and count < 2:
        raise click.ClickException("--accel ddp needs at least 2 processes (accelerate refuses one); one process is "
                                   "--accel single")
    return count


def cpu_ranks(accel: str) -> bool:
    """True when ACCEL would start several processes on a host without a visible CUDA GPU (DDP over gloo)."""
    return accel != "single" and gpu_count() == 0


def accelerate_command(accel: str, config: Path, num_processes: int | None) -> list[str]:
    """`accelerate launch` of Axolotl's trainer with recipes/accelerate/ACCEL.yaml on this node (launch_env gives
    its environment). Without a GPU only ddp runs several processes; each is told to load the model on the CPU."""
    accel_file = ACCELERATE_DIR / f"{accel}.yaml"
    if not accel_file.exists():
        known = ", ".join(sorted(p.stem for p in ACCELERATE_DIR.glob("*.yaml")))
        raise click.ClickException(f"unknown ACCEL {accel!r}; known: {known}")
    count = process_count(accel, num_processes)
    if cpu_ranks(accel) and accel != "ddp":
        raise click.ClickException(f"--accel {accel} shards the model over CUDA GPUs and none is visible; on CPU "
                                   f"use --accel ddp --num-processes {count} (or --accel single)")
    if accel in DEEPSPEED_ACCELS and importlib.util.find_spec("deepspeed") is None:
        raise click.ClickException(f"--accel {accel} is DeepSpeed ZeRO and deepspeed is not installed in this "
                                   "environment: `.venv/bin/pip install 'deepspeed>=0.18.6,<0.19'` (README: "
                                   "Multi-GPU and multi-node), or use --accel fsdp2")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accel_file)]
    if accel != "single":
        cmd += ["--num_processes", str(count)]
    cmd += ["-m", "axolotl.cli.train", str(config)]
    if cpu_ranks(accel):
        # Axolotl 0.19 maps the model of every rank to device LOCAL_RANK (a CUDA index) once WORLD_SIZE > 1, and
        # transformers then fails with "Cannot access accelerator device when none is available"; a max_memory
        # naming only the CPU makes Axolotl's loader place the whole model there instead.
        ram_gib = max(1, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30)
        cmd.append("--max_memory={'cpu': '%dGiB'}" % ram_gib)
    return cmd


def launch_env(accel: str, env: dict) -> dict:
    """The trainer's environment: on a host without a visible GPU, ACCELERATE_USE_CPU makes every rank join a gloo
    process group (accelerate's multi-GPU launcher starts the ranks, but only this tells them to use the CPU)."""
    if cpu_ranks(accel):
        env = {**env, "ACCELERATE_USE_CPU": "true"}
    return env


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


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


def model_fingerprint(base_model: str) -> str:
    """sha256 of the base model: its id, and for a local folder the name, size and content of each file (files
    over 64 MiB by their first and last MiB: a 7B's shards are not read whole at every start)."""
    digest = hashlib.sha256(base_model.encode())
    folder = resolve(base_model)
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file():
            continue
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as fh:
            if size <= 64 << 20:
                digest.update(fh.read())
            else:
                digest.update(fh.read(1 << 20))
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def choose_run(recipe: Recipe, recipe_dir: Path, identity: dict, fresh: bool) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint) to resume, or (None, None) for a new run. Resumes only the newest run, only when it
    did not complete, only from a whole checkpoint, and only when data, recipe, tokenizer and base model are the
    ones it started with; otherwise refuses (RunError) rather than continue on other inputs."""
    folders = [p for p in runs.run_folders(recipe_dir) if not p.name.startswith("legacy-")]
    if not folders or runs.status(folders[-1]) == "completed":
        return None, None
    last = folders[-1]
    if fresh:
        click.echo(f"--fresh: not resuming {last} ({runs.status(last)}); starting a new run", err=True)
        return None, None
    checkpoint, broken = runs.newest_complete(last / "adapter")
    for folder, why in broken:
        click.echo(f"skipping {folder.name} of {last.name}: half-written ({why})", err=True)
    if checkpoint is None:
        click.echo(f"{last} ({runs.status(last)}) left no complete checkpoint: starting a new run", err=True)
        return None, None
    recorded = (runs.read_json(last / "run.json") or {}).get("identity")
    if not recorded:
        raise runs.RunError(f"will not resume {last} from {checkpoint.name}: its run.json is missing or unreadable, "
                            f"so its inputs cannot be checked. Start over with `ftr train {recipe.id} --fresh` "
                            "(make train FRESH=1).")
    changed = [IDENTITY[key] for key in identity if recorded.get(key) != identity[key]]
    if changed:
        raise runs.RunError(
            f"will not resume {last} from {checkpoint.name}: {' and '.join(changed)} changed since that run started "
            f"(see identity in {last / 'run.json'}). Resuming would continue training on other inputs. Start over "
            f"with `ftr train {recipe.id} --fresh` (make train FRESH=1), or restore the inputs to resume.")
    for folder, _ in broken:  # training writes them again; left, they would confuse checkpoint rotation
        shutil.rmtree(folder, ignore_errors=True)
    return last, checkpoint


def render_into(recipe: Recipe, folder: Path, prepared: Path) -> str:
    """render()'s Axolotl YAML with the run folder's adapter/ and the shared prepared folder, whose data/ holds the
    splits Axolotl reads (copies of the run's data/: the prepared key hashes their content).

    Axolotl names the tokenised copy inside dataset_prepared_path by a hash of the dataset *paths*, so splits read
    from each run's own folder would give every run another name: a run reusing a prepared folder would find
    nothing there and tokenise inside the trainer, in every rank. One path per prepared key keeps the name."""
    text = render(recipe, command=invocation())
    base, cfg = run_dir(recipe.id), yaml.safe_load(text)
    for old, new in ((str(cfg["dataset_prepared_path"]), str(prepared)), (str(base / "data"), str(prepared / "data")),
                     (str(base / "adapter"), str(folder / "adapter"))):
        text = text.replace(old, new)
    cfg = yaml.safe_load(text)
    data = [d["path"] for d in cfg["datasets"] + cfg["test_datasets"]]
    paths = [cfg["output_dir"], cfg["dataset_prepared_path"]] + data
    if paths[:2] != [str(folder / "adapter"), str(prepared)] or not all(
            p.startswith(str(prepared / "data") + os.sep) for p in data):
        raise click.ClickException(f"could not place the run folder {folder} into the rendered config: {paths}")
    return text


def accel_axolotl_keys(accel: str) -> dict:
    """The Axolotl keys an ACCEL config needs besides the launcher: for FSDP, `fsdp_version` and `fsdp_config`
    taken from recipes/accelerate/ACCEL.yaml (Axolotl 0.19 reads FSDP only from its own config when it saves the
    trained model: with FSDP set up by the launcher alone, its final save fails on an unset state-dict type)."""
    path = ACCELERATE_DIR / f"{accel}.yaml"
    launcher = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    if launcher.get("distributed_type") != "FSDP":
        return {}
    fsdp = dict(launcher.get("fsdp_config") or {})
    version = fsdp.pop("fsdp_version", 1)
    return {"fsdp_version": version,
            "fsdp_config": {key.removeprefix("fsdp_"): value for key, value in fsdp.items()}}


def with_accel_keys(text: str, accel: str) -> str:
    """The rendered Axolotl YAML with accel_axolotl_keys(accel) appended (unchanged when there are none)."""
    keys = accel_axolotl_keys(accel)
    if not keys:
        return text
    return text.rstrip("\n") + f"\n\n# --- added by --accel {accel} (recipes/accelerate/{accel}.yaml) ---\n" + \
        yaml.safe_dump(keys, sort_keys=False)


def stage_splits(folder: Path, prepared: Path) -> None:
    """Put the run's converted splits where its config reads them, prepared/<key>/data/ (same content by the key)."""
    target = prepared / "data"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("train", "val"):
        source, dest = folder / "data" / f"{name}.jsonl", target / f"{name}.jsonl"
        if not dest.exists() or sha256_file(dest) != sha256_file(source):
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, dest)


def data_key(hashes: dict, data_dir: Path) -> str:
    """The prepared folder's key: the recipe's input hashes, the converted splits Axolotl reads, and the versions of
    the libraries that tokenise (a converter or tokenizer upgrade must not reuse old tokens)."""
    splits = {name: sha256_file(data_dir / f"{name}.jsonl") for name in ("train", "val")}
    return prepared_key({**hashes, "splits": splits, "versions": versions(TOKENISING)})


def prepare(sup: Supervisor, recipe_dir: Path, config: Path, folder: Path, env: dict, manifest: dict) -> None:
    """Tokenise into the config's prepared folder unless a complete copy is there (then say so and reuse it)."""
    prepared = Path(yaml.safe_load(config.read_text(encoding="utf-8"))["dataset_prepared_path"])
    manifest["prepared"] = {"path": str(prepared), "reused": runs.prepared_complete(prepared)}
    if manifest["prepared"]["reused"]:
        stage_splits(folder, prepared)
        runs.touch(prepared / runs.PREPARED_MARKER)
        click.echo(f"prepared data {prepared} is complete for these inputs: reusing it (ftr.prep skipped)", err=True)
        manifest["timings_s"].setdefault("preprocess", 0.0)  # a resumed run keeps its first prep's time
    else:
        shutil.rmtree(prepared, ignore_errors=True)  # what a killed prep left
        stage_splits(folder, prepared)
        start = time.monotonic()
        # ftr.prep = `axolotl preprocess` without its fingerprint/spawn-save overhead (same tokens; docs/BENCHMARKS.md)
        code, _ = sup.run([sys.executable, "-m", "ftr.prep", str(config)], folder / "logs" / "preprocess.log", env)
        if sup.signum:
            raise Interrupted(sup.signum)
        if code != 0:
            raise click.ClickException(f"`python -m ftr.prep {config}` exited {code}; see {folder / 'logs'}")
        runs.mark_prepared(prepared, {"config": str(config), "run": folder.name, "at": now()})
        manifest["timings_s"]["preprocess"] = round(time.monotonic() - start, 2)
    for removed in runs.prune_prepared(recipe_dir, prepared):
        click.echo(f"removed old prepared data {removed}", err=True)


def start_run(recipe: Recipe, recipe_dir: Path, identity: dict, hashes: dict, accel: str) -> tuple[Path, dict]:
    """A new run folder with its data converted, its config rendered and run.json saying `running`."""
    for removed in runs.prune_runs(recipe_dir, keep=set()):
        click.echo(f"removed {removed} (incomplete, superseded by this run)", err=True)
    folder = runs.new_folder(recipe_dir, identity)
    manifest = {"recipe": recipe.id, "run": folder.name, "status": "running", "command": invocation(),
                "accelerate": accel, "started_at": now(), "pid": os.getpid(), "identity": identity, "hashes": hashes,
                "versions": versions(), "python": platform.python_version(), "machine": platform.node(),
                "timings_s": {}, "resumes": []}
    runs.write_json(folder / "run.json", manifest)
    start = time.monotonic()
    conversion = convert_recipe_data(recipe, folder / "data")
    manifest["timings_s"]["convert"] = round(time.monotonic() - start, 2)
    manifest["data"] = {"input": conversion["input"], "kept": conversion["kept"],
                        "rejected": len(conversion["rejected"]),
                        "rows": {split: out["rows"] for split, out in conversion["outputs"].items()},
                        "outputs": {split: {"sha256": out["sha256"], "rows": out["rows"]}
                                    for split, out in conversion["outputs"].items()}}
    manifest["data"].update(data_accounting.conversion_summary(conversion))
    prepared = recipe_dir / "prepared" / data_key(hashes, folder / "data")
    try:
        (folder / "axolotl.yaml").write_text(with_accel_keys(render_into(recipe, folder, prepared), accel),
                                             encoding="utf-8")
    except RecipeError as exc:
        raise click.ClickException(str(exc)) from None
    manifest["config"] = str(folder / "axolotl.yaml")
    return folder, manifest


def finish(recipe: Recipe, folder: Path, manifest: dict, result: str, why: str, sup: Supervisor) -> dict:
    """Record the outcome in run.json; a completed run becomes build/<id>/current."""
    output = folder / "adapter"
    state = runs.trainer_state(output) or {}
    planned = state.get("max_steps") or recipe.vars.get("max_steps")
    checkpoint, _ = runs.newest_complete(output)
    if result == "completed" and not ((output / "adapter_config.json").exists() or (output / "config.json").exists()):
        result, why = "failed", f"the trainer exited 0 but saved no model in {output}"
    if result == "completed" and state and not state.get("global_step"):  # data_accounting should stop it earlier
        result, why = "failed", "the trainer exited 0 after 0 training steps: the adapter is untrained"
    history = [row for row in loss_history(output) if "loss" in row]
    manifest.update(status=result, reason=why, finished_at=now(), adapter=str(output),
                    steps={"done": max(sup.bars.get(planned, 0), state.get("global_step", 0)), "planned": planned,
                           "saved": int(checkpoint.name.split("-")[1]) if checkpoint else None},
                    resume_from=str(checkpoint) if checkpoint and result != "completed" else None,
                    loss={"first": history[0]["loss"], "last": history[-1]["loss"]} if history else None)
    runs.write_json(folder / "run.json", manifest)
    if result == "completed":
        recipe_dir = run_dir(recipe.id)
        for moved in runs.publish(recipe_dir, folder):
            click.echo(f"moved {moved} (the flat layout of an older ftr) aside", err=True)
        for removed in runs.prune_runs(recipe_dir, keep={folder}):
            click.echo(f"removed old run {removed}", err=True)
    return manifest


def train_recipe(recipe: Recipe, accel: str = "single", num_processes: int | None = None, fresh: bool = False,
                 sup: Supervisor | None = None, prepare_only: bool = False) -> dict:
    """Train `recipe` in a run folder (new, or the interrupted one it resumes); run.json says how it ended.
    prepare_only stops after preprocessing (status `prepared`): the run folder's axolotl.yaml is then ready for
    launchers started on every node (multi-node training; README: Multi-GPU and multi-node)."""
    recipe_dir = run_dir(recipe.id)
    try:
        lock = runs.acquire(recipe_dir, invocation())
    except runs.RunError as exc:
        raise click.ClickException(str(exc)) from None
    sup = sup or Supervisor()
    folder = manifest = None
    try:
        if lock.replaced:
            click.echo(f"replaced a stale lock ({runs.describe_holder(lock.replaced)})", err=True)
        for path in runs.clean_temp(recipe_dir):
            click.echo(f"removed {path}, left by a killed run", err=True)
        env = axolotl_env(recipe)
        ensure_tiny_model(recipe)
        hashes = input_hashes(recipe)
        identity = {**hashes, "base_model": model_fingerprint(recipe.base_model)}
        try:
            folder, checkpoint = choose_run(recipe, recipe_dir, identity, fresh)
        except runs.RunError as exc:
            raise click.ClickException(str(exc)) from None
        if prepare_only:  # this node need not be one that trains (a login node has no GPU): no launch checks
            if folder is not None:
                raise click.ClickException(f"{folder} is an interrupted run with a checkpoint; resume it with "
                                           f"`ftr train {recipe.id}` or start over with --prepare-only --fresh")
            processes = num_processes or max(gpu_count(), 1)
        else:
            accelerate_command(accel, recipe_dir / "axolotl.yaml", num_processes)  # checks ACCEL first
            processes = process_count(accel, num_processes)
        if folder is None:
            folder, manifest = start_run(recipe, recipe_dir, identity, hashes, accel)
            data_accounting.account(recipe, folder, manifest, processes)  # stops here when no step would run
            runs.write_json(folder / "run.json", manifest)
        else:
            manifest = runs.read_json(folder / "run.json")
            state = runs.read_json(checkpoint / "trainer_state.json")
            click.echo(f"resuming {folder} from {checkpoint.name} (step {state['global_step']} of "
                       f"{state.get('max_steps')}); `--fresh` starts over instead", err=True)
            manifest["resumes"].append({"at": now(), "from": str(checkpoint), "step": state["global_step"],
                                        "command": invocation()})
            manifest["status"] = "running"
            runs.write_json(folder / "run.json", manifest)
        lock.update(run=folder.name)
        config = folder / "axolotl.yaml"
        sup.on_child = lambda pgid: lock.update(child_pgid=pgid)
        if prepare_only:
            prepare(sup, recipe_dir, config, folder, env, manifest)
            manifest.update(status="prepared", reason="--prepare-only: preprocessed, not trained",
                            processes=processes, finished_at=now(), adapter=str(folder / "adapter"))
            runs.write_json(folder / "run.json", manifest)
            return manifest
        cmd = accelerate_command(accel, config, num_processes)
        if checkpoint is not None:
            cmd.append(f"--resume_from_checkpoint={checkpoint}")
        manifest["processes"] = processes
        prepare(sup, recipe_dir, config, folder, env, manifest)  # once, here: the ranks only load what it saved
        start = time.monotonic()
        code, summary = sup.run(cmd, folder / "logs" / "train.log", launch_env(accel, env), keep_fds=(lock.fd,),
                                append=checkpoint is not None)
        manifest["timings_s"]["train"] = round(manifest["timings_s"].get("train", 0) + time.monotonic() - start, 2)
        lock.update(child_pgid=None)
        result, why = runs.outcome(code, runs.trainer_state(folder / "adapter"), summary, sup.signum)
        manifest = finish(recipe, folder, manifest, result, why, sup)
        manifest["exit_code"] = 128 + sup.signum if sup.signum else 128 + (-code) if code < 0 else (
            130 if result == "interrupted" else 1)
        return manifest
    except Interrupted as exc:
        if manifest is not None:
            manifest = finish(recipe, folder, manifest, "interrupted", f"stopped by {exc}", sup)
            manifest["exit_code"] = 128 + exc.signum
            return manifest
        raise
    except click.ClickException as exc:
        if manifest is not None:
            finish(recipe, folder, manifest, "failed", exc.format_message(), sup)
        raise
    finally:
        lock.release()


def resume_hint(recipe_id: str) -> str:
    return " ".join(arg for arg in invocation().split(" ") if arg != "--fresh")


@click.command("train")
@click.argument("recipe_id")
@set_option
@click.option("--accel", default="single", show_default=True,
              help="Accelerate config from recipes/accelerate/ (single, ddp, zero2, zero3, fsdp2).")
@click.option("--num-processes", type=int, help="Processes for multi-GPU configs (default: visible GPUs; required "
              "without a GPU, where --accel ddp runs that many CPU processes over gloo). With --prepare-only: the "
              "world size of the multi-node job, for the step count.")
@click.option("--fresh", is_flag=True, help="Start a new run instead of resuming an interrupted one.")
@click.option("--prepare-only", is_flag=True, help="Convert, render and preprocess into a new run folder, then stop; "
              "the last stdout line is its axolotl.yaml, what every node's launcher trains (multi-node; README).")
@click.option("--drop-invalid", is_flag=True, help="Train without the records that have errors (listed in the run's "
              "data/manifest.json) instead of failing; the same as --set data.drop_invalid=true.")
def train(recipe_id, sets, accel, num_processes, fresh, prepare_only, drop_invalid):
    """Train RECIPE_ID end to end through Axolotl, in a run folder under build/RECIPE_ID/runs/; re-running the same
    command resumes an interrupted run from its newest complete checkpoint. Before training it prints what
    conversion kept and rejected, the rows Axolotl drops for exceeding sequence_len, and the steps it will take
    (0 steps stops here with the override that fixes it)."""
    recipe = load_or_fail(recipe_id, (*sets, "data.drop_invalid=true") if drop_invalid else sets)
    with Supervisor() as sup:
        try:
            manifest = train_recipe(recipe, accel, num_processes, fresh, sup, prepare_only)
        except Interrupted as exc:
            click.echo(f"{recipe_id}: {exc} before training started; nothing to resume", err=True)
            raise SystemExit(128 + exc.signum) from None
    folder = Path(manifest["adapter"]).parent
    if prepare_only:
        click.echo(f"{recipe_id}: prepared {manifest['prepared']['path']}; on every node start the launcher on "
                   f"{manifest['config']} (README: Multi-GPU and multi-node). The adapter will be in "
                   f"{manifest['adapter']}; build/{recipe_id}/current is unchanged.", err=True)
        click.echo(manifest["config"])
        return
    steps = manifest["steps"]
    if manifest["status"] == "completed":
        loss = manifest["loss"]
        summary = f"loss {loss['first']:.3f} -> {loss['last']:.3f}" if loss else "no loss logged"
        click.echo(f"{recipe_id}: trained ({summary}, {steps['done']} steps); adapter: {manifest['adapter']}; "
                   f"manifest: {folder / 'run.json'}; now build/{recipe_id}/current")
        return
    where = f"{manifest['status']} after step {steps['done']} of {steps['planned'] or '?'} ({manifest['reason']})"
    if manifest["resume_from"]:
        how = (f"`{resume_hint(recipe_id)}` resumes from {Path(manifest['resume_from']).name}; add --fresh "
               "(make train FRESH=1) to start over")
    else:
        how = "no complete checkpoint was saved, so the next run starts over"
    click.echo(f"{recipe_id}: {where}. Run folder: {folder} (run.json there); build/{recipe_id}/current is "
               f"unchanged. {how}.", err=True)
    raise SystemExit(manifest["exit_code"])
