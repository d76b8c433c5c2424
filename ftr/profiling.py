"""torch.profiler for ftr's own measurements: where a stretch of GPU work spent its time, and where the GPU waited.

`Session` wraps torch.profiler (CPU, plus CUDA when there is a GPU) with explicit start/stop, as both a training
callback (ftr.bench.plugin, FTR_BENCH_PROFILE) and a `with` block (ftr eval's FTR_EVAL_PROFILE) need it.
`kernel_summary` sums device time over kernels only: the CPU operators that launched them carry the same device time
again. The GPU's busy time alone cannot say why a stretch is longer than its kernels, so `idle_gaps` finds every gap
between kernels (merged over streams) and names the CPU operator that was running in the middle of it: the innermost
one, i.e. the latest-starting event that spans that moment. A gap under `aten::item` / `aten::nonzero` /
`cudaStreamSynchronize` is a host sync; one under `Optimizer.step` is optimizer launch overhead; one under no
operator at all is Python between operators (the trainer's own loop, the data loader), named after the first event
that returned once the GPU had gone idle: when the host had been waiting for the GPU, that is the wait.
`HostSyncs` names the waits themselves: under torch.cuda's sync debug mode every synchronizing call warns, and each
is counted under the innermost frame outside torch that made it.
"""

from __future__ import annotations

import bisect
import time
import traceback
import warnings
from collections import Counter, defaultdict

MIN_GAP_US = 5.0  # shorter gaps are the launch queue's normal spacing, not waiting
SCAN_BACK = 4000  # events looked at before a gap's midpoint; nested events start close together
NO_OP = "(no operator: Python between operators)"


def merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of [start, end] intervals, sorted."""
    out: list[list[float]] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def gaps(kernels: list[tuple[float, float]], min_us: float = MIN_GAP_US) -> list[tuple[float, float]]:
    """Stretches between the first and last kernel in which no kernel runs, longer than min_us."""
    busy = merge(kernels)
    return [(a[1], b[0]) for a, b in zip(busy, busy[1:]) if b[0] - a[1] > min_us]


def attribute(idle: list[tuple[float, float]], cpu: list[tuple[float, float, str, str]], top: int = 15) -> dict:
    """Idle time by the innermost CPU event (start, end, name, root name) spanning each gap's midpoint; names are
    "parent > event" where the event has a parent."""
    cpu = sorted(cpu)
    starts = [e[0] for e in cpu]
    by_op: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    by_root: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for start, end in idle:
        mid = (start + end) / 2
        i = bisect.bisect_right(starts, mid) - 1
        found = None
        for j in range(i, max(-1, i - SCAN_BACK), -1):
            if cpu[j][1] >= mid:
                found = cpu[j]
                break
        if found is None:
            # Python between operators: the GPU ran dry while the host was not in any operator. Most often the host
            # had just waited for the GPU (an .item(), a .cpu(), a nonzero): name the first event that returned once
            # the GPU went idle, which is that wait.
            back = [e for e in cpu[max(0, i - SCAN_BACK):i + 1] if start <= e[1] <= mid]
            first = min(back, key=lambda e: e[1], default=None)
            leaf, root = (f"{NO_OP}, after {first[2]}", first[3]) if first else (NO_OP, NO_OP)
        else:
            leaf, root = found[2], found[3]
        for table, key in ((by_op, leaf), (by_root, root)):
            table[key][0] += end - start
            table[key][1] += 1

    def rows(table):
        ranked = sorted(table.items(), key=lambda kv: kv[1][0], reverse=True)[:top]
        return [{"op": name[:120], "idle_ms": round(us / 1000, 2), "gaps": int(n)} for name, (us, n) in ranked]

    total = sum(end - start for start, end in idle)
    return {"idle_ms": round(total / 1000, 2), "gaps": len(idle), "by_op": rows(by_op), "by_root": rows(by_root)}


def idle_gaps(profiler, steps: int) -> dict:
    """The gap table of a finished torch.profiler run (idle per step too); {} without two kernels."""
    kernels, cpu = [], []
    for event in profiler.events():
        start, end = event.time_range.start, event.time_range.end
        if str(getattr(event, "device_type", "")).endswith("CUDA"):
            kernels.append((start, end))
            continue
        parent = getattr(event, "cpu_parent", None)
        root = event
        while getattr(root, "cpu_parent", None) is not None:
            root = root.cpu_parent
        cpu.append((start, end, f"{parent.name} > {event.name}" if parent is not None else event.name, root.name))
    if len(kernels) < 2:
        return {}
    out = attribute(gaps(kernels), cpu)
    out["window_ms"] = round((max(e for _, e in kernels) - min(s for s, _ in kernels)) / 1000, 2)
    out["idle_ms_per_step"] = round(out["idle_ms"] / max(steps, 1), 2)
    return out


def _device_us(event) -> float:
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0) or 0


def kernel_summary(events, top: int = 40) -> dict:
    """GPU busy seconds (kernels and memcpys only) and the `top` kernels by device time, from a profiler's
    key_averages()."""
    kernels = sorted((e for e in events if _device_us(e) > 0 and str(getattr(e, "device_type", "CUDA")).endswith("CUDA")),
                     key=_device_us, reverse=True)
    busy = sum(_device_us(e) for e in kernels) / 1e6
    return {"gpu_busy_s": round(busy, 3),
            "top_kernels": [{"name": e.key[:160], "gpu_s": round(_device_us(e) / 1e6, 4), "calls": e.count,
                             "share_of_busy": round(_device_us(e) / 1e6 / busy, 4) if busy else None}
                            for e in kernels[:top]]}


def operator_table(events, rows: int = 60, by: str = "device") -> str:
    """torch.profiler's table of key_averages(), by device time (when a GPU ran; else by CPU time) or by="cpu": by
    host time."""
    on_gpu = by == "device" and any(_device_us(e) for e in events)
    sort = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    return events.table(sort_by=sort, row_limit=rows, max_name_column_width=90)


class Session:
    """One profiled stretch: start(), the work, stop(); then summary() and table()."""

    def __init__(self):
        self.profiler = None
        self.wall = 0.0
        self._averages = None

    def start(self) -> None:
        import torch

        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
            torch.cuda.synchronize()
        self.profiler = torch.profiler.profile(activities=activities)
        self.profiler.__enter__()
        self._started = time.perf_counter()

    def stop(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.wall = time.perf_counter() - self._started
        self.profiler.__exit__(None, None, None)
        self._averages = None

    def averages(self):
        """key_averages() of the stopped run, computed once (seconds on a few training steps' trace)."""
        if self._averages is None:
            self._averages = self.profiler.key_averages()
        return self._averages

    def summary(self, steps: int = 1) -> dict:
        """Wall and GPU busy time, the top kernels and the idle gaps (best effort: a failure is recorded)."""
        # microseconds kept: a stretch on the CPU (the tests) can be shorter than a millisecond
        out = {"steps": steps, "wall_s": round(self.wall, 6), **kernel_summary(self.averages())}
        out["gpu_busy_fraction"] = round(out["gpu_busy_s"] / self.wall, 3) if self.wall else None
        try:
            out["idle"] = idle_gaps(self.profiler, steps)
        except Exception as exc:  # noqa: BLE001 - profiler internals vary by torch version; never fail the run
            out["idle"] = {"error": repr(exc)[:300]}
        return out

    def table(self, rows: int = 60, by: str = "device") -> str:
        return operator_table(self.averages(), rows, by)


SYNC_WARNING = "synchronizing CUDA operation"  # torch.cuda.set_sync_debug_mode's warning text


class HostSyncs:
    """Count the host syncs of a stretch by call site: start(), the work, stop(); then summary(steps).

    Only syncs made from Python are seen (torch turns their warning into a Python one); a sync inside a C++-only
    backward node warns on stderr instead. Nothing is recorded without a GPU."""

    def __init__(self):
        self.sites: Counter = Counter()
        self._saved = None

    def start(self) -> None:
        import torch

        if not torch.cuda.is_available():
            return
        self._saved = (warnings.filters[:], warnings.showwarning)
        warnings.filterwarnings("always", message=f".*{SYNC_WARNING}")
        shown = warnings.showwarning

        def record(message, category, filename, lineno, file=None, line=None):
            if SYNC_WARNING not in str(message):
                return shown(message, category, filename, lineno, file, line)
            # without reading source lines: this runs in the very idle gaps the profile measures
            frames = traceback.StackSummary.extract(traceback.walk_stack(None), lookup_lines=False)
            frames.reverse()  # outermost first, as extract_stack() gives them
            self.sites[self.site(frames)] += 1

        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")

    def stop(self) -> None:
        if self._saved is None:
            return
        import torch

        torch.cuda.set_sync_debug_mode("default")
        warnings.filters[:], warnings.showwarning = self._saved
        self._saved = None

    @staticmethod
    def site(frames) -> str:
        """'package/file.py:line function' of the innermost frame outside torch and the warnings machinery."""
        for frame in reversed(frames):
            path = frame.filename.replace("\\", "/")
            if "/torch/" in path or path.endswith("/warnings.py") or path.endswith("/profiling.py"):
                continue
            short = path.split("site-packages/")[-1] if "site-packages/" in path else "/".join(path.split("/")[-2:])
            return f"{short}:{frame.lineno} {frame.name}"
        return "(torch)"

    def summary(self, steps: int = 1) -> dict:
        total = sum(self.sites.values())
        return {"syncs": total, "per_step": round(total / max(steps, 1), 2),
                "sites": [{"site": site, "count": n} for site, n in self.sites.most_common()]}
