"""`python -m ftr.bench.eval`: time `ftr eval`'s batched greedy generation against the seeds' evaluation loop.

Both run on the same model and the same chat-templated prompts, in the same process: first batched greedy
generation of N rows (what `ftr eval` does), then the seed loop (one prompt at a time, do_sample=True,
temperature 0.7, max_new_tokens 256). The seed loop is linear in rows, so `--seed-rows K` times only the first K
and extrapolates to N (reported as such). Figures go to docs/benchmarks/eval-gpu.json and a section of
docs/BENCHMARKS.md. It builds nothing: pass a model folder (e.g. a Qwen2.5-7B-shape model) and a rows file.

CPU smoke test:  python -m ftr.bench.eval --model build/tiny-models/qwen2 --data build/tiny-rephrase/data/test.jsonl \
                     --rows 4 --json /tmp/eval-bench.json --markdown /tmp/BENCHMARKS.md
"""

import argparse
import json
import platform
import re
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ftr.eval.staging import write_atomic
from ftr.paths import REPO_ROOT

SECTION_START = "<!-- eval-bench:start -->"
SECTION_END = "<!-- eval-bench:end -->"
SEED_MAX_NEW_TOKENS = 256


def cycled(rows: list[dict], n: int) -> list[dict]:
    """n rows, repeating the file's rows when it holds fewer."""
    if not rows:
        raise ValueError("the rows file is empty")
    return [rows[i % len(rows)] for i in range(n)]


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or 'x86_64'})"


def run(args) -> dict:
    import torch

    from ftr.eval import generation
    from ftr.eval.rows import read_references
    from ftr.recipes import load_recipe, parse_sets

    recipe = load_recipe(args.recipe, parse_sets(args.set or []))
    loaded = generation.load(recipe, model_dir=args.model, backend="transformers")
    rows = cycled(read_references(args.data), args.rows)
    prompts = [generation.prompt_text(loaded.tokenizer, row) for row in rows]
    batch_size = args.batch_size or generation.batch_size_for(loaded, prompts, args.max_new_tokens)  # ftr eval's default
    torch.manual_seed(0)
    generation.generate(loaded, prompts[:2], batch_size=2, max_new_tokens=4, progress=False)  # warm-up

    loaded.generated_tokens = 0
    start = time.perf_counter()
    generation.generate(loaded, prompts, batch_size=batch_size, max_new_tokens=args.max_new_tokens,
                        static_cache=args.static_cache)
    batched_s = time.perf_counter() - start
    batched_tokens, loaded.generated_tokens = loaded.generated_tokens, 0

    seed_rows = min(args.seed_rows or len(prompts), len(prompts))
    start = time.perf_counter()
    generation.seed_loop(loaded, prompts[:seed_rows], max_new_tokens=args.seed_max_new_tokens)
    seed_measured_s = time.perf_counter() - start
    seed_s = seed_measured_s * len(prompts) / seed_rows

    return {
        "what": "ftr eval's batched greedy generation vs the seeds' one-at-a-time sampling loop, "
                "same model and prompts",
        "command": args.command,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(),
        "model": str(args.model),
        "dtype": loaded.source["dtype"],
        "rows": len(prompts),
        "batch_size": batch_size,
        "static_cache": args.static_cache,
        "batched_greedy": {"seconds": round(batched_s, 3), "max_new_tokens": args.max_new_tokens,
                           "generated_tokens": batched_tokens,
                           "rows_per_s": round(len(prompts) / batched_s, 2)},
        "seed_loop": {"seconds": round(seed_s, 3), "measured_rows": seed_rows,
                      "measured_seconds": round(seed_measured_s, 3), "extrapolated": seed_rows < len(prompts),
                      "max_new_tokens": args.seed_max_new_tokens, "temperature": 0.7, "do_sample": True,
                      "generated_tokens_measured": loaded.generated_tokens},
        "speedup": round(seed_s / batched_s, 2),
        "versions": {name: metadata.version(name) for name in ("torch", "transformers")},
    }


def markdown_section(result: dict) -> str:
    seed, batched = result["seed_loop"], result["batched_greedy"]
    extrapolated = (f" (measured on {seed['measured_rows']} rows: {seed['measured_seconds']} s, scaled to "
                    f"{result['rows']})" if seed["extrapolated"] else "")
    return "\n".join([
        SECTION_START,
        "## Eval speed: batched greedy vs the seed loop",
        "",
        f"Command: `{result['command']}`  ",
        f"Device: {result['device']}, model `{result['model']}` ({result['dtype']}), {result['date']}",
        "",
        "| loop | rows | seconds | generated tokens |",
        "|---|---|---|---|",
        f"| `ftr eval` batched greedy (batch {result['batch_size']}, max_new_tokens {batched['max_new_tokens']}) | "
        f"{result['rows']} | {batched['seconds']} | {batched['generated_tokens']} |",
        f"| seed loop (1 prompt at a time, sampling T=0.7, max_new_tokens {seed['max_new_tokens']}) | "
        f"{result['rows']} | {seed['seconds']}{extrapolated} | {seed['generated_tokens_measured']} "
        f"(on {seed['measured_rows']} rows) |",
        "",
        f"Speedup: **{result['speedup']}x**. Figures: `docs/benchmarks/eval-gpu.json`.",
        SECTION_END,
    ])


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of a markdown file (between its markers), or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(SECTION_START) + ".*?" + re.escape(SECTION_END), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    write_atomic(path, text.rstrip("\n") + "\n")


def main(argv=None) -> dict:
    import shlex
    import sys

    parser = argparse.ArgumentParser(prog="python -m ftr.bench.eval", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="A whole model folder (weights + tokenizer).")
    parser.add_argument("--data", type=Path, required=True, help="Chat rows JSONL (e.g. build/<id>/data/test.jsonl).")
    parser.add_argument("--rows", type=int, default=100, help="Rows to generate (the file's rows are repeated).")
    parser.add_argument("--seed-rows", type=int, help="Time the seed loop on the first K rows only, scaled to --rows.")
    parser.add_argument("--batch-size", type=int, help="Batched greedy batch size (default: all rows at once).")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--seed-max-new-tokens", type=int, default=SEED_MAX_NEW_TOKENS,
                        help="The seed loop's cap (the seeds use 256; lower only for smoke tests).")
    parser.add_argument("--static-cache", action="store_true",
                        help="Batched greedy with a static KV cache + torch.compile (compile time included).")
    parser.add_argument("--recipe", default="qwen-rephrase", help="Recipe giving the chat template and dtype.")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="Recipe override (repeatable).")
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "docs" / "benchmarks" / "eval-gpu.json")
    parser.add_argument("--markdown", type=Path, default=REPO_ROOT / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "-m", "ftr.bench.eval"] + list(sys.argv[1:] if argv is None else argv))
    result = run(args)
    write_atomic(args.json, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    write_section(args.markdown, markdown_section(result))
    print(f"batched greedy: {result['batched_greedy']['seconds']} s, seed loop: {result['seed_loop']['seconds']} s "
          f"for {result['rows']} rows on {result['device']}: {result['speedup']}x; wrote {args.json}, {args.markdown}")
    return result


if __name__ == "__main__":
    main()
