"""Benchmark lint + convert on a generated rephrase file: `python -m ftr.bench.convert [--rows 100000]`.

Generates the file with data/examples/make_examples.py (a plain generator below stands in when that script is
absent), then times lint_file and convert_file in a fresh child process so that its peak RSS covers only them.
Writes docs/benchmarks/convert-cpu.json and the `converters` section of docs/BENCHMARKS.md.

`--prep-rows 2000 20000` times data preparation instead: `python -m ftr.prep CONFIG` end to end (interpreter start
to exit) in a fresh child per run, on rows converted and a config rendered exactly as `python -m ftr.bench` does
(ftr.bench.train make_data / render_config, the qwen-rephrase recipe, the real Qwen2.5 tokenizer), with ftr.prep's
own per-phase times (FTR_PREP_TIMINGS). Writes docs/benchmarks/prep-<host>.json and the `## Data preparation end to
end` section of docs/BENCHMARKS.md (the `## Data preparation` section stays ftr.bench's).
"""

import argparse
import json
import os
import platform
import random
import resource
import shutil
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
PREP_SECTION_TITLE = "## Data preparation end to end"
PREP_PHASES = ("imports", "config", "tokenizer", "dataset_load", "tokenise", "filters", "packing", "save")


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
    parser.add_argument("--prep-rows", type=int, nargs="+", metavar="ROWS",
                        help="time `python -m ftr.prep` at these row counts instead of lint + convert")
    parser.add_argument("--prep-plain", action="store_true", help="with --prep-rows: also Axolotl's preprocess as is")
    parser.add_argument("--repeat", type=int, default=1, help="with --prep-rows: runs per row count")
    parser.add_argument("--prep-procs", type=int, nargs="+", metavar="N",
                        help="with --prep-rows: time each row count at these dataset_num_proc (default: the recipe's)")
    parser.add_argument("--workdir", type=Path, help="with --prep-rows: data and configs (default: a temp dir)")
    parser.add_argument("--tokenizer", type=Path, help="with --prep-rows: the Qwen2.5 model/tokenizer folder "
                        "(default: the offline tiny-models qwen2, built if missing)")
    parser.add_argument("--prep-json", type=Path, help="with --prep-rows: also copy the raw figures here (e.g. $OUT)")
    parser.add_argument("--prep-from-results", type=Path, metavar="JSON",
                        help="write the prep section from the raw figures of an earlier --prep-rows run (no timing)")
    args = parser.parse_args(argv)
    if args.prep_from_results:
        write_prep(json.loads(args.prep_from_results.read_text(encoding="utf-8")))
        return 0
    if args.prep_rows:
        if min(args.prep_rows) < 1 or args.repeat < 1 or min(args.prep_procs or [1]) < 1:
            parser.error("--prep-rows, --repeat and --prep-procs take positive numbers")
        return prep_main(args)
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
    replace_doc_section(SECTION_TITLE, section)



def replace_doc_section(title: str, section: str) -> None:
    """Put `section` (its `title` line first) into docs/BENCHMARKS.md in place of the section so titled, else last."""
    text = BENCHMARKS_MD.read_text(encoding="utf-8") if BENCHMARKS_MD.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == title), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        text = "".join(lines[:start]) + section + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    BENCHMARKS_MD.write_text(text, encoding="utf-8")

def time_prep(config: Path, log: Path, env: dict, plain: bool) -> dict:
    """One `python -m ftr.prep CONFIG` in a fresh interpreter: wall and CPU seconds, and ftr.prep's phase times."""
    timings = log.with_suffix(".times.json")
    timings.unlink(missing_ok=True)
    env = dict(env, FTR_PREP_TIMINGS=str(timings))
    if plain:
        env["FTR_PREP_PLAIN"] = "1"
    else:
        env.pop("FTR_PREP_PLAIN", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run([sys.executable, "-m", "ftr.prep", str(config)], stdout=out, stderr=subprocess.STDOUT,
                              env=env, cwd=REPO_ROOT).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = {"mode": "axolotl preprocess (plain)" if plain else "ftr.prep", "rc": code, "seconds": round(wall, 2),
           "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)}
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        raise RuntimeError(f"`python -m ftr.prep {config}` exited {code}; log {log}:\n" + "\n".join(tail))
    if timings.exists():
        phases = json.loads(timings.read_text(encoding="utf-8"))
        run["phases_s"] = {k: phases[k] for k in PREP_PHASES if k in phases}
        # what ftr.prep's own clock does not see: interpreter start before it, and the exit after it
        run["phases_s"]["start_and_exit"] = round(wall - phases["in_process"], 2)
    return run


def prep_main(args) -> int:
    from ftr.bench.train import make_data, render_config, run_env
    from ftr.paths import TINY_MODELS_DIR

    import yaml

    from ftr.tiny_models import build

    tokenizer = args.tokenizer or TINY_MODELS_DIR / "qwen2"
    if not (tokenizer / "tokenizer.json").exists():
        if args.tokenizer:
            raise SystemExit(f"{tokenizer} has no tokenizer.json")
        build("qwen2", TINY_MODELS_DIR)  # the real Qwen2.5 tokenizer, offline
    with tempfile.TemporaryDirectory(prefix="ftr-bench-prep-") as scratch:
        workdir = (args.workdir or Path(scratch)).resolve()
        (workdir / "configs").mkdir(parents=True, exist_ok=True)
        if not (tokenizer / "config.json").exists():  # a tokenizer-only folder: Axolotl reads the model's config too
            tokenizer = build("qwen2", workdir / "model", tokenizer_from=tokenizer)
        env = run_env()
        load_before = os.getloadavg()[0]
        runs = []
        for rows in args.prep_rows:
            data = make_data(rows, workdir / f"data{rows}")
            base = render_config("recipe", tokenizer, data, workdir, 30, smoke=False)
            variants = [(plain, procs) for plain in ([True] if args.prep_plain else []) + [False]
                        for procs in (args.prep_procs or [base.get("dataset_num_proc")])]
            for plain, procs in variants:
                for attempt in range(args.repeat):
                    name = f"{rows}-{'plain' if plain else 'ftr'}-{procs}-{attempt}"
                    prepared = workdir / f"prepared-{name}"
                    shutil.rmtree(prepared, ignore_errors=True)
                    config = workdir / "configs" / f"prep-{name}.yaml"
                    cfg = dict(base, dataset_prepared_path=str(prepared), dataset_num_proc=procs)
                    config.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
                    run = {"rows": rows, "dataset_num_proc": procs,
                           **time_prep(config, workdir / f"prep-{name}.log", env, plain)}
                    runs.append(run)
                    print(f"prep {rows} rows, {run['mode']}: {run['seconds']} s wall, {run['cpu_seconds']} s CPU "
                          f"{run.get('phases_s', {})}", flush=True)
    command = "python -m ftr.bench.convert --prep-rows " + " ".join(map(str, args.prep_rows)) + \
        (" --prep-plain" if args.prep_plain else "") + (f" --repeat {args.repeat}" if args.repeat > 1 else "") + \
        (" --prep-procs " + " ".join(map(str, args.prep_procs)) if args.prep_procs else "")
    result = {"command": command, "load_average_1m_before": round(load_before, 2),
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": _cpu_model(),
                          "python": platform.python_version(), "gpu": _gpu_name()},
              "versions": _versions(), "runs": runs}
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.prep_json:
        args.prep_json.parent.mkdir(parents=True, exist_ok=True)
        args.prep_json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if not args.no_write:
        write_prep(result)
    return 0


def write_prep(result: dict) -> None:
    """docs/benchmarks/prep-gpu-host.json (or prep-cpu.json) and the docs section."""
    path = RESULT_JSON.parent / f"prep-{'gpu-host' if result['machine'].get('gpu') else 'cpu'}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_prep_section(result, path)


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    return names[0] if out.returncode == 0 and names else None


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("axolotl", "datasets", "transformers", "tokenizers", "torch"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def write_prep_section(result: dict, json_path: Path) -> None:
    """Replace (or append) the `## Data preparation end to end` section of docs/BENCHMARKS.md."""
    m = result["machine"]
    header = "| rows | path | dataset_num_proc | wall s | CPU s | " + \
        " | ".join(p.replace("_", " ") for p in PREP_PHASES) + " | start+exit |"
    lines = [header, "|---:|---|---:|---:|---:|" + "---:|" * (len(PREP_PHASES) + 1)]
    for run in result["runs"]:
        phases = run.get("phases_s", {})
        cells = [str(phases.get(p, "")) for p in PREP_PHASES + ("start_and_exit",)]
        lines.append(f"| {run['rows']:,} | {run['mode']} | {run.get('dataset_num_proc')} | {run['seconds']} | "
                     f"{run['cpu_seconds']} | " + " | ".join(cells) + " |")
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v)
    raw = json_path.relative_to(REPO_ROOT) if json_path.is_relative_to(REPO_ROOT) else json_path
    section = f"""{PREP_SECTION_TITLE}

`python -m ftr.prep CONFIG` timed from the shell's side (a fresh interpreter, start to exit) on qwen-rephrase rows
from data/examples/make_examples.py, converted and rendered as `python -m ftr.bench` does (real Qwen2.5 tokenizer,
sample packing; `dataset_num_proc` as in the table: the recipe's is 1), measured by:

    {result['command']}

{chr(10).join(lines)}

Phases are ftr.prep's own clock (FTR_PREP_TIMINGS): imports up to Axolotl's preprocess entry point, then config
load and validation, tokenizer load, JSON load, the tokenising map, the length/zero-trainable filters, the packing
position ids and the save; start+exit is wall time outside that clock. Machine: {m['cpu_count']} CPUs
({m['processor']}){', ' + m['gpu'] if m.get('gpu') else ''}, {m['platform']}, Python {m['python']}; {versions}; 1-minute
load average {result['load_average_1m_before']} when it started. Raw figures: `{raw}`.
"""
    replace_doc_section(PREP_SECTION_TITLE, section)


if __name__ == "__main__":
    sys.exit(main())
