"""The bench's training processes: one on the GPU at a time, the next ones started early.

A row's process spends its first tens of seconds on CPU work: imports (torch, transformers, Axolotl), config checks
and loading the prepared data. None of it needs the GPU, so `python -m ftr.bench` starts the processes of the next
three rows as soon as row N is given the GPU (a row holds the GPU 20-35 s; a start-up takes 25-55 s on the GPU
hosts, so two were not always enough). ftr.bench.plugin holds such a process at Axolotl's `pre_model_load`
(before anything is put on the GPU) until the file named by FTR_BENCH_GO exists; the bench creates it once row N has
recorded the end of its training. Two rows' GPU work never overlaps; what overlaps is the CPU start-up of the next
rows (at a lower CPU priority) and the teardown of the last one with the current row's work. `--no-overlap` runs
the processes strictly one after another.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

GO_ENV = "FTR_BENCH_GO"
NICE_ENV = "FTR_BENCH_NICE"
# A row's process starts at this niceness, so that its start-up yields the CPU to the row that trains (host-bound rows
# such as the seed's, 754 tokens a step, are sensitive to it); it takes its normal priority back when released.
HELD_NICE = 10
POLL_S = 0.25


@dataclass
class Row:
    """One training process: its command, log, environment and the step recorder's file."""

    name: str
    cmd: list[str]
    log: Path
    steps_file: Path
    env: dict = field(default_factory=dict)
    cfg: dict = field(default_factory=dict)  # the Axolotl config it trains (for the report)


def start_logged(cmd: list[str], log: Path, env: dict, cwd: Path, **popen) -> tuple[subprocess.Popen, object]:
    """Start cmd with its output (after a `$ cmd` line) in log; (process, the open log the caller closes)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    fh = open(log, "w", encoding="utf-8")
    fh.write("$ " + shlex.join(cmd) + "\n")
    fh.flush()
    return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=cwd, **popen), fh


class _Started:
    def __init__(self, row: Row, go: Path, env: dict, cwd: Path):
        self.row, self.go = row, go
        row.steps_file.parent.mkdir(parents=True, exist_ok=True)
        row.steps_file.unlink(missing_ok=True)
        go.unlink(missing_ok=True)
        self.spawned = time.time()
        self.released = None
        self.proc, self.fh = start_logged(row.cmd, row.log, {**env, **row.env, GO_ENV: str(go), NICE_ENV: str(HELD_NICE)},
                                          cwd, preexec_fn=lambda: os.nice(HELD_NICE))

    def release(self) -> None:
        """Let the process past pre_model_load (idempotent)."""
        if self.released is None:
            self.go.touch()
            self.released = time.time()

    def training_ended(self) -> bool:
        try:
            return any(json.loads(line).get("event") == "train_end"
                       for line in self.row.steps_file.read_text(encoding="utf-8").splitlines() if line.strip())
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.go.unlink(missing_ok=True)


class Pipeline:
    """Runs rows one after another, the next `depth` rows' processes started while an earlier row still runs (none
    with overlap=False); only the row whose turn it is, or the next one once that row has trained, may go on."""

    def __init__(self, env: dict, cwd: Path, gates: Path, overlap: bool = True, depth: int = 3):
        self.env, self.cwd, self.gates = env, cwd, gates
        self.depth = depth if overlap else 0
        gates.mkdir(parents=True, exist_ok=True)
        self.waiting: list[_Started] = []

    def _start(self, row: Row) -> _Started:
        return _Started(row, self.gates / f"{row.name}.go", self.env, self.cwd)

    def prestart(self, rows: list[Row]) -> None:
        """Make the waiting processes those of `rows` (the next ones, in order; at most `depth`), held before their
        model load: processes already started for them are kept, any other is killed."""
        rows = rows[:self.depth]
        names = [r.name for r in rows]
        for started in [w for w in self.waiting if w.row.name not in names]:
            started.stop()
        kept = {w.row.name: w for w in self.waiting if w.row.name in names}
        self.waiting = [kept.get(r.name) or self._start(r) for r in rows]

    def drop(self) -> None:
        """Kill the pre-started processes (the rows they were for will not run next)."""
        self.prestart([])

    def run(self, row: Row, timeout: float | None = None, then: list[Row] | None = None) -> tuple[int, float, dict]:
        """Run `row` (its pre-started process if there is one) to its end; `then`: the rows after it, whose
        processes start now, the first released as soon as this one's training has ended. (exit code, seconds from
        release to exit, times), 124 on timeout."""
        current = next((w for w in self.waiting if w.row.name == row.name), None)
        if current is not None:
            self.waiting.remove(current)
        else:
            current = self._start(row)
        current.release()
        self.prestart(list(then or []))
        nxt = self.waiting[0] if self.waiting else None
        code = None
        while code is None:
            code = current.proc.poll()
            if code is not None:
                break
            if nxt is not None and nxt.released is None and current.training_ended():
                nxt.release()
            if timeout is not None and time.time() - current.released > timeout:
                current.stop()
                code = 124
                break
            time.sleep(POLL_S)
        ended = time.time()
        current.close()
        if nxt is not None:  # e.g. this row failed before it trained: the next may go now
            nxt.release()
        times = {"spawned": current.spawned, "released": current.released, "exited": ended,
                 "started_early_s": round(current.released - current.spawned, 1)}
        return code, ended - current.released, times

    def close(self) -> None:
        self.drop()


def wait_for_go() -> float:
    """In a row's process: block until the bench releases it (FTR_BENCH_GO); seconds waited."""
    path = os.environ.get(GO_ENV)
    start = time.monotonic()
    if not path:
        return 0.0
    parent = os.getppid()
    while not Path(path).exists():
        if os.getppid() != parent:  # the bench is gone: nobody will release this process
            raise SystemExit(f"{GO_ENV}: the benchmark that started this process has exited")
        time.sleep(POLL_S / 2)
    try:
        os.nice(-int(os.environ.get(NICE_ENV) or 0))  # needs CAP_SYS_NICE (root); otherwise it stays nicer
    except OSError:
        pass
    return time.monotonic() - start
