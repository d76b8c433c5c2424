"""Whether the rows `ftr eval` would score include rows the adapter trained on.

Rows are compared by a hash of their prompt messages (role and content of everything before the final assistant
turn), so a row counts as seen in training whatever its id or reference answer. The training rows are the run's
data/train.jsonl, trusted only when it is provably the file the adapter trained on: not rewritten after the adapter
was saved (a later `ftr train` that failed after converting replaces data/), and of the row count (and sha256,
when recorded) that the run's run.json recorded at the end of training.
"""

import hashlib
import json
from pathlib import Path

from ftr.eval.rows import read_references, split_chat

SHOWN_IDS = 20  # overlapping ids listed in metrics.json and the error


class OverlapError(RuntimeError):
    """The scored rows overlap the training rows, or the training rows cannot be told; the message says which."""


def run_files(run) -> Path:
    """The folder of the run's own files (data/, run.json): beside its adapter, in its run folder or build/<id>/."""
    return run.adapter.parent


def prompt_key(row: dict) -> str:
    """sha256 of a chat row's prompt messages (role and content), the final assistant turn left out."""
    prompt, _ = split_chat(row)
    text = json.dumps([[m.get("role"), m.get("content")] for m in prompt], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _newest_weights(folder: Path) -> float | None:
    files = [p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin") or p.name == "adapter_config.json"]
    return max((p.stat().st_mtime for p in files), default=None)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def training_rows_problem(run, train_file: Path) -> str | None:
    """Why train_file may not be the rows the run's adapter trained on; None when nothing says so."""
    saved = _newest_weights(run.adapter) if run.adapter.is_dir() else None
    if saved is not None and train_file.stat().st_mtime > saved:
        return (f"{train_file} was written after the adapter in {run.adapter} was saved (a later `ftr train` "
                "converted new data), so the rows this adapter trained on are not known")
    manifest = run_files(run) / "run.json"
    recorded = (json.loads(manifest.read_text(encoding="utf-8")).get("data") or {}) if manifest.exists() else {}
    rows = (recorded.get("rows") or {}).get("train")
    sha = ((recorded.get("outputs") or {}).get("train") or {}).get("sha256")
    if rows is not None:  # the count first: it says more than a differing hash
        count = sum(1 for line in train_file.open(encoding="utf-8") if line.strip())
        if count != rows:
            return f"{train_file} holds {count} rows but {manifest} recorded {rows} training rows"
    if sha is not None and sha != _sha256(train_file):
        return f"{train_file} is not the file training recorded in {manifest} (sha256 differs)"
    return None


def check(run, rows: list[dict], split: str, allow: bool = False) -> dict:
    """Overlap of `rows` (the split about to be scored) with the run's training rows, as metrics.json records it.
    Raises OverlapError when they overlap or the training rows cannot be trusted, unless allow: then the result
    carries the message as "warning"."""
    train_file = run_files(run) / "data" / "train.jsonl"
    result = {"checked": False, "train_rows_file": str(train_file), "scored_rows": len(rows), "overlapping": None}
    if not train_file.exists():
        return {**result, "reason": "no training rows to compare with"}
    problem = training_rows_problem(run, train_file)
    if problem:
        message = f"cannot check the {split} split against the adapter's training rows: {problem}"
    else:
        trained = {prompt_key(row) for row in read_references(train_file)}
        hits = [row.get("id", index) for index, row in enumerate(rows) if prompt_key(row) in trained]
        result.update(checked=True, train_rows=len(trained), overlapping=len(hits), overlapping_ids=hits[:SHOWN_IDS])
        shown = ", ".join(map(str, hits[:SHOWN_IDS])) + (" ..." if len(hits) > SHOWN_IDS else "")
        message = (f"{len(hits)} of the {len(rows)} {split} rows to score are training rows of this adapter "
                   f"(same prompt as a row of {train_file}; ids {shown}): their scores measure memory, not "
                   "generalisation") if hits else None
    if message and not allow:
        raise OverlapError(f"{message}. Refusing to score them; retrain so adapter and splits belong together, or "
                           "pass --allow-overlap to score anyway")
    return {**result, "allowed": allow, "warning": message} if message else result
