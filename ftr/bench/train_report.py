"""The report of `python -m ftr.bench`: its results as markdown tables and JSON, written into docs/BENCHMARKS.md
(## Training throughput (GPU), ## Data preparation; other sections kept) and docs/benchmarks/train-gpu.json.
"""

import json
from pathlib import Path

from ftr.bench.train_setups import (ABLATION, COMPILE_ROWS, LEVERS, LOSS_CURVE, MAIN, ORDER, PACKAGES, QLORA,
                                   flops_per_token, linear_params, loss_at_tokens, loss_check)
from ftr.tiny_models import SHAPES

TARGET_TOKENS_PER_S = 17_000  # issue 15: (c) on one H200


def _fmt(value, spec: str = ",.0f", none: str = "–") -> str:
    return none if value is None else format(value, spec)


def _why_missing(r: dict) -> str:
    if r.get("skipped"):
        return f"not run: {r['skipped']}"
    if r.get("rc") == 124:
        return f"stopped at the time budget after {r.get('wall_s')} s (exit 124)"
    if r.get("rc"):
        return f"failed (exit {r['rc']})"
    return "no timing"


def train_table(results: dict, keys: list[str] | None = None) -> str:
    configs = results["configs"]
    lines = ["| config | tokens/s/GPU | trainable tokens/s | step s | tokens/step | padding | peak GiB | MFU | MFU +attn |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in [k for k in (keys or ORDER) if k in configs]:
        r = configs[key]
        if "tokens_per_s_per_gpu" not in r:
            lines.append(f"| `{key}` {r['label']} | {_why_missing(r)} | | | | | | | |")
            continue
        lines.append(f"| `{key}` {r['label']} | {_fmt(r['tokens_per_s_per_gpu'])} | {_fmt(r['trainable_tokens_per_s'])} "
                     f"| {_fmt(r.get('step_time_s'), '.3f')} | {_fmt(r.get('tokens_per_step'))} "
                     f"| {_fmt(r.get('padding_fraction'), '.1%')} | {_fmt(r.get('peak_mem_gib'), '.1f')} "
                     f"| {_fmt(r.get('mfu'), '.1%')} | {_fmt(r.get('mfu_with_attention'), '.1%')} |")
    return "\n".join(lines)


def ratios(results: dict) -> dict:
    c = results["configs"]
    rate = {k: v.get("tokens_per_s_per_gpu") for k, v in c.items()}
    trainable = {k: v.get("trainable_tokens_per_s") for k, v in c.items()}
    out = {}
    for name, rates in (("", rate), ("trainable ", trainable)):
        if rates.get("recipe") and rates.get("seed_baseline"):
            out[f"{name}(c)/(a)"] = round(rates["recipe"] / rates["seed_baseline"], 2)
        if rates.get("recipe") and rates.get("axolotl_default"):
            out[f"{name}(c)/(b)"] = round(rates["recipe"] / rates["axolotl_default"], 2)
    return out


def lever_gains(results: dict) -> list[tuple[str, str, float | None, str]]:
    """(lever, config without it, tokens/s of (c) over that config, note) per lever of (c)."""
    c = results["configs"]
    base = c.get("recipe", {}).get("tokens_per_s_per_gpu")
    rows = []
    for lever, key in LEVERS:
        r = c.get(key)
        if r is None:
            continue
        rate = r.get("tokens_per_s_per_gpu")
        gain = round(base / rate, 3) if (base and rate) else None
        rows.append((lever, key, gain, "" if gain else _why_missing(r)))
    return rows


def gpu_json(results: dict, prep_cpu: dict | None = None) -> dict:
    keep = ("label", "tokens_per_s_per_gpu", "trainable_tokens_per_s", "step_time_s", "peak_mem_gib", "mfu",
            "tokens_per_step", "padding_fraction", "measured_steps", "settings", "loss", "skipped", "rc")
    out = {}
    for key, r in results["configs"].items():
        out[key] = {k: r.get(k) for k in keep if k in r}
    return {**{k: out[k] for k in ("seed_baseline", "axolotl_default", "recipe") if k in out},
            "ablation": {k: v for k, v in out.items() if k.startswith("recipe_")},
            "qlora": {k: v for k, v in out.items() if k.startswith("qlora")},
            "ratios": ratios(results),
            "lever_gains": {lever: gain for lever, _key, gain, _note in lever_gains(results)},
            "loss_check": results.get("loss_check"), "loss_curve": results.get("loss_curve"),
            "mfu_definition": "tokens/s x 4 x N_matmul / peak; N_matmul = attention+MLP projections + LM head "
                              "(no embedding); peak = dense bf16 of the GPU (H100 SXM: 989.4e12 FLOP/s)",
            "meta": {k: results.get(k) for k in ("command", "device", "started", "versions", "python", "steps",
                                                  "warmup", "rows", "total_s", "setup_s")},
            "prep_gpu_host": results.get("prep"), "prep_cpu": prep_cpu}


def finalize(results: dict) -> dict:
    c = results["configs"]
    if "axolotl_default" in c and "recipe_mb2" in c:
        results["loss_check"] = loss_check(c["axolotl_default"], c["recipe_mb2"])
    runs = results.get("loss_curve_runs") or {}
    if all(key in runs for key in LOSS_CURVE):
        results["loss_curve"] = loss_check(runs[LOSS_CURVE[1]], runs[LOSS_CURVE[0]])
    return results


def loss_curve_lines(results: dict) -> list[str]:
    """The long-run comparison in words and numbers (`--loss-steps`), or why it is missing."""
    curve, runs = results.get("loss_curve"), results.get("loss_curve_runs") or {}
    if not curve:
        return ["Not measured in this run (`--loss-steps N` trains both for N steps)."]
    on, off = (runs[key] for key in LOSS_CURVE)
    last = curve["steps"][-1]
    cut = [key for key in LOSS_CURVE if runs[key].get("rc") not in (0, None)]
    planned = (f"Planned {on.get('steps')} steps each; {', '.join(f'`{k}`' for k in cut)} stopped early (time budget or "
               f"error), so they are compared up to step {last}. ") if cut else ""
    source = (f"From its own command on the same GPU: `{results['loss_curve_command']}`. "
              if results.get("loss_curve_command") else "")
    return [source + planned + f"Both trained on the same packed batches, schedule and seed; `{LOSS_CURVE[1]}` is "
            "(c) with Liger, Axolotl's LoRA kernels and packed_attention off (the maths the levers must not change). "
            f"Logged loss at step {last}: {curve['loss_c'][-1]:.4f} with the levers, {curve['loss_b'][-1]:.4f} "
            f"without; largest difference over the run {curve['max_abs_diff']} (mean {curve['mean_diff']:+}). "
            f"Speed over the run: {_fmt(on.get('tokens_per_s_per_gpu'))} vs {_fmt(off.get('tokens_per_s_per_gpu'))} "
            "tokens/s/GPU. Curves: `docs/benchmarks/loss-curve.png`."]


def loss_curve_png(results: dict, out: Path) -> Path | None:
    """(c)'s and (c)-without-levers' logged losses against training tokens, one PNG; None without both runs."""
    runs = results.get("loss_curve_runs") or {}
    curves = [(runs[key].get("label", key), runs[key]) for key in LOSS_CURVE if runs.get(key, {}).get("loss")]
    if len(curves) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the same batches in both runs: one tokens-per-step for both (a run stopped early recorded none of its own)
    per_step = next((run.get("tokens_per_step") for _, run in curves if run.get("tokens_per_step")), None)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, run), style in zip(curves, ("-", "--")):
        points = loss_at_tokens(run["loss"], per_step or 1)
        scale = 1e6 if per_step else 1
        ax.plot([t / scale for t, _ in points], [loss for _, loss in points], style, label=label[:60])
    ax.set_xlabel("training tokens (millions)" if per_step else "optimizer steps")
    ax.set_ylabel("logged training loss")
    ax.set_title("qwen-rephrase: speed levers on and off, same batches")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def replace_section(text: str, title: str, body: str) -> str:
    """Replace the `## title` section (up to the next `## `) or append it; other sections stay as they are."""
    lines = text.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == f"## {title}"), None)
    block = [f"## {title}", ""] + body.rstrip("\n").split("\n")
    if start is None:
        return "\n".join(lines + [""] + block) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    # keep other tools' markers (<!-- x:start -->) that sit right before the next section
    while end > start + 1 and lines[end - 1].startswith("<!--"):
        end -= 1
    return "\n".join(lines[:start] + block + [""] + lines[end:]).rstrip("\n") + "\n"


def write_docs(results: dict, doc: Path, json_path: Path, prep_cpu: dict | None = None) -> None:
    if prep_cpu is None and json_path.exists():  # keep the CPU prep figures of an earlier --prep-only run
        try:
            prep_cpu = json.loads(json_path.read_text(encoding="utf-8")).get("prep_cpu")
        except (ValueError, OSError):
            prep_cpu = None
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(gpu_json(results, prep_cpu), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    text = replace_section(text, "Training throughput (GPU)", train_section(results))
    text = replace_section(text, "Data preparation", prep_section(results, prep_cpu))
    doc.write_text(text, encoding="utf-8")
    loss_curve_png(results, json_path.parent / "loss-curve.png")


def _shape_line(shape_name: str) -> str:
    s = SHAPES[shape_name]
    return (f"{shape_name} shape (hidden {s['hidden_size']}, MLP {s['intermediate_size']}, {s['num_hidden_layers']} "
            f"layers, {s['num_attention_heads']} heads / {s['num_key_value_heads']} KV, vocab {s['vocab_size']:,}; "
            f"{linear_params(s) / 1e9:.2f}e9 matmul parameters)")


def train_section(results: dict) -> str:
    v = results.get("versions", {})
    c = results["configs"]
    vers = ", ".join(f"{k} {v[k]}" for k in PACKAGES if v.get(k))
    r = ratios(results)
    out = [
        "`make bench` (= `python -m ftr.bench`, needs one CUDA GPU and Axolotl; see docs/WHEELHOUSE.md for an offline",
        "host) runs every config below in one process tree, one after another, on the same data and model shape, and",
        "rewrites this section and `docs/benchmarks/train-gpu.json`. The figures below come from this one run:",
        "",
        f"    {results.get('command')}",
        "",
        *([f"({results['command_environment']})", ""] if results.get("command_environment") else []),
        f"- GPU: {results.get('device')} (one); Python {results.get('python')}; {vers}.",
        f"- Started {results.get('started')}, {results.get('total_s')} s in all (model build and data prep included).",
        f"- Model: random-init {_shape_line('qwen2.5-7b')}, built on the GPU in bf16 (throughput does not depend on",
        "  weight values); the real Qwen2.5 tokenizer; LoRA r16 / alpha 32 on all linear layers; bf16; "
        "`attn_implementation: sdpa`.",
        f"- Data: {results.get('rows'):,} rephrase rows (`data/examples/make_examples.py --rephrase-rows "
        f"{results.get('rows')} --seed 1`, converted by `ftr convert`, all used for training); sequence_len 2048.",
        f"- {results.get('steps')} optimizer steps per config, gradient accumulation 1 (tokens/s per GPU does not "
        f"depend on it); the first {results.get('warmup')} steps are left out of the timing.",
        *phase_lines(results),
        "",
        train_table(results, list(MAIN)),
        "",
    ]
    if r:
        main_r = [f"{k} = **{val}x**" for k, val in r.items() if not k.startswith("trainable")]
        tr_r = [f"{k.removeprefix('trainable ')} = {val}x" for k, val in r.items() if k.startswith("trainable")]
        out.append("Ratios, same run: " + ", ".join(main_r) + " (trainable tokens/s: " + ", ".join(tr_r) + ").")
        out.append("")
    rc = c.get("recipe", {})
    if rc.get("tokens_per_s_per_gpu"):
        verdict = "meets" if rc["tokens_per_s_per_gpu"] >= TARGET_TOKENS_PER_S else "misses"
        out.append(f"(c) {verdict} the {TARGET_TOKENS_PER_S:,} tokens/s/GPU target on total tokens "
                   f"({_fmt(rc['tokens_per_s_per_gpu'])}); "
                   f"on trainable tokens alone it runs {_fmt(rc.get('trainable_tokens_per_s'))}/s.")
        out.append("")
    out += [
        "Columns. *tokens/s/GPU*: real tokens (padding excluded) through forward and backward per second, summed over",
        "the timed steps, divided by their wall time (CUDA events at each step end, read after training, so the",
        "timing adds no sync). *trainable tokens/s*: the",
        "tokens that carry a label (assistant answers and their `<|im_end|>`), which is what Axolotl logs as",
        "`tokens/train_per_sec_per_gpu`; system and user prompts are about a third of every row. *padding*: share of",
        "token slots that are padding. *peak GiB*: largest `torch.cuda.max_memory_allocated` of the run (Axolotl's",
        "`memory/max_allocated`). *MFU*: tokens/s x 4 x N / 989.4e12, with N the matmul parameters above and 989.4",
        "TFLOP/s the H100/H200 SXM dense bf16 peak: LoRA runs a forward (2N FLOP/token) and a backward through the frozen",
        "weights for activations only (2N); gradient checkpointing's recomputed forward (another 2N) is work the",
        "model did not need, so it is not counted; attention scores (~1% at these lengths) and LoRA's own matmuls",
        "(<1%) are left out. On the 798 TFLOP/s an 8192-cube bf16 matmul reaches on this GPU, 4N/token caps LoRA at",
        f"about {798e12 / flops_per_token(SHAPES['qwen2.5-7b']):,.0f} tokens/s. *MFU +attn*: the attention-inclusive",
        "convention (PaLM's, which NeMo reports): 4N plus 12 x layers x hidden FLOPs for each causal (query, key)",
        "pair of the packed documents, counted per step from `position_ids`; with these short rows attention adds",
        "little, while NeMo's unpacked 4096-token rows add far more.",
        "",
        "Settings (what differs; everything else is the recipe's):",
        "",
        "| config | packing | micro-batch | grad. ckpt | LoRA dropout | Liger | LoRA kernels | optimizer |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for key in [k for k in ORDER if k in c and c[k].get("settings")]:
        st = c[key]["settings"]
        out.append(f"| `{key}` | {st.get('sample_packing')} | {st.get('micro_batch_size')} | "
                   f"{st.get('gradient_checkpointing')} | {st.get('lora_dropout')} | {st.get('liger')} | "
                   f"{st.get('lora_mlp_kernel')} | {st.get('optimizer')} |")
    out += ["", "### Ablation: what each lever of (c) buys", "",
            "Each row is (c) with one lever taken out, in the same run; gain = (c)'s tokens/s over the row's.", "",
            train_table(results, list(ABLATION)), "", "| lever kept in (c) | gain |", "|---|---:|"]
    for lever, _key, gain, note in lever_gains(results):
        out.append(f"| {lever} | {f'{gain:.2f}x' if gain else note} |")
    out += cold_compile_lines(results)
    lc = results.get("loss_check")
    out += ["", "### Loss: do the speed levers change the maths?", ""]
    if lc:
        out += ["`recipe_mb2` is (c) at micro-batch 2: the same packed batches, optimizer steps and learning-rate",
                "schedule as (b), with all of (c)'s speed levers (no checkpointing, Liger, LoRA kernels, fused AdamW)",
                "and (c)'s LoRA dropout 0 instead of 0.05. Logged training loss (mean of each 5 steps):", "",
                "| step | " + " | ".join(str(s) for s in lc["steps"]) + " |",
                "|---|" + "---:|" * len(lc["steps"]),
                "| (b) axolotl_default | " + " | ".join(f"{x:.3f}" for x in lc["loss_b"]) + " |",
                "| (c) at micro-batch 2 | " + " | ".join(f"{x:.3f}" for x in lc["loss_c"]) + " |", "",
                f"Largest difference {lc['max_abs_diff']} (mean {lc['mean_diff']:+}) at losses of "
                f"{min(lc['loss_b'] + lc['loss_c']):.1f}-{max(lc['loss_b'] + lc['loss_c']):.1f}."]
        b, rc_ = c.get("axolotl_default", {}), c.get("recipe", {})
        if b.get("tokens_per_step") and rc_.get("tokens_per_step") and rc_.get("loss") and b.get("loss"):
            lb = {int(k): x for k, x in b["loss"].items()}
            lcm = {int(k): x for k, x in rc_["loss"].items()}
            pairs = [(s, s * 2) for s in sorted(lcm) if s * 2 in lb]
            if pairs:
                txt = ", ".join(f"(c) step {s} {lcm[s]:.2f} vs (b) step {t} {lb[t]:.2f}" for s, t in pairs)
                out += ["", f"At equal training tokens with (c) as shipped (micro-batch 4 = twice (b)'s tokens per "
                            f"optimizer step, so half the steps): {txt}. That gap is the optimizer taking half as many "
                            "steps early in training, not the kernels (the micro-batch-2 rows above match)."]
    else:
        out.append("Not measured in this run (`recipe_mb2` or `axolotl_default` missing).")
    out += ["", "### Loss over a long run: (c) with and without its kernel levers", "", *loss_curve_lines(results)]
    out += ["", "### QLoRA (mistral-stories)", "", train_table(results, list(QLORA)), "",
            f"Model: random-init {_shape_line('mistral-7b')}, nf4 through bitsandbytes, as shipped in "
            "recipes/mistral-stories (r64, all linear, no packing, gradient checkpointing), gradient accumulation 1.",
            ""]
    if results.get("notes", {}).get("train"):
        out += ["### Notes on this run", "", results["notes"]["train"], ""]
    return "\n".join(out)


def startup_overhead_s(entry: dict) -> float | None:
    """Seconds a row's training took beyond its steps at the steady-state step time (the warm-up steps' extra)."""
    if entry.get("train_s") is None or not entry.get("step_time_s") or not entry.get("steps"):
        return None
    return entry["train_s"] - entry["steps"] * entry["step_time_s"]


def cold_compile_lines(results: dict) -> list[str]:
    """The torch_compile rows' cold compile, reported apart from their tokens/s (which leave the warm-up out): their
    warm-up steps' extra time over the other rows' (the median: (c) is often the profiled row, its steps slower)."""
    import statistics

    c = results.get("configs", {})
    others = [startup_overhead_s(e) for key, e in c.items() if key not in COMPILE_ROWS]
    others = [x for x in others if x is not None]
    base = statistics.median(others) if others else None
    lines = []
    for key in [k for k in COMPILE_ROWS if k in c]:
        extra = startup_overhead_s(c[key])
        if extra is None or base is None:
            continue
        lines.append(f"- `{key}`: its training took {c[key]['train_s']:.1f} s for {c[key]['steps']} steps; its "
                     f"warm-up steps took {extra - base:.0f} s more than the other rows': the cold compile, left out of its "
                     "tokens/s. Inductor caches its compiled graphs on disk (TORCHINDUCTOR_CACHE_DIR, by default "
                     "/tmp/torchinductor_$USER), so a second run on the same host compiles less (not measured here).")
    return ["", *lines] if lines else []


def phase_lines(results: dict) -> list[str]:
    """Where the rows' wall time went (ftr.bench.rows: each process started up to three rows early), as a list item."""
    rows = [e for e in results.get("configs", {}).values() if e.get("phases_s")]
    if not rows:
        return []
    names = ("start_s", "imports_s", "held_s", "load_s", "setup_s", "train_s", "teardown_s")
    mean = {n: sum(e["phases_s"].get(n, 0) for e in rows) / len(rows) for n in names}
    imports = f", {mean['imports_s']:.1f} s of it up to the config's plugins" if mean["imports_s"] else ""
    wall = sum(e.get("wall_s") or 0 for e in rows) / len(rows)
    setup = results.get("setup_s", {})
    builds = ", ".join(f"{k.removeprefix('build_')} {v} s" for k, v in setup.items()
                       if k.startswith("build_") and isinstance(v, (int, float)) and not k.endswith("_waited_s"))
    return [f"- {len(rows)} rows ran, {wall:.1f} s each on average from the GPU's release to the process's exit. Mean "
            f"phases: start-up {mean['start_s']:.1f} s{imports} (imports, config, data: started up to three rows early, while an "
            f"earlier row trained; then held {mean['held_s']:.1f} s), model load {mean['load_s']:.1f} s, Axolotl's "
            f"set-up (LoRA, patches, trainer) {mean['setup_s']:.1f} s, training {mean['train_s']:.1f} s, teardown "
            f"{mean['teardown_s']:.1f} s (beside the next row's load). Model builds: {builds or 'none'}."]


def prep_section(results: dict, prep_cpu: dict | None = None) -> str:
    out = [
        "`axolotl preprocess` of the rephrase rows spends less than half of its time tokenising. Profiled on CPU (2,000 rows,",
        "Axolotl 0.19.0, datasets 4.8.4, transformers 5.16.1), the rest went to:",
        "",
        "1. **Fingerprinting.** Every `Dataset.map`/`filter` dill-pickles its function to name a cache file. Axolotl's",
        "   tokenise function holds the tokenizer, and a transformers-5 Qwen2.5 tokenizer keeps its 151,643-entry vocab",
        "   and 294,166 merges as Python objects: ~1.2 M objects per hash, ~1 s per map (7 s of a 27 s run), paid again",
        "   by every worker when `dataset_num_proc` > 1. Preprocess runs with datasets caching off, so the hash names",
        "   nothing.",
        "2. **Saving.** Axolotl calls `save_to_disk(num_proc>=1)`; datasets then writes through a *spawn* pool whose",
        "   child re-imports the caller's `__main__` (torch, Axolotl, bitsandbytes) and is sent the whole table by",
        "   pickle: up to ~7 s for 2,000 rows on CPU here, ~22 s on the GPU host (earlier measurement), for a write",
        "   that takes well under a second in-process.",
        "3. **The model \"pre-download\"** at the end re-opens the base model on the meta device, pointless for a local",
        "   folder offline.",
        "",
        "`ftr.prep` (`python -m ftr.prep CONFIG`, now what `ftr train` runs) is Axolotl's own preprocess with those",
        "three removed: tokenizers are hashed by a digest of their backend JSON plus their small Python state (still",
        "content-derived), `save_to_disk` writes in-process with the same shard count, and the pre-download is skipped",
        "for a local base model. Tokenisation is untouched: the prepared Arrow file is byte-identical to Axolotl's, and",
        "the mask and template-parity tests (tests/recipes/test_masking.py) pass. `FTR_PREP_PLAIN=1` runs the original.",
        "",
    ]
    if prep_cpu and prep_cpu.get("runs"):
        out += [f"On this repository's CPU machine ({prep_cpu.get('machine')}; Python {prep_cpu.get('python')}), "
                f"measured by `{prep_cpu.get('command')}`:", "",
                "| rows | path | dataset_num_proc | seconds |", "|---:|---|---:|---:|"]
        grouped: dict = {}
        for run in prep_cpu["runs"]:
            grouped.setdefault((run["rows"], run["mode"], run["dataset_num_proc"]), []).append(run["seconds"])
        for (rows, mode, procs), secs in grouped.items():
            out.append(f"| {rows:,} | {mode} | {procs} | {' / '.join(str(x) for x in secs)} |")
        if any(len(v) > 1 for v in grouped.values()):
            out += ["", "(several figures: repeated runs of the same command, in order.)"]
        out.append("")
    host = results.get("prep") or {}
    if host:
        out += [f"On the GPU host ({results.get('device')} machine, 16 cores), inside the benchmark run above:", "",
                "| rows | path | seconds |", "|---:|---|---:|"]
        for key, run in host.items():
            rows = key.split("_")[0]
            seconds = run["seconds"] if not run.get("rc") else f"failed (exit {run['rc']} after {run['seconds']} s)"
            out.append(f"| {int(rows):,} | {run['mode']} | {seconds} |")
        out += ["", "Earlier host measurements of plain `axolotl preprocess` for 2,000 rows, not from this run: ~107 s "
                "(issue), 79 s with `dataset_num_proc: 1` and 123 s with the default 16 workers (2026-11-22)."]
        missing = [r for r in (2000, 20000) if str(r) not in host or host[str(r)].get("rc")]
        if missing:
            out.append(f"Not timed inside this run: {', '.join(f'{m:,}' for m in missing)} rows (`--prep-rows` "
                       "names the sizes; a failed or skipped timing is shown above).")
        out.append("")
    if results.get("notes", {}).get("prep"):
        out += [results["notes"]["prep"], ""]
    out += ["With fingerprinting gone, workers pay for themselves only on larger data, if at all: on the 2-CPU machine",
            "two workers saved ~20% at 20,000 rows; on the 16-core GPU host eight workers were slower than one at",
            "20,000 rows (*Data preparation end to end*). The recipes keep `dataset_num_proc: 1`; time",
            "`SET='dataset_num_proc=N'` on your own machine before raising it."]
    return "\n".join(out)


MULTI_ACCELS = {"single": "one process", "ddp": "DDP", "zero2": "DeepSpeed ZeRO-2", "zero3": "DeepSpeed ZeRO-3",
                "fsdp2": "FSDP2"}


def multi_table(results: dict) -> str:
    """`python -m ftr.bench.multi`'s rows (ftr.bench.multi.scaling has added efficiency and targets)."""
    lines = ["| launcher | GPUs | tokens/s/GPU | all GPUs tokens/s | per-GPU efficiency | target | step s | peak GiB "
             "| training s | wall s |", "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in results["runs"].values():
        head = f"| {MULTI_ACCELS.get(r['accel'], r['accel'])} | {r['gpus']} |"
        if "tokens_per_s_per_gpu" not in r:
            lines.append(f"{head} {_why_missing(r)} | | | | | | | {_fmt(r.get('wall_s'), '.1f')} |")
            continue
        verdict = {True: "met", False: "**missed**", None: "no reference"}[r.get("meets_target")]
        target = f"{r['target']}: {verdict}" if r.get("target") else "–"
        if r.get("of_ddp") is not None:
            target += f" ({r['of_ddp']:.1%} of DDP)"
        lines.append(f"{head} {_fmt(r['tokens_per_s_per_gpu'])} | {_fmt(r.get('total_tokens_per_s'))} "
                     f"| {_fmt(r.get('efficiency'), '.1%')} | {target} | {_fmt(r.get('step_time_s'), '.3f')} "
                     f"| {_fmt(r.get('peak_mem_gib'), '.1f')} | {_fmt(r.get('train_s'), '.1f')} "
                     f"| {_fmt(r.get('wall_s'), '.1f')} |")
    return "\n".join(lines)


def multi_section(results: dict) -> str:
    """The `## Multi-GPU scaling` section of docs/BENCHMARKS.md."""
    v = results.get("versions", {})
    vers = ", ".join(f"{k} {v[k]}" for k in (*PACKAGES, "deepspeed") if v.get(k))
    commands = results.get("commands") or [results.get("command")]
    return "\n".join([
        "`make bench-multi` (= `python -m ftr.bench.multi`, needs CUDA GPUs) trains (c), qwen-rephrase as shipped, on",
        "one GPU as a single process and then at each GPU count with each launcher (`ftr train --accel`'s own",
        "`accelerate launch` command), and rewrites this section and `docs/benchmarks/train-multi-gpu.json`. From:",
        "", *[f"    {c}" for c in commands], "",
        f"- GPUs: {results.get('device')} x {results.get('gpus_visible')} visible; Python {results.get('python')}; "
        f"{vers}.",
        f"- Started {results.get('started')}, {results.get('total_s')} s in all; random-init "
        f"{_shape_line('qwen2.5-7b')}.",
        f"- Data: {results.get('rows'):,} rephrase rows; {results.get('steps')} optimizer steps per run, micro-batch "
        f"per GPU as the recipe's (the global batch grows with the GPUs); the first {results.get('warmup')} steps "
        "are left out of the timing.",
        "",
        multi_table(results),
        "",
        "*tokens/s/GPU*: rank 0's real tokens over rank 0's timed window (CUDA events at each step end). Every rank",
        "steps together (each optimizer step all-reduces the gradients), so the window is the run's and *all GPUs",
        "tokens/s* is GPUs x that (the other ranks' packed batches differ by a few tokens). *per-GPU efficiency*:",
        "tokens/s/GPU over the one-process run's. Targets (issue 16): DDP >= 97% at 2 GPUs, >= 95% at 4, >= 93% at 8;",
        "ZeRO-2 within 2% of DDP's tokens/s at the same count. *training s*: rank 0's trainer from train begin to",
        "train end; *wall s*: the whole launch end to end (process start, model and data load, training,",
        "exit), which the timed window leaves out.",
    ])
