"""The real `ftr train` CLI on tiny-rephrase, killed, raced and resumed: one run per folder, SIGTERM mid-run, changed
data refused, resume from the newest complete checkpoint (a half-written one skipped), prepared data reused,
--fresh. Three trainings in all (interrupted, resumed, fresh), in this module's own build tree."""

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

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
MAX_STEPS, SAVE_STEPS = 12, 3


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A build tree and a copy of the recipe's data that the tests may edit."""
    root = tmp_path_factory.mktemp("lifecycle")
    data = root / "rephrase_vi.json"
    shutil.copy(REPO_ROOT / "data" / "examples" / "rephrase_vi.json", data)
    args = ["train", "tiny-rephrase", "--set", f"data.path={data}", "--set", f"max_steps={MAX_STEPS}",
            "--set", f"save_steps={SAVE_STEPS}", "--set", "evals_per_epoch=null", "--set", "save_total_limit=3"]
    return {"build": root / "build", "data": data, "args": args, "recipe": root / "build" / "tiny-rephrase"}


def env(tree):
    return dict(os.environ, FTR_BUILD=str(tree["build"]), AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")


def ftr(tree, *extra, timeout=600):
    return subprocess.run([sys.executable, "-m", "ftr.cli", *tree["args"], *extra], cwd=REPO_ROOT, env=env(tree),
                          text=True, capture_output=True, timeout=timeout)


def only_run(tree) -> Path:
    folders = runs.run_folders(tree["recipe"])
    assert len(folders) == 1, folders
    return folders[0]


def manifest(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


@pytest.fixture(scope="module")
def interrupted(tree):
    """`ftr train` started, raced by a second one, and sent SIGTERM once a complete checkpoint exists."""
    proc = subprocess.Popen([sys.executable, "-m", "ftr.cli", *tree["args"]], cwd=REPO_ROOT, env=env(tree), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, second = time.monotonic() + 420, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            folders = runs.run_folders(tree["recipe"])
            if second is None and folders and (tree["recipe"] / runs.LOCK).exists():
                start = time.monotonic()
                second = ftr(tree, timeout=120)
                second.seconds = time.monotonic() - start
            if folders and runs.newest_complete(folders[-1] / "adapter")[0] is not None:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "training ended before a checkpoint was seen"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return {"code": proc.returncode, "out": out, "err": err, "second": second, "pid": proc.pid,
            "folder": only_run(tree)}


def test_a_second_train_into_the_same_folder_is_refused_at_once(interrupted):
    second = interrupted["second"]
    assert second is not None and second.returncode != 0 and second.seconds < 30
    assert "is in use by another `ftr train`" in second.stderr and f"pid {interrupted['pid']} (running)" in second.stderr
    assert "tiny-rephrase" in second.stderr.split("is in use")[1]


def test_sigterm_exits_143_and_records_an_interrupted_run(interrupted, tree):
    assert interrupted["code"] == 143, interrupted["err"][-3000:]
    assert "tiny-rephrase: trained" not in interrupted["out"] + interrupted["err"]
    record = manifest(interrupted["folder"])
    assert record["status"] == "interrupted"
    assert record["steps"]["planned"] == MAX_STEPS and SAVE_STEPS <= record["steps"]["done"] < MAX_STEPS
    checkpoint = Path(record["resume_from"])
    assert checkpoint.parent == interrupted["folder"] / "adapter" and runs.checkpoint_problem(checkpoint) is None
    assert record["steps"]["saved"] == int(checkpoint.name.split("-")[1]) <= record["steps"]["done"]
    assert f"resumes from {checkpoint.name}" in interrupted["err"] and "--fresh" in interrupted["err"]
    assert not (tree["recipe"] / "current").exists() and not (tree["recipe"] / runs.LOCK).exists()


@pytest.fixture(scope="module")
def refused(interrupted, tree):
    original = tree["data"].read_bytes()
    rows = json.loads(original)
    tree["data"].write_text(json.dumps(rows[:-1], ensure_ascii=False), encoding="utf-8")
    try:
        return ftr(tree, timeout=120)
    finally:
        tree["data"].write_bytes(original)


def test_changed_data_refuses_to_resume(refused, interrupted, tree):
    assert refused.returncode != 0
    assert "will not resume" in refused.stderr and "the data file" in refused.stderr and "--fresh" in refused.stderr
    assert only_run(tree) == interrupted["folder"] and manifest(interrupted["folder"])["status"] == "interrupted"


@pytest.fixture(scope="module")
def resumed(refused, interrupted, tree):
    record = manifest(interrupted["folder"])
    good = Path(record["resume_from"])
    step = int(good.name.split("-")[1])
    broken = good.with_name(f"checkpoint-{step + 1}")  # as if the kill came in the middle of a save
    shutil.copytree(good, broken)
    (broken / "trainer_state.json").unlink()
    return {"proc": ftr(tree), "from": good, "broken": broken}


def test_rerun_resumes_from_the_newest_complete_checkpoint_and_completes(resumed, interrupted, tree):
    proc = resumed["proc"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    step = int(resumed["from"].name.split("-")[1])
    assert f"skipping {resumed['broken'].name}" in proc.stderr and "half-written (no trainer_state.json)" in proc.stderr
    assert f"resuming {interrupted['folder']} from {resumed['from'].name} (step {step} of {MAX_STEPS})" in proc.stderr
    assert "tiny-rephrase: trained" in proc.stdout
    record = manifest(interrupted["folder"])
    assert record["status"] == "completed" and record["steps"] == {"done": MAX_STEPS, "planned": MAX_STEPS,
                                                                   "saved": MAX_STEPS}
    assert record["resumes"][0]["step"] == step
    assert (tree["recipe"] / "current").resolve() == interrupted["folder"]
    assert (tree["recipe"] / "adapter" / "adapter_model.safetensors").is_file()
    state = json.loads((interrupted["folder"] / "adapter" / f"checkpoint-{MAX_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == MAX_STEPS


def test_resume_reuses_the_prepared_data(resumed, interrupted):
    proc = resumed["proc"]
    assert "reusing it (ftr.prep skipped)" in proc.stderr and "$ " + sys.executable + " -m ftr.prep" not in proc.stderr
    assert manifest(interrupted["folder"])["prepared"]["reused"] is True


@pytest.fixture(scope="module")
def fresh(resumed, interrupted, tree):
    """An interrupted run next to the completed one (its copy, marked interrupted), then `--fresh`."""
    done = interrupted["folder"]
    copy = done.with_name(done.name + "-copy")
    shutil.copytree(done, copy)
    record = manifest(copy)
    record["status"] = "interrupted"
    runs.write_json(copy / "run.json", record)
    return {"proc": ftr(tree, "--fresh"), "copy": copy, "done": done}


def test_fresh_starts_a_new_run_and_reuses_prepared_data(fresh, tree):
    proc = fresh["proc"]
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"--fresh: not resuming {fresh['copy']}" in proc.stderr and "resuming" not in proc.stderr.replace(
        "not resuming", "")
    assert "reusing it (ftr.prep skipped)" in proc.stderr
    folders = runs.run_folders(tree["recipe"])
    assert fresh["copy"] not in folders and fresh["done"] in folders and len(folders) == 2
    new = folders[-1]
    assert (tree["recipe"] / "current").resolve() == new and manifest(new)["resumes"] == []
    assert manifest(new)["steps"]["done"] == MAX_STEPS
