"""ftr.bench.rows: one row on the GPU at a time, the next ones started early and held. Stand-in processes, no GPU."""

import json
import sys
import time
from pathlib import Path

from ftr.bench.rows import Pipeline, Row

REPO_ROOT = Path(__file__).resolve().parents[1]

# A row's process: held like ftr.bench.plugin holds one, then "trains" and records train_end, then tears down.
ROW = r"""
import json, sys, time
from ftr.bench.rows import wait_for_go
steps, work, teardown = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
def mark(event):
    with open(steps, "a") as fh:
        fh.write(json.dumps({"event": event, "wall": time.time()}) + "\n")
import os
held = os.nice(0)
mark("ready")
wait_for_go()
mark("go")
with open(steps + ".nice", "w") as fh:
    fh.write(f"{held} {os.nice(0)}")
time.sleep(work)
mark("train_end")
time.sleep(teardown)
sys.exit(int(sys.argv[4]) if len(sys.argv) > 4 else 0)
"""


def _row(tmp_path: Path, name: str, work: float, teardown: float, code: int = 0) -> Row:
    steps = tmp_path / name / "bench_steps.jsonl"
    return Row(name=name, cmd=[sys.executable, "-c", ROW, str(steps), str(work), str(teardown), str(code)],
               log=tmp_path / f"{name}.log", steps_file=steps)


def _events(row: Row) -> dict:
    return {r["event"]: r["wall"] for r in map(json.loads, row.steps_file.read_text().splitlines())}


def test_next_row_starts_early_but_reaches_the_gpu_only_after_training_ends(tmp_path):
    import os

    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    pipeline = Pipeline(env, REPO_ROOT, tmp_path / "gates")
    first, second = _row(tmp_path, "a", work=1.5, teardown=1.5), _row(tmp_path, "b", work=0.2, teardown=0.0)
    code, seconds, times = pipeline.run(first, timeout=60, then=[second])
    assert code == 0 and seconds >= 3.0
    a = _events(first)
    early = _events(second)
    assert early["ready"] < a["train_end"]          # b's start-up ran while a trained ...
    assert early["go"] >= a["train_end"]            # ... but b went on only once a's training had ended,
    assert early["go"] < times["exited"]            # while a was still tearing down
    code, _, times_b = pipeline.run(second, timeout=60)
    assert code == 0 and times_b["started_early_s"] > 0.5
    import os

    held, released = map(int, Path(str(second.steps_file) + ".nice").read_text().split())
    base = os.nice(0)
    assert held == min(19, base + 10)  # its start-up yielded the CPU to the row that trained ...
    assert released == (held - 10 if os.geteuid() == 0 else held)  # ... and it got its priority back when released
    pipeline.close()


def test_without_overlap_rows_run_strictly_in_turn(tmp_path):
    import os

    pipeline = Pipeline(dict(os.environ, PYTHONPATH=str(REPO_ROOT)), REPO_ROOT, tmp_path / "gates", overlap=False)
    first, second = _row(tmp_path, "a", 0.2, 0.5), _row(tmp_path, "b", 0.2, 0.0)
    _, _, times = pipeline.run(first, timeout=60, then=[second])
    assert not second.steps_file.exists()  # not started early
    pipeline.run(second, timeout=60)
    assert _events(second)["ready"] >= times["exited"]


def test_a_failed_row_releases_the_next_and_a_hung_one_times_out(tmp_path):
    import os

    pipeline = Pipeline(dict(os.environ, PYTHONPATH=str(REPO_ROOT)), REPO_ROOT, tmp_path / "gates")
    failing, hung, last = _row(tmp_path, "a", 0.1, 0.0, code=3), _row(tmp_path, "b", 30, 0.0), _row(tmp_path, "c", 0, 0)
    assert pipeline.run(failing, timeout=60, then=[hung, last])[0] == 3
    assert [w.row.name for w in pipeline.waiting] == ["b", "c"]  # two rows ahead, in order
    start = time.time()
    assert pipeline.run(hung, timeout=1.0, then=[last])[0] == 124 and time.time() - start < 10
    assert pipeline.run(last, timeout=60)[0] == 0
    pipeline.close()


def test_prestarted_rows_that_will_not_run_next_are_dropped(tmp_path):
    import os

    pipeline = Pipeline(dict(os.environ, PYTHONPATH=str(REPO_ROOT)), REPO_ROOT, tmp_path / "gates", depth=2)
    rows = [_row(tmp_path, name, 0.1, 0.0) for name in "abcd"]
    pipeline.prestart(rows[1:])
    assert [w.row.name for w in pipeline.waiting] == ["b", "c"]
    kept = pipeline.waiting[1]
    pipeline.prestart([rows[2], rows[3]])  # b was skipped: its process goes, c's is kept
    assert [w.row.name for w in pipeline.waiting] == ["c", "d"] and pipeline.waiting[0] is kept
    assert pipeline.run(rows[2], timeout=60, then=[rows[3]])[0] == 0
    assert pipeline.run(rows[3], timeout=60)[0] == 0 and not pipeline.waiting
    pipeline.close()
