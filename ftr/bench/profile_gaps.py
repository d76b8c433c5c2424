"""Where the GPU waits in profiled steps: the idle gaps between kernels, each put down to the host work running then.

`FTR_BENCH_PROFILE=N` (ftr.bench.plugin) profiles a row's last N steps. The GPU's busy time alone cannot say why a
step is longer than its kernels; this finds every gap between kernels (merged over streams) and names the CPU
operator that was running in the middle of it: the innermost one, i.e. the latest-starting event that spans that
moment. A gap under `aten::item` / `aten::nonzero` / `cudaStreamSynchronize` is a host sync; one under
`Optimizer.step` is optimizer launch overhead; one under no operator at all is Python between operators (the
trainer's own loop, the data loader), named after the first event that returned once the GPU had gone idle: when
the host had been waiting for the GPU, that is the wait.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

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


def from_profiler(profiler, steps: int) -> dict:
    """The gap table of a finished torch.profiler run (idle per step too); {} if its events cannot be read."""
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
