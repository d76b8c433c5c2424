"""ftr.runs (and ftr.train.choose_run) on fabricated folders: checkpoint completeness, how a child's exit is judged,
the lock, which run to resume and when to refuse, the pointer and pruning, and Run.of resolving the pointer (with
the flat layout of older builds as fallback)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftr import runs
from ftr.inference import Run

REPO_ROOT = Path(__file__).resolve().parents[2]


def whole_checkpoint(output: Path, step: int, max_steps: int = 12) -> Path:
    """A checkpoint-<step> as transformers writes it for a LoRA run (tiny tensors, real file formats)."""
    import torch
    from safetensors.torch import save_file

    folder = output / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"lora_A": torch.zeros(4, 2)}, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text("{}")
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    control = {"args": {"should_training_stop": step >= max_steps}}
    (folder / "trainer_state.json").write_text(json.dumps(
        {"global_step": step, "max_steps": max_steps, "log_history": [], "stateful_callbacks": {"TrainerControl": control}}))
    return folder


def test_a_whole_checkpoint_has_no_problem(tmp_path):
    assert runs.checkpoint_problem(whole_checkpoint(tmp_path, 3)) is None


def test_an_fsdp_sharded_checkpoint_is_whole_once_its_metadata_is_written(tmp_path):
    """FSDP2's SHARDED_STATE_DICT checkpoint (as an H200 run of --accel fsdp2 wrote it): pytorch_model_fsdp_0/ and
    optimizer_0/ instead of adapter weights and optimizer.pt."""
    folder = whole_checkpoint(tmp_path, 3)
    (folder / "adapter_model.safetensors").unlink()
    (folder / "optimizer.pt").unlink()
    for name in ("pytorch_model_fsdp_0", "optimizer_0"):
        (folder / name).mkdir()
        (folder / name / "__0_0.distcp").write_bytes(b"x")
    assert runs.checkpoint_problem(folder) == "pytorch_model_fsdp_0 has no .metadata (its save did not finish)"
    (folder / "pytorch_model_fsdp_0" / ".metadata").write_bytes(b"x")
    assert runs.checkpoint_problem(folder) is None


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 8])


BREAKS = {
    "no trainer_state.json": lambda f: (f / "trainer_state.json").unlink(),
    "no readable trainer_state.json": lambda f: (f / "trainer_state.json").write_text('{"global_step": 3, "max'),
    "trainer_state.json says step 2": lambda f: (f / "trainer_state.json").write_text('{"global_step": 2}'),
    "no model or adapter weights": lambda f: (f / "adapter_model.safetensors").unlink(),
    "adapter_model.safetensors is cut short": lambda f: _truncate(f / "adapter_model.safetensors"),
    "no optimizer state (optimizer.pt)": lambda f: (f / "optimizer.pt").unlink(),
    "optimizer.pt is cut short": lambda f: _truncate(f / "optimizer.pt"),
    "no scheduler state (scheduler.pt)": lambda f: (f / "scheduler.pt").unlink(),
}


@pytest.mark.parametrize("problem", sorted(BREAKS))
def test_a_half_written_checkpoint_is_named_and_skipped(tmp_path, problem):
    whole_checkpoint(tmp_path, 3)
    broken = whole_checkpoint(tmp_path, 6)
    BREAKS[problem](broken)
    assert runs.checkpoint_problem(broken) == problem
    chosen, skipped = runs.newest_complete(tmp_path)
    assert chosen == tmp_path / "checkpoint-3" and skipped == [(broken, problem)]


def test_no_complete_checkpoint(tmp_path):
    (tmp_path / "checkpoint-9").mkdir()
    (tmp_path / "tmp-checkpoint-12").mkdir()
    assert runs.newest_complete(tmp_path) == (None, [(tmp_path / "checkpoint-9", "no trainer_state.json")])
    assert runs.newest_complete(tmp_path / "absent") == (None, [])


def state(step, planned, stop=False):
    return {"global_step": step, "max_steps": planned,
            "stateful_callbacks": {"TrainerControl": {"args": {"should_training_stop": stop}}}}


SUMMARY = "{'train_runtime': 41.2, 'train_samples_per_second': 1.9, 'train_loss': 9.1}\n"


def test_exit_0_after_fewer_steps_is_interrupted():
    """The tester's case: ftr in the background (SIGINT ignored), SIGINT reaches the trainer, Axolotl's handler
    saves the step-10 model and exits 0. That is not a finished run."""
    assert runs.outcome(0, state(10, 20), "", None) == ("interrupted", "the trainer exited 0 after step 10 of 20")
    assert runs.outcome(0, None, "", None)[0] == "interrupted"  # no checkpoint yet and no end-of-training summary


def test_exit_0_at_the_planned_step_or_after_early_stopping_is_completed():
    assert runs.outcome(0, state(20, 20, stop=True), SUMMARY, None) == ("completed", "finished")
    assert runs.outcome(0, state(12, 40, stop=True), SUMMARY, None)[0] == "completed"  # early stopping
    assert runs.outcome(0, None, SUMMARY, None)[0] == "completed"  # save_strategy: no


def test_signals_and_errors():
    assert runs.outcome(0, state(20, 20, True), SUMMARY, signal.SIGTERM)[0] == "interrupted"
    assert runs.outcome(-signal.SIGKILL, state(4, 20), "", None)[0] == "interrupted"
    assert runs.outcome(1, state(4, 20), "", None) == ("failed", "the trainer exited 1")


HOLD = """
import sys, time
from pathlib import Path
from ftr import runs
lock = runs.acquire(Path(sys.argv[1]), "ftr train tiny-rephrase --set max_steps=5")
print("held", flush=True)
time.sleep(60)
"""


def test_lock_refuses_a_second_run_and_replaces_a_dead_ones(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(runs.RunError) as refused:
            runs.acquire(tmp_path, "ftr train tiny-rephrase")
        message = str(refused.value)
        assert f"pid {holder.pid} (running)" in message and "`ftr train tiny-rephrase --set max_steps=5`" in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = runs.acquire(tmp_path, "ftr train tiny-rephrase")  # kill -9 left the file; the kernel dropped the flock
    assert lock.replaced["pid"] == holder.pid
    assert f"pid {holder.pid} (gone)" in runs.describe_holder(lock.replaced)
    assert json.loads((tmp_path / runs.LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / runs.LOCK).exists()


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
    """A lock file naming a live PID that is another process (other start time) is reported as gone."""
    info = {"pid": os.getpid(), "start": "1", "command": "ftr train x", "started_at": "2026-01-01T00:00:00+00:00"}
    (tmp_path / runs.LOCK).write_text(json.dumps(info))
    lock = runs.acquire(tmp_path, "ftr train x")
    assert "(gone)" in runs.describe_holder(lock.replaced)
    lock.release()


def make_run(recipe_dir: Path, name: str, status: str) -> Path:
    folder = recipe_dir / runs.RUNS / name
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text("{}")
    (folder / "axolotl.yaml").write_text(f"base_model: {name}\n")
    runs.write_json(folder / "run.json", {"status": status})
    return folder


def test_publish_points_current_at_a_completed_run_and_run_of_follows(tmp_path, monkeypatch):
    monkeypatch.setattr("ftr.inference.run_dir", lambda recipe_id: tmp_path / recipe_id)
    recipe_dir = tmp_path / "r"
    (recipe_dir / "adapter").mkdir(parents=True)  # the flat layout of an older ftr
    (recipe_dir / "adapter" / "adapter_config.json").write_text("{}")
    assert Run.of("r").adapter == recipe_dir / "adapter" and Run.of("r").run_folder is None
    first = make_run(recipe_dir, "20260101T000000Z-aaaa", "completed")
    moved = runs.publish(recipe_dir, first)
    assert moved and Path(moved[0]).parent.name.startswith("legacy-")
    assert os.readlink(recipe_dir / "current") == "runs/20260101T000000Z-aaaa"
    run = Run.of("r")
    assert run.adapter == first / "adapter" and run.merged == recipe_dir / "merged"
    assert run.axolotl_config() == {"base_model": "20260101T000000Z-aaaa"}
    assert (recipe_dir / "adapter").resolve() == first / "adapter"  # the fixed links follow current
    interrupted = make_run(recipe_dir, "20260102T000000Z-bbbb", "interrupted")
    assert Run.of("r").adapter == first / "adapter"  # an interrupted run changes nothing eval/merge/serve use
    second = make_run(recipe_dir, "20260103T000000Z-cccc", "completed")
    runs.publish(recipe_dir, second)
    assert Run.of("r").adapter == second / "adapter"
    assert not [p.name for p in recipe_dir.iterdir() if p.name.startswith(".")]
    removed = runs.prune_runs(recipe_dir, keep={second})
    assert interrupted in removed and first.exists() and second.exists()  # keeps current and the one before it


def test_prune_prepared_keeps_the_newest_complete_copies(tmp_path):
    root = tmp_path / "prepared"
    made = []
    for i, name in enumerate(("k1", "k2", "k3")):
        (root / name).mkdir(parents=True)
        runs.mark_prepared(root / name, {})
        os.utime(root / name / runs.PREPARED_MARKER, (1000 + i, 1000 + i))
        made.append(root / name)
    (root / "killed").mkdir()  # a prep that never finished
    removed = runs.prune_prepared(tmp_path, keep=made[0])
    assert sorted(p.name for p in removed) == ["k2", "killed"]
    assert sorted(p.name for p in root.iterdir()) == ["k1", "k3"]


def test_clean_temp_removes_what_a_killed_run_left(tmp_path):
    folder = make_run(tmp_path, "20260101T000000Z-aaaa", "running")
    leftovers = [tmp_path / ".current.123.tmp", folder / ".run.json.9.tmp", folder / "adapter" / "tmp-checkpoint-4"]
    leftovers[0].symlink_to("runs/x")
    leftovers[1].write_text("{")
    leftovers[2].mkdir()
    assert sorted(runs.clean_temp(tmp_path)) == sorted(leftovers)
    assert not any(p.exists() or p.is_symlink() for p in leftovers) and (folder / "run.json").exists()


def test_process_start_tells_processes_apart():
    assert runs.process_start(os.getpid()) == runs.process_start(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    time.sleep(0.05)
    assert runs.process_start(child.pid) is None


IDENTITY = {"data": "d1", "recipe": "r1", "tokenizer": "t1", "base_model": "b1"}


def interrupted_run(recipe_dir: Path, identity: dict | None) -> Path:
    folder = make_run(recipe_dir, "20260101T000000Z-aaaa", "interrupted")
    if identity is None:
        (folder / "run.json").unlink()
    else:
        runs.write_json(folder / "run.json", {"status": "interrupted", "identity": identity, "resumes": []})
    whole_checkpoint(folder / "adapter", 3)
    (folder / "adapter" / "checkpoint-6").mkdir()  # the kill came during this save
    return folder


def test_choose_run_resumes_only_onto_the_same_inputs(tmp_path):
    from types import SimpleNamespace

    from ftr.train import choose_run

    recipe = SimpleNamespace(id="r")
    folder = interrupted_run(tmp_path, IDENTITY)
    with pytest.raises(runs.RunError, match=r"the data file and the base model changed .*--fresh"):
        choose_run(recipe, tmp_path, {**IDENTITY, "data": "d2", "base_model": "b2"}, fresh=False)
    assert (folder / "adapter" / "checkpoint-6").exists()  # a refusal changes nothing
    assert choose_run(recipe, tmp_path, {**IDENTITY, "data": "d2"}, fresh=True) == (None, None)
    assert choose_run(recipe, tmp_path, IDENTITY, fresh=False) == (folder, folder / "adapter" / "checkpoint-3")
    assert not (folder / "adapter" / "checkpoint-6").exists()  # removed once resuming: training writes it again


def test_choose_run_without_a_record_or_a_checkpoint(tmp_path):
    from types import SimpleNamespace

    from ftr.train import choose_run

    recipe = SimpleNamespace(id="r")
    folder = interrupted_run(tmp_path, None)
    with pytest.raises(runs.RunError, match="run.json is missing or unreadable"):
        choose_run(recipe, tmp_path, IDENTITY, fresh=False)
    shutil.rmtree(folder / "adapter" / "checkpoint-3")
    assert choose_run(recipe, tmp_path, IDENTITY, fresh=False) == (None, None)  # nothing to resume: start over
