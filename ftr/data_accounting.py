"""What `ftr train` does to a run's rows before the trainer sees them, said on stdout and in run.json.

Three things, measured before training: what conversion did (kept, rejected and the warning classes), the rows
Axolotl will drop (or truncate) for exceeding sequence_len, and whether the trainer gets any batch at all. Axolotl
logs its drops only in preprocess.log and, with too few rows for a batch, trains zero steps and saves an untrained
adapter with exit 0; both are stopped or shown here instead.

Row lengths are measured as `ftr lint --recipe` measures them (converters.lint: apply_chat_template of the
recipe's tokenizer, which is the text Axolotl's chat_template strategy tokenises). Batches follow Axolotl 0.19:
its multipack sampler (utils/samplers/multipack.pack_group, drop_last=True) with bins of micro_batch_size x
sequence_len tokens when the attention implementation packs by position ids, else bins of sequence_len grouped
micro_batch_size at a time; without packing the trainer's DataLoader drops the last partial batch too.
"""

import json
import math
import re
from array import array
from pathlib import Path
from types import SimpleNamespace

import click

from ftr.converters import lint

MAX_IDS = 1000  # ids listed per split in run.json; the count is always whole
PACKING_ATTENTION = frozenset({"flash_attention_2", "flash_attention_3", "flash_attention_4", "flash_attention_torch",
                               "flex_attention", "xformers", "sage", "kernels-community/flash-attn2",
                               "kernels-community/flash-attn3", "kernels-community/sage-attention"})


def packing_attention(attn_implementation: str | None) -> bool:
    """Whether Axolotl packs by position ids with this attention (one bin of micro_batch_size x sequence_len)."""
    try:
        from axolotl.utils.schemas.enums import ATTN_IMPLS_SUPPORTING_PACKING as known, attn_impl_base
    except ImportError:  # an Axolotl without the table: the 0.19 one, copied above
        known, attn_impl_base = PACKING_ATTENTION, lambda name: (name or "").split(":", 1)[0].split("@", 1)[0]
    return attn_impl_base(attn_implementation) in known


def conversion_summary(conversion: dict) -> dict:
    """run.json's account of conversion: records read, kept (and how many of them a repair changed), rejected by
    class, warnings by class."""
    rejected: dict[str, int] = {}
    for entry in conversion["rejected"]:
        for code in lint_codes(entry.get("reason", "")) or ["unknown"]:
            rejected[code] = rejected.get(code, 0) + 1
    return {"records": conversion["input"]["records"], "kept": conversion["kept"],
            "rejected": len(conversion["rejected"]), "rejected_by_class": dict(sorted(rejected.items())),
            "repaired": conversion.get("repaired", 0), "warnings": conversion["warnings"],
            "warnings_by_class": conversion.get("warnings_by_class", {})}


def lint_codes(reason: str) -> list[str]:
    return re.findall(r"\[(\w+)\]", reason)


def measure(tokenizer, path: Path, sequence_len: int) -> list[tuple]:
    """(row id, tokens) of each row of a converted split that the chat template renders, in file order."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    batch = [SimpleNamespace(row=row, line=n + 1, index=n) for n, row in enumerate(rows)]
    lengths, failed = array("q"), set()
    for start in range(0, len(batch), lint.TOKENIZE_BATCH):
        part = batch[start:start + lint.TOKENIZE_BATCH]
        problems = lint.measure_batch(tokenizer, sequence_len, part, lengths)
        failed |= {p.index for p in problems if p.code == "template_error"}
    measured = [item for item in batch if item.index not in failed]
    return [(item.row.get("id", item.index), n) for item, n in zip(measured, lengths)]


def over_long(lengths: dict, sequence_len: int, strategy: str = "drop") -> dict:
    """run.json's `dropped_by_axolotl` / `truncated_by_axolotl`: the rows over sequence_len tokens, by split."""
    ids = {split: [row_id for row_id, n in rows if n > sequence_len] for split, rows in lengths.items()}
    action = "truncates" if strategy == "truncate" else "drops"
    return {"count": sum(len(v) for v in ids.values()),
            "by_split": {split: len(v) for split, v in ids.items()},
            "ids": {split: v[:MAX_IDS] for split, v in ids.items()},
            "reason": f"over sequence_len {sequence_len} tokens (apply_chat_template of the recipe's tokenizer); "
                      f"Axolotl's excess_length_strategy {strategy} {action} them"}


def batches_per_epoch(lengths: list[int], *, sequence_len: int, micro_batch_size: int, processes: int = 1,
                      packing: bool = False, position_id_packing: bool = False) -> int:
    """Batches one process gets per epoch (drop_last, as Axolotl's train loader), from the rows' token lengths."""
    if not packing:
        return len(lengths) // (micro_batch_size * processes)
    from axolotl.utils.samplers.multipack import pack_group
    import numpy as np

    capacity, per_batch = ((micro_batch_size * sequence_len, 1) if position_id_packing
                           else (sequence_len, micro_batch_size))
    bins = pack_group(np.array(lengths, dtype=np.int64), 0, capacity, max(len(lengths), 1), 200)
    return len(bins) // (per_batch * processes)


def planned_steps(batches: int, gradient_accumulation_steps: int, num_epochs: float, max_steps: int | None) -> int:
    """Optimizer steps the trainer will take: none without a batch; else max_steps, or the epochs' steps."""
    if batches <= 0:
        return 0
    if max_steps and max_steps > 0:
        return max_steps
    return max(1, math.ceil(num_epochs * math.ceil(batches / gradient_accumulation_steps)))


def step_plan(cfg: dict, lengths: list[int], processes: int = 1) -> dict:
    """The step estimate for the rendered config `cfg` and the train rows' lengths; `fix` when it is zero."""
    settings = {"sequence_len": int(cfg["sequence_len"]), "micro_batch_size": int(cfg.get("micro_batch_size") or 1),
                "processes": processes, "packing": bool(cfg.get("sample_packing")),
                "position_id_packing": packing_attention(cfg.get("attn_implementation"))}
    gas = int(cfg.get("gradient_accumulation_steps") or 1)
    epochs, max_steps = float(cfg.get("num_epochs") or 1), cfg.get("max_steps")
    batches = batches_per_epoch(lengths, **settings)
    plan = {"train_rows": len(lengths), "batches_per_epoch": batches, "micro_batch_size": settings["micro_batch_size"],
            "gradient_accumulation_steps": gas, "num_epochs": epochs, "max_steps": max_steps, "processes": processes,
            "sample_packing": settings["packing"], "estimated": planned_steps(batches, gas, epochs, max_steps)}
    if plan["estimated"] == 0:
        for overrides in ({"micro_batch_size": 1}, {"packing": False}, {"packing": False, "micro_batch_size": 1}):
            if batches_per_epoch(lengths, **{**settings, **overrides}) > 0:
                plan["fix"] = " ".join(f"--set {'sample_packing' if k == 'packing' else k}={str(v).lower()}"
                                       for k, v in overrides.items())
                break
    return plan


def zero_steps_message(recipe_id: str, plan: dict) -> str:
    """Why the trainer would take no step, and the override (or the data) that gives it one."""
    packed = " packed" if plan["sample_packing"] else ""
    fix = (f"Add `{plan['fix']}` to the `ftr train {recipe_id}` command, or add train rows" if plan.get("fix")
           else "Add train rows")
    return (f"training would take 0 steps: {plan['train_rows']} train rows make 0{packed} batches of "
            f"micro_batch_size {plan['micro_batch_size']} x {plan['processes']} process(es) (the last partial "
            f"batch is dropped), so the adapter would be saved untrained. {fix}.")


def account(recipe, folder: Path, manifest: dict, processes: int = 1) -> None:
    """Measure the run's converted rows, record the account in run.json's `data` and `steps_plan`, print it on
    stdout, and stop (ClickException) before preprocessing when no training step would happen or Axolotl would
    refuse over-long rows."""
    import yaml

    cfg = yaml.safe_load((folder / "axolotl.yaml").read_text(encoding="utf-8"))
    sequence_len = int(cfg["sequence_len"])
    strategy = str(cfg.get("excess_length_strategy") or "drop").lower()
    tokenizer = recipe.load_tokenizer()
    lengths = {split: measure(tokenizer, folder / "data" / f"{split}.jsonl", sequence_len) for split in ("train", "val")}
    summary = manifest["data"]  # conversion_summary's keys, which start_run put there
    long_rows = over_long(lengths, sequence_len, strategy)
    key = "truncated_by_axolotl" if strategy == "truncate" else "dropped_by_axolotl"
    manifest["data"][key] = long_rows
    kept = [n for _, n in lengths["train"] if strategy == "truncate" or n <= sequence_len]
    plan = step_plan(cfg, [min(n, sequence_len) for n in kept], processes)
    manifest["steps_plan"] = plan
    for line in report_lines(summary, long_rows, key, plan):
        click.echo(f"{recipe.id}: {line}")
    if strategy == "raise" and long_rows["count"]:
        raise click.ClickException(f"{long_rows['count']} rows are {long_rows['reason'].replace('drops', 'refuses')} "
                                   f"(ids {long_rows['ids']}); shorten them, or set axolotl.excess_length_strategy")
    if plan["estimated"] == 0:
        raise click.ClickException(zero_steps_message(recipe.id, plan))
    if strategy == "drop" and lengths["val"] and long_rows["by_split"]["val"] == len(lengths["val"]):
        raise click.ClickException(f"every val row ({len(lengths['val'])}) is {long_rows['reason']}, so Axolotl "
                                   "would evaluate on nothing: add rows, or raise sequence_len")


def report_lines(summary: dict, long_rows: dict, key: str, plan: dict) -> list[str]:
    """The account as stdout lines: conversion, over-long rows, the step estimate."""
    by_class = lambda counts: f" ({', '.join(f'{code} {n}' for code, n in counts.items())})" if counts else ""
    lines = [f"data: {summary['records']} records -> {summary['kept']} rows kept ({summary.get('repaired', 0)} of "
             f"them repaired), {summary['rejected']} rejected"
             f"{by_class(summary['rejected_by_class'])}, {summary['warnings']} warnings"
             f"{by_class(summary['warnings_by_class'])}"]
    if long_rows["count"]:
        ids = "; ".join(f"{split} ids {v}" for split, v in long_rows["ids"].items() if v)
        verb = "truncates" if key.startswith("truncated") else "drops"
        lines.append(f"Axolotl {verb} {long_rows['count']} rows {long_rows['reason'].split(';')[0]}: "
                     f"{ids} (run.json data.{key})")
    packed = ", packed" if plan["sample_packing"] else ""
    lines.append(f"steps: about {plan['estimated']} ({plan['train_rows']} train rows left{packed} -> "
                 f"{plan['batches_per_epoch']} batches/epoch of micro_batch_size {plan['micro_batch_size']}, "
                 f"gradient_accumulation_steps {plan['gradient_accumulation_steps']}, num_epochs "
                 f"{plan['num_epochs']:g}, max_steps {plan['max_steps']})")
    return lines
