"""`ftr convert` as a library: a data file -> OUTDIR/{train,val,test}.jsonl + manifest.json, written atomically.

Two streaming passes keep memory flat: the first checks and converts every record, writing the rows to a
scratch file and keeping one class label per row; the second deals the rows into their splits (in input order).
Every file is written under a temporary name in OUTDIR and renamed into place only when all are complete; nothing
else in OUTDIR is touched (see outdir).
"""

import hashlib
import json
import platform
from collections import Counter
from pathlib import Path

from ftr import tasks

from .codes import REPAIRS
from .errors import ERROR, WARNING, DataError, Problem
from .formats import to_json
from .outdir import MANIFEST, SCRATCH, OutputFolder
from .pipeline import Scan
from .recipe_options import given
from .splits import SPLITS, assign_splits, check_fractions


def convert_file(path, outdir, *, fmt=None, system_prompt=None, split=(0.8, 0.1, 0.1), seed=42,
                 drop_invalid=False, requires_alternating=False, sequence_len=None, too_long="drop", force=False,
                 on_warning=None, **scan_options) -> dict:
    """Convert `path` into Axolotl chat rows under `outdir` and return the manifest.

    Raises DataError (listing every error as `PATH:LINE: error: record N: ...`) when the file has errors and
    `drop_invalid` is False, when it cannot be read to its end, or when `outdir` may not be written (see outdir;
    `force` allows other files in it); nothing is written then. `sequence_len` and `too_long` bound the rows
    (see limits). `on_warning` is called with each warning as it is found. `scan_options`: encoding, fields, roles,
    supports_tools, conflicts, placeholders, format_from (pipeline.Scan).
    """
    fractions = check_fractions(split)
    scan = Scan(str(path), fmt, system_prompt, requires_alternating, sequence_len, too_long, **given(scan_options))
    out = OutputFolder(outdir, path, force)
    out.open()
    try:
        labels, rejected, errors, warnings, repaired = _first_pass(scan, out.temp(SCRATCH), on_warning)
        if scan.fatal is not None:
            raise DataError(path, [scan.fatal, *errors], fatal=True)
        if errors and not drop_invalid:
            raise DataError(path, errors)
        if not labels:
            raise DataError(path, [Problem(ERROR, "no_valid_rows", "no valid rows to convert", line=1)], fatal=True)
        assignment = assign_splits(labels, fractions, seed)
        counts = _deal(out.temp(SCRATCH), {name: out.temp(f"{name}.jsonl") for name in SPLITS}, assignment, labels)
        manifest = _manifest(scan, path, out, fractions, seed, counts, rejected, warnings, repaired)
        out.temp(MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        out.commit()
    except BaseException:
        out.abandon()
        raise
    return manifest


def _first_pass(scan: Scan, scratch: Path, on_warning):
    """Check and convert every record; valid rows go to `scratch`. Returns per-row labels, the rejected records,
    the errors, the warnings per class and how many kept rows a repair changed (codes.REPAIRS)."""
    labels: list[str] = []
    rejected, errors = [], []
    warnings = Counter()
    repaired = 0
    with open(scratch, "w", encoding="utf-8") as out:
        for outcome in scan:
            for problem in outcome.problems:
                if problem.severity == ERROR:
                    errors.append(problem)
                    continue
                warnings[problem.code] += 1
                if on_warning is not None:
                    on_warning(problem)
            if outcome.row is None:
                rejected.append({"line": outcome.line, "index": outcome.index, "reason": outcome.reject_reason()})
                continue
            out.write(jsonl_line(outcome.row))
            labels.append(outcome.label)
            repaired += any(problem.code in REPAIRS for problem in outcome.problems)
    for problem in scan.file_problems:
        if problem.severity == WARNING:
            warnings[problem.code] += 1
            if on_warning is not None:
                on_warning(problem)
        elif problem is not scan.fatal:
            errors.append(problem)
    return labels, rejected, errors, warnings, repaired


def jsonl_line(row: dict) -> str:
    """One JSONL line. U+0085, U+2028 and U+2029 are escaped although JSON allows them raw: str.splitlines()
    and JavaScript readers split lines on them."""
    line = to_json(row)
    if "\x85" in line or "\u2028" in line or "\u2029" in line:
        line = line.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return line + "\n"


def _deal(scratch: Path, targets: dict, assignment: bytearray, labels: list[str]) -> dict:
    """Copy each scratch row to its split's file (`targets`: split name -> path); returns rows per split and
    per class."""
    counts = {name: {"rows": 0, "classes": {}} for name in SPLITS}
    files = [open(targets[name], "wb") for name in SPLITS]
    try:
        with open(scratch, "rb") as rows:  # bytes in, bytes out: no decoding needed to deal lines
            for position, row in enumerate(rows):
                split = assignment[position]
                files[split].write(row)
                entry = counts[SPLITS[split]]
                entry["rows"] += 1
                entry["classes"][labels[position]] = entry["classes"].get(labels[position], 0) + 1
    finally:
        for file in files:
            file.close()
    scratch.unlink()
    for entry in counts.values():
        entry["classes"] = dict(sorted(entry["classes"].items()))
    return counts


def _manifest(scan: Scan, path, out: OutputFolder, fractions, seed, counts, rejected, warnings: Counter,
              repaired: int) -> dict:
    import ftfy

    import ftr

    outputs = {}
    for name in SPLITS:
        file = f"{name}.jsonl"
        outputs[name] = {"file": file, "sha256": sha256_file(out.temp(file)), **counts[name]}
    return {
        "input": {"path": str(path), "sha256": sha256_file(Path(path)), "format": scan.format,
                  "layout": scan.layout, "records": scan.records},
        "too_long": {"policy": scan.too_long, "max_characters": scan.max_chars},
        "system_prompt": scan.system_prompt,
        "split": {"fractions": list(fractions), "seed": seed,
                  "stratified_by": tasks.of_format(scan.format).STRATIFY_KEY},
        "outputs": outputs,
        "kept": sum(entry["rows"] for entry in counts.values()),
        "rejected": rejected,
        "repaired": repaired,
        "warnings": sum(warnings.values()),
        "warnings_by_class": dict(sorted(warnings.items())),
        "versions": {"ftr": ftr.__version__, "python": platform.python_version(), "ftfy": ftfy.__version__},
    }


def sha256_file(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()

