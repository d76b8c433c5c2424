"""Run folders of one recipe: one training run per folder, a lock, the `current` pointer, run state, checkpoints.

build/<id>/
  runs/<UTC time>-<identity>/   one run: data/, axolotl.yaml, adapter/ (Axolotl's output_dir, checkpoint-N/ inside),
                                logs/ and run.json (status running | completed | interrupted | failed)
  current -> runs/<name>        the last COMPLETED run: a relative symlink, replaced atomically (os.replace)
  adapter, data, axolotl.yaml,  fixed links through current/, for people and tools that read the flat layout
  run.json, logs
  prepared/<key>/               tokenised data, shared by the runs whose key matches (complete: ftr-complete.json)
  train.lock                    who trains now (pid, start, command); held with flock while the run lives
  eval/, merged/                what eval and merge write about the current run
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import time
import zipfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

RUNS = "runs"
CURRENT = "current"
LOCK = "train.lock"
LINKS = ("adapter", "data", "axolotl.yaml", "run.json", "logs")
PREPARED_MARKER = "ftr-complete.json"
KEEP_PREPARED = 2  # prepared copies kept per recipe, most recently used first
KEEP_COMPLETED = 2  # completed run folders kept: current and the one before it (to roll back by hand)
CHECKPOINT = re.compile(r"checkpoint-(\d+)")
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin", "model.safetensors", "model.safetensors.index.json",
           "pytorch_model.bin", "pytorch_model.bin.index.json")


class RunError(RuntimeError):
    """A run that cannot start or resume; the message says why and what to do."""


# --- the lock -------------------------------------------------------------------------------------------------

def process_start(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot, /proc/<pid>/stat field 22), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class Lock:
    """An flock on build/<id>/train.lock: the kernel drops it when its last holder dies (kill -9 included), so a
    lock left by a dead process is never mistaken for a live one, whatever PID reuse does. The file says who holds
    it; the training child inherits the descriptor, so an orphaned trainer still holds the folder."""

    path: Path
    fd: int
    replaced: dict | None = None  # what a stale lock file said, when one was replaced

    def update(self, **fields) -> None:
        info = read_lock(self.path) or {}
        info.update(fields)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        try:
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        except OSError:
            pass
        os.close(self.fd)


def read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None


def describe_holder(info: dict | None) -> str:
    if not info:
        return "another process (the lock file names none)"
    alive = process_start(info.get("pid", -1)) == info.get("start")
    text = f"pid {info.get('pid')} ({'running' if alive else 'gone'}), started {info.get('started_at')}: " \
           f"`{info.get('command')}`"
    if not alive and info.get("child_pgid"):
        text += (f"; its training processes (process group {info['child_pgid']}) still run: wait for them or stop "
                 f"them with `kill -TERM -{info['child_pgid']}`")
    return text


def acquire(recipe_dir: Path, command: str) -> Lock:
    """Hold recipe_dir's lock, or raise RunError naming the run that holds it."""
    recipe_dir.mkdir(parents=True, exist_ok=True)
    path = recipe_dir / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunError(f"{recipe_dir} is in use by another `ftr train`: {describe_holder(read_lock(path))}. "
                           "One run per build folder; wait for it, stop it, or set FTR_BUILD to another folder.") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its previous holder unlinked between our open and our flock
            break
        os.close(fd)
    stale = read_lock(path)
    os.ftruncate(fd, 0)
    info = {"pid": os.getpid(), "start": process_start(os.getpid()), "command": command,
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return Lock(path, fd, stale)


# --- run folders and the pointer ------------------------------------------------------------------------------

def write_json(path: Path, value: dict) -> None:
    """value as JSON at path, whole or not at all."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def run_folders(recipe_dir: Path) -> list[Path]:
    """Run folders, oldest first (their names start with the UTC start time)."""
    root = recipe_dir / RUNS
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def status(folder: Path) -> str:
    return (read_json(folder / "run.json") or {}).get("status", "unknown")


def current(recipe_dir: Path) -> Path | None:
    """The folder of the last completed run, or None (no run completed, or the flat layout of older versions)."""
    link = recipe_dir / CURRENT
    if not link.is_symlink():
        return None
    target = (recipe_dir / os.readlink(link)).resolve()
    return target if target.is_dir() else None


def new_folder(recipe_dir: Path, identity: dict) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    short = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    folder, n = recipe_dir / RUNS / f"{stamp}-{short}", 1
    while folder.exists():
        n += 1
        folder = recipe_dir / RUNS / f"{stamp}-{short}-{n}"
    folder.mkdir(parents=True)
    return folder


def _symlink(target: str, link: Path) -> None:
    """Make `link` point at target in one step (a new link renamed over the old one)."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def publish(recipe_dir: Path, folder: Path) -> list[str]:
    """Point build/<id>/current at folder and make sure the flat-layout links exist; names the legacy entries moved
    aside (a real build/<id>/adapter of an older ftr goes to runs/legacy-<time>/)."""
    moved = []
    legacy = [name for name in LINKS if (recipe_dir / name).exists() and not (recipe_dir / name).is_symlink()]
    if (recipe_dir / "adapter") in [recipe_dir / name for name in legacy]:  # a trained model: kept, never pruned
        aside = recipe_dir / RUNS / f"legacy-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
        aside.mkdir(parents=True, exist_ok=True)
        for name in legacy:
            os.replace(recipe_dir / name, aside / name)
            moved.append(str(aside / name))
    else:  # derived files only (e.g. data/ that `ftr eval --base` converted before any training)
        for name in legacy:
            path = recipe_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    _symlink(os.path.relpath(folder, recipe_dir), recipe_dir / CURRENT)
    for name in LINKS:
        link = recipe_dir / name
        if not link.is_symlink() or os.readlink(link) != f"{CURRENT}/{name}":
            _symlink(f"{CURRENT}/{name}", link)
    return moved


def prune_runs(recipe_dir: Path, keep: set[Path]) -> list[Path]:
    """Remove run folders that can no longer be resumed or used: every incomplete one outside keep, and completed
    ones beyond the newest KEEP_COMPLETED (legacy-* folders, an older ftr's flat-layout run, stay). Returns what was
    removed."""
    keep = {p.resolve() for p in keep}
    completed = [p for p in run_folders(recipe_dir) if status(p) == "completed"]
    keep |= {p.resolve() for p in completed[-KEEP_COMPLETED:]}
    if (pointer := current(recipe_dir)) is not None:
        keep.add(pointer)
    removed = [p for p in run_folders(recipe_dir) if p.resolve() not in keep and not p.name.startswith("legacy-")]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def clean_temp(recipe_dir: Path) -> list[Path]:
    """Temporary files a killed train left: half-made links and JSON, transformers' tmp-checkpoint-N folders."""
    found = [p for p in recipe_dir.glob(".*.tmp")]
    for folder in run_folders(recipe_dir):
        found += list(folder.glob(".*.tmp")) + list((folder / "adapter").glob("tmp-checkpoint-*"))
    for path in found:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    return found


# --- checkpoints ----------------------------------------------------------------------------------------------

def _safetensors_whole(path: Path) -> bool:
    """True when the file is as long as its header says (a save cut short fails this)."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size == 8 + size + end
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _torch_file_whole(path: Path) -> bool:
    return path.stat().st_size > 0 and zipfile.is_zipfile(path)  # torch.save writes a zip; a cut one has no index


def checkpoint_problem(folder: Path) -> str | None:
    """Why a checkpoint-N folder cannot be resumed from (half-written, or not transformers'), or None when whole.

    Whole: trainer_state.json parses and names step N; model or adapter weights are present (a safetensors file
    as long as its header says, or FSDP's sharded folder with its .metadata); optimizer and scheduler state are
    present (optimizer.pt, or DeepSpeed/FSDP's optimizer folders)."""
    match = CHECKPOINT.fullmatch(folder.name)
    if not match:
        return "not named checkpoint-<step>"
    state = read_json(folder / "trainer_state.json")
    if state is None:
        return "no readable trainer_state.json" if (folder / "trainer_state.json").exists() else "no trainer_state.json"
    if state.get("global_step") != int(match.group(1)):
        return f"trainer_state.json says step {state.get('global_step')}"
    weights = [folder / name for name in WEIGHTS if (folder / name).exists()]
    # FSDP's SHARDED_STATE_DICT: a torch.distributed.checkpoint folder, whose .metadata is written after every shard
    fsdp = [p for p in folder.glob("pytorch_model_fsdp_*") if p.is_dir()]
    if not weights and not fsdp:
        return "no model or adapter weights"
    for shards in fsdp:
        if not (shards / ".metadata").is_file():
            return f"{shards.name} has no .metadata (its save did not finish)"
    for path in weights:
        if path.suffix == ".safetensors" and not _safetensors_whole(path):
            return f"{path.name} is cut short"
        if path.suffix == ".bin" and not _torch_file_whole(path):
            return f"{path.name} is cut short"
    sharded = [p for p in folder.iterdir() if p.is_dir() and (p.name.startswith("global_step")
                                                               or p.name.startswith("optimizer"))]
    if not (folder / "optimizer.pt").exists() and not sharded:
        return "no optimizer state (optimizer.pt)"
    if (folder / "optimizer.pt").exists() and not _torch_file_whole(folder / "optimizer.pt"):
        return "optimizer.pt is cut short"
    if not (folder / "scheduler.pt").exists():
        return "no scheduler state (scheduler.pt)"
    return None


def checkpoints(output_dir: Path) -> list[tuple[int, Path, str | None]]:
    """(step, folder, problem or None) of every checkpoint-N under output_dir, newest first."""
    found = [(int(m.group(1)), p) for p in output_dir.glob("checkpoint-*") if (m := CHECKPOINT.fullmatch(p.name))]
    return [(step, p, checkpoint_problem(p)) for step, p in sorted(found, reverse=True)]


def newest_complete(output_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest whole checkpoint under output_dir (or None), and the broken ones newer than it, with why."""
    broken = []
    for _, folder, problem in checkpoints(output_dir):
        if problem is None:
            return folder, broken
        broken.append((folder, problem))
    return None, broken


def trainer_state(output_dir: Path) -> dict | None:
    """The trainer_state.json with the highest global_step under output_dir (its checkpoints and itself)."""
    states = [s for p in [output_dir, *output_dir.glob("checkpoint-*")] if (s := read_json(p / "trainer_state.json"))]
    return max(states, key=lambda s: s.get("global_step") or 0, default=None)


def stopped_on_purpose(state: dict) -> bool:
    """True when the trainer itself decided to stop at that step (max_steps reached or early stopping)."""
    control = (state.get("stateful_callbacks") or {}).get("TrainerControl") or {}
    return bool((control.get("args") or {}).get("should_training_stop"))


def outcome(code: int, state: dict | None, log_text: str, signalled: int | None) -> tuple[str, str]:
    """(completed | interrupted | failed, why) of one training child from its exit code, its trainer state and log.

    A child can exit 0 without finishing: Axolotl's SIGINT handler saves the model and calls sys.exit(0). So exit 0
    is `completed` only when the newest trainer state reached its planned steps (or the trainer stopped on purpose,
    e.g. early stopping) and, without any trainer state, only when the log holds transformers' end-of-training
    summary (train_runtime)."""
    if signalled is not None:
        return "interrupted", f"stopped by {signal.Signals(signalled).name}"
    if code < 0 or code in (130, 143):
        return "interrupted", f"the trainer was stopped by a signal (exit {code})"
    if code != 0:
        return "failed", f"the trainer exited {code}"
    if state is not None:
        done, planned = state.get("global_step") or 0, state.get("max_steps") or 0
        if done < planned and not stopped_on_purpose(state):
            return "interrupted", f"the trainer exited 0 after step {done} of {planned}"
    if "train_runtime" not in log_text:
        return "interrupted", "the trainer exited 0 without finishing (no end-of-training summary in its log)"
    return "completed", "finished"


# --- the prepared cache ---------------------------------------------------------------------------------------

def prepared_complete(folder: Path) -> bool:
    return (folder / PREPARED_MARKER).is_file()


def mark_prepared(folder: Path, info: dict) -> None:
    write_json(folder / PREPARED_MARKER, info)


def prune_prepared(recipe_dir: Path, keep: Path) -> list[Path]:
    """Keep the KEEP_PREPARED most recently used prepared copies (keep among them); remove the rest and any
    incomplete one (a prep that was killed)."""
    root = recipe_dir / "prepared"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.is_dir() and prepared_complete(p)]
    done.sort(key=lambda p: (p.resolve() == keep.resolve(), (p / PREPARED_MARKER).stat().st_mtime), reverse=True)
    removed = [p for p in root.iterdir() if p.resolve() != keep.resolve() and (p not in done[:KEEP_PREPARED])]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    return removed


def touch(path: Path) -> None:
    now = time.time()
    os.utime(path, (now, now))
