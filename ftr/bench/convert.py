"""Benchmark lint + convert on a generated rephrase file: `python -m ftr.bench.convert [--rows 100000]`.

Generates the file with data/examples/make_examples.py (a plain generator below stands in when that script is
absent), then times lint_file and convert_file in a fresh child process so that its peak RSS covers only them.
Writes docs/benchmarks/convert-cpu.json and the `converters` section of docs/BENCHMARKS.md.
"""

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ftr.paths import REPO_ROOT

GENERATOR = REPO_ROOT / "data" / "examples" / "make_examples.py"
RESULT_JSON = REPO_ROOT / "docs" / "benchmarks" / "convert-cpu.json"
BENCHMARKS_MD = REPO_ROOT / "docs" / "BENCHMARKS.md"
SECTION_TITLE = "## converters"


def generate(rows: int, seed: int, path: Path) -> str:
    """Write a rephrase JSON array of `rows` rows; returns which generator wrote it."""
    if GENERATOR.exists():
        subprocess.run([sys.executable, str(GENERATOR), "--rephrase-rows", str(rows), "--seed", str(seed),
                        "-o", str(path)], check=True)
        return "data/examples/make_examples.py"
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as out:
        out.write("[\n")
        for i in range(rows):
            in_scope = rng.random() > 0.05
            row = {"query": f"sữa bột cho bé {i} tháng giá rẻ", "keyword": f"sữa bột cho bé {i} tháng" if in_scope else "",
                   "is_in_scope": in_scope, "reasoning": "Người dùng cần sữa bột, thuộc nhóm sữa của shop mẹ và bé.",
                   "message_banner": "Sữa bột chính hãng cho bé", "message_no_result": "Chưa tìm thấy, mẹ thử bỉm nhé!"}
            out.write(("  " if i == 0 else ",\n  ") + json.dumps(row, ensure_ascii=False))
        out.write("\n]\n")
    return "ftr/bench/convert.py (built-in)"


def measure(data: Path, outdir: Path) -> dict:
    """Run in the child: time lint then convert, and report peak RSS."""
    from ftr.converters.convert import convert_file
    from ftr.converters.lint import lint_file

    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    report = lint_file(data, system_prompt="Bạn là trợ lý tìm kiếm.")
    linted = time.perf_counter()
    manifest = convert_file(data, outdir, system_prompt="Bạn là trợ lý tìm kiếm.")
    converted = time.perf_counter()
    return {
        "lint_seconds": round(linted - started, 3),
        "convert_seconds": round(converted - linted, 3),
        "cpu_seconds": round(_cpu_seconds() - cpu_before, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "lint_errors": len(report.errors),
        "kept": manifest["kept"],
    }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftr.bench.convert", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-write", action="store_true", help="print the figures only; leave docs/ alone")
    parser.add_argument("--measure", nargs=2, metavar=("DATA", "OUTDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]))))
        return 0

    with tempfile.TemporaryDirectory(prefix="ftr-bench-") as scratch:
        data = Path(scratch) / f"rephrase_{args.rows}.json"
        generator = generate(args.rows, args.seed, data)
        load_before = os.getloadavg()[0]
        child = subprocess.run([sys.executable, "-m", "ftr.bench.convert", "--measure", str(data),
                                str(Path(scratch) / "out")], check=True, capture_output=True, text=True)
        figures = json.loads(child.stdout.strip().splitlines()[-1])
        input_mib = data.stat().st_size / 2**20
    seconds = figures["lint_seconds"] + figures["convert_seconds"]
    result = {
        "rows": args.rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(args.rows / seconds),
        "peak_rss_mib": figures["peak_rss_mib"],
        "cpu_seconds": figures["cpu_seconds"],
        "load_average_1m_before": round(load_before, 2),
        "lint_seconds": figures["lint_seconds"],
        "convert_seconds": figures["convert_seconds"],
        "input_mib": round(input_mib, 1),
        "kept": figures["kept"],
        "lint_errors": figures["lint_errors"],
        "generator": generator,
        "command": f"python -m ftr.bench.convert --rows {args.rows} --seed {args.seed}",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": _cpu_model(),
                    "python": platform.python_version()},
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if not args.no_write:
        RESULT_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULT_JSON.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        write_section(result)
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_section(result: dict) -> None:
    """Replace (or append) the `## converters` section of docs/BENCHMARKS.md, leaving other sections alone."""
    m = result["machine"]
    section = f"""{SECTION_TITLE}

`ftr lint` + `ftr convert` on a generated {result['rows']:,}-row rephrase JSON array ({result['input_mib']} MiB,
written by {result['generator']}), both in one process, measured by:

    {result['command']}

| rows | lint s | convert s | total s (wall) | CPU s | rows/s | peak RSS MiB |
|---:|---:|---:|---:|---:|---:|---:|
| {result['rows']:,} | {result['lint_seconds']} | {result['convert_seconds']} | {result['seconds']} | {result['cpu_seconds']} | {result['rows_per_s']:,} | {result['peak_rss_mib']} |

Machine: {m['cpu_count']} CPUs ({m['processor']}), {m['platform']}, Python {m['python']}; 1-minute load
average {result['load_average_1m_before']} when the run started (wall time grows when other jobs share the CPUs;
CPU time does not). Peak RSS is the child process's `ru_maxrss` (interpreter and imports included). Raw figures:
`docs/benchmarks/convert-cpu.json`.
"""
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION_TITLE), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        text = "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    BENCHMARKS_MD.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
