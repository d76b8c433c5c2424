"""`ftr eval` acts on the trained run: its base model and dtype, its training rows (a split overlapping them is
refused), and outputs that appear only when complete (a killed eval leaves the previous report untouched)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
QUICK = ("--limit", "2", "--batch-size", "2", "--max-new-tokens", "4")


def ftr_cmd(build: Path, *args) -> list[str]:
    return [sys.executable, "-m", "ftr.cli", *map(str, args)]


def ftr(build: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(ftr_cmd(build, *args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, FTR_BUILD=str(build)))


@pytest.fixture
def run(trained_tiny_rephrase, tmp_path) -> Path:
    """A copy of the session's trained run in its own build tree (copy2 keeps the files' times), to break freely;
    the tiny models are the session's (axolotl.yaml names the base by its absolute path there)."""
    target = tmp_path / "build" / "tiny-rephrase"
    target.mkdir(parents=True)
    shutil.copytree(trained_tiny_rephrase / "adapter", target / "adapter",
                    ignore=shutil.ignore_patterns("checkpoint-*"))
    shutil.copytree(trained_tiny_rephrase / "data", target / "data")
    for name in ("axolotl.yaml", "run.json"):
        shutil.copy2(trained_tiny_rephrase / name, target / name)
    (target.parent / "tiny-models").symlink_to(trained_tiny_rephrase.parent / "tiny-models")
    return target


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items), encoding="utf-8")


def test_eval_takes_base_model_and_dtype_from_the_run_not_the_recipe(run):
    # The recipe now names a hub model (unreachable offline): eval must use the base the run trained on.
    proc = ftr(run.parent, "eval", "tiny-rephrase", *QUICK, "--set", "base_model=Qwen/Qwen2.5-7B-Instruct")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained_base = yaml.safe_load((run / "axolotl.yaml").read_text())["base_model"]
    assert "note: the recipe's base_model is now Qwen/Qwen2.5-7B-Instruct, but this run trained on " \
           f"{trained_base}" in proc.stderr
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    source = metrics["models"]["tuned"]["source"]
    assert source["weights"] == trained_base and source["adapter"] == str(run / "adapter")
    assert source["dtype"] == "float32" and source["run"] == str(run)
    overlap = metrics["overlap"]
    assert overlap["checked"] and (overlap["scored_rows"], overlap["overlapping"]) == (2, 0)
    assert overlap["train_rows"] == len(rows(run / "data" / "train.jsonl"))
    assert "Overlap with the adapter's training rows: 0 of 2" in (run / "eval" / "report.md").read_text()
    assert not list(run.glob(".eval-*"))


def test_eval_refuses_a_split_holding_training_rows_unless_allowed(run):
    data = run / "data"
    train, test = rows(data / "train.jsonl"), rows(data / "test.jsonl")
    # what a re-split leaves: test rows that were training rows (new ids, same prompts)
    write_rows(data / "test.jsonl", [{**row, "id": f"re-{i}"} for i, row in enumerate(train[:3])] + test[:2])
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text('{"previous": true}')
    proc = ftr(run.parent, "eval", "tiny-rephrase", "--limit", "5")
    assert proc.returncode == 1
    assert "3 of the 5 test rows to score are training rows of this adapter" in proc.stderr
    assert "ids re-0, re-1, re-2" in proc.stderr and "--allow-overlap" in proc.stderr
    assert (run / "eval" / "metrics.json").read_text() == '{"previous": true}' and not list(run.glob(".eval-*"))

    proc = ftr(run.parent, "eval", "tiny-rephrase", "--limit", "5", "--batch-size", "5", "--max-new-tokens", "4",
               "--allow-overlap")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WARNING (--allow-overlap): 3 of the 5 test rows" in proc.stderr
    overlap = json.loads((run / "eval" / "metrics.json").read_text())["overlap"]
    assert overlap["overlapping"] == 3 and overlap["overlapping_ids"] == ["re-0", "re-1", "re-2"]
    assert overlap["allowed"] is True
    assert "**WARNING (scored with --allow-overlap): 3 of the 5" in (run / "eval" / "report.md").read_text()


def test_eval_refuses_when_the_training_rows_are_not_the_adapters(run):
    train_file = run / "data" / "train.jsonl"
    saved = train_file.stat()
    original = rows(train_file)
    # a later `ftr train` that converted new data, then failed: data/ is newer than the adapter
    write_rows(train_file, list(reversed(rows(train_file))))
    proc = ftr(run.parent, "eval", "tiny-rephrase", *QUICK)
    assert proc.returncode == 1
    assert "train.jsonl was written after the adapter" in proc.stderr and "rows this adapter trained on are not " \
           "known" in proc.stderr
    # same age as before, but not the row count run.json recorded at the end of training
    write_rows(train_file, rows(train_file)[1:])
    os.utime(train_file, ns=(saved.st_atime_ns, saved.st_mtime_ns))
    proc = ftr(run.parent, "eval", "tiny-rephrase", *QUICK)
    assert proc.returncode == 1
    recorded = json.loads((run / "run.json").read_text())["data"]["rows"]["train"]
    assert f"holds {recorded - 1} rows but {run / 'run.json'} recorded {recorded} training rows" in proc.stderr
    # same age and row count, other rows: the sha256 run.json recorded tells
    write_rows(train_file, list(reversed(original)))
    os.utime(train_file, ns=(saved.st_atime_ns, saved.st_mtime_ns))
    proc = ftr(run.parent, "eval", "tiny-rephrase", *QUICK)
    assert proc.returncode == 1 and "sha256 differs" in proc.stderr


def test_a_killed_eval_leaves_the_previous_report_and_its_temp_folder_is_cleaned_next_time(run):
    out = run / "eval"
    out.mkdir()
    previous = {"metrics.json": '{"previous": true}', "predictions.jsonl": '{"id": 0, "prediction": "old"}\n',
                "judge.json": '{"judged": "the old predictions"}'}
    for name, text in previous.items():
        (out / name).write_text(text)
    proc = subprocess.Popen(ftr_cmd(run.parent, "eval", "tiny-rephrase", *QUICK), cwd=REPO_ROOT,
                            env=dict(os.environ, FTR_BUILD=str(run.parent)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(run.glob(f".eval-{proc.pid}-*")):  # the eval has started writing
            assert proc.poll() is None and time.monotonic() < deadline, "the eval ended before it could be killed"
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    assert {name: (out / name).read_text() for name in previous} == previous
    assert sorted(p.name for p in out.iterdir()) == sorted(previous)
    assert [p.name for p in run.glob(".eval-*")] and proc.returncode < 0

    done = ftr(run.parent, "eval", "tiny-rephrase", *QUICK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not list(run.glob(".eval-*")), "the killed eval's temp folder is still there"
    assert json.loads((out / "metrics.json").read_text())["n"] == 2 and not (out / "judge.json").exists()
    assert "removed from" in done.stderr and "judge.json" in done.stderr


def test_max_new_tokens_follows_the_longest_reference():
    from ftr.eval.generation import max_new_tokens_for

    class Words:  # one token per word
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [text.split() for text in texts]}

    assert max_new_tokens_for(Words(), ["a b", "a " * 100]) == 166  # 100 x 1.5 + 16
    assert max_new_tokens_for(Words(), ["a b"]) == 32  # the floor
    assert max_new_tokens_for(Words(), []) == 32


def test_rows_that_reach_the_cap_without_a_stop_are_counted():
    torch = pytest.importorskip("torch")
    from ftr.eval.generation import count_at_cap

    new = torch.tensor([[5, 6, 2, 0], [5, 6, 7, 8], [2, 0, 0, 0]])
    assert count_at_cap(new, [2], max_new_tokens=4) == 1
    assert count_at_cap(new, [2], max_new_tokens=8) == 0, "generation stopped early: nothing reached the cap"


def test_eval_profile_writes_its_summary_and_host_table(tmp_path):
    """FTR_EVAL_PROFILE's block (ftr.profiling): wall and GPU time, the idle line, then the operators by host time."""
    torch = pytest.importorskip("torch")
    from ftr.eval.generation import _profiled

    out = tmp_path / "profile.txt"
    with _profiled(str(out)):
        torch.ones(32, 32) @ torch.ones(32, 32)
    text = out.read_text()
    assert text.startswith("wall ") and "GPU busy 0.000 s" in text and "aten::matmul" in text
