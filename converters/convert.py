"""`ftr convert` as a library: a data file -> OUTDIR/{train,val,test}.jsonl + manifest.json, written atomically.

Two streaming passes keep memory flat: the first checks and converts every record, writing the rows to a
scratch file and keeping one class byte per row; the second deals the rows into their splits (in input order).
Everything is written into a temporary folder beside OUTDIR, which replaces OUTDIR only when complete.
"""

import hashlib
import json
import os
import platform
import shutil
import tempfile
from pathlib import Path

from .errors import ERROR, DataError, Problem
from .formats import to_json
from .pipeline import Scan
from .splits import SPLITS, assign_splits, check_fractions

SCRATCH = "rows.jsonl.part"


def convert_file(path, outdir, *, fmt=None, system_prompt=None, split=(0.8, 0.1, 0.1), seed=42,
                 drop_invalid=False, requires_alternating=False) -> dict:
    """Convert `path` into Axolotl chat rows under `outdir` and return the manifest.

    Raises DataError (listing every error as `PATH:LINE: error: record N: ...`) when the file has errors and
    `drop_invalid` is False, or when it cannot be read to its end; nothing is written then.
    """
    fractions = check_fractions(split)
    outdir = Path(outdir)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        scan = Scan(str(path), fmt, system_prompt, requires_alternating)
        labels, rejected, errors, warnings = _first_pass(scan, workdir / SCRATCH)
        if scan.fatal is not None:
            raise DataError(path, [scan.fatal, *errors], fatal=True)
        if errors and not drop_invalid:
            raise DataError(path, errors)
        if not labels:
            raise DataError(path, [Problem(ERROR, "no_valid_rows", "no valid rows to convert", line=1)], fatal=True)
        assignment = assign_splits(labels, fractions, seed)
        counts = _deal(workdir / SCRATCH, workdir, assignment, labels)
        manifest = _manifest(scan, path, workdir, fractions, seed, counts, rejected, warnings)
        (workdir / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n",
                                               encoding="utf-8")
        _replace_dir(workdir, outdir)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return manifest


def _first_pass(scan: Scan, scratch: Path):
    """Check and convert every record; valid rows go to `scratch`. Returns per-row labels and the rest."""
    labels: list[str] = []
    rejected, errors = [], []
    warnings = 0
    with open(scratch, "w", encoding="utf-8") as out:
        for outcome in scan:
            outcome_errors = outcome.errors
            errors.extend(outcome_errors)
            warnings += len(outcome.problems) - len(outcome_errors)
            if outcome.row is None:
                rejected.append({"line": outcome.line, "index": outcome.index, "reason": outcome.reject_reason()})
                continue
            out.write(jsonl_line(outcome.row))
            labels.append(outcome.label)
    warnings += sum(1 for p in scan.file_problems if p.severity != ERROR)
    errors.extend(p for p in scan.file_problems if p.severity == ERROR and p is not scan.fatal)
    return labels, rejected, errors, warnings


def jsonl_line(row: dict) -> str:
    """One JSONL line. U+0085, U+2028 and U+2029 are escaped although JSON allows them raw: str.splitlines()
    and JavaScript readers split lines on them."""
    line = to_json(row)
    if "\x85" in line or "\u2028" in line or "\u2029" in line:
        line = line.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return line + "\n"


def _deal(scratch: Path, workdir: Path, assignment: bytearray, labels: list[str]) -> dict:
    """Copy each scratch row to its split's file; returns rows per split and per class."""
    counts = {name: {"rows": 0, "classes": {}} for name in SPLITS}
    files = [open(workdir / f"{name}.jsonl", "wb") for name in SPLITS]
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


def _manifest(scan: Scan, path, workdir: Path, fractions, seed, counts, rejected, warnings) -> dict:
    import ftfy

    import ftr

    outputs = {}
    for name in SPLITS:
        file = f"{name}.jsonl"
        outputs[name] = {"file": file, "sha256": sha256_file(workdir / file), **counts[name]}
    return {
        "input": {"path": str(path), "sha256": sha256_file(Path(path)), "format": scan.format,
                  "layout": scan.layout, "records": scan.records},
        "system_prompt": scan.system_prompt,
        "split": {"fractions": list(fractions), "seed": seed,
                  "stratified_by": "is_in_scope" if scan.format == "rephrase" else None},
        "outputs": outputs,
        "kept": sum(entry["rows"] for entry in counts.values()),
        "rejected": rejected,
        "warnings": warnings,
        "versions": {"ftr": ftr.__version__, "python": platform.python_version(), "ftfy": ftfy.__version__},
    }


def sha256_file(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished folder into place; an existing target is swapped out first, then removed."""
    if target.exists() and not target.is_dir():
        raise DataError(target, [Problem(ERROR, "output_exists", "output path exists and is not a folder")], fatal=True)
    os.chmod(new, 0o755)  # mkdtemp makes it private
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.rename(target, old / target.name)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)
