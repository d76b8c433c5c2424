"""Reference and prediction files: read JSONL, take each chat row's reference answer, pair predictions with it.

References are the chat rows `ftr convert` writes ({"id", "messages"}); the reference is the last assistant
message and the prompt is everything before it. Predictions are {"id", "prediction"} rows, matched by id when
every row on both sides has one, else by order.
"""

import json
from pathlib import Path


class RowsError(ValueError):
    """A reference or prediction file that cannot be read or paired; the message names file and line."""


def read_jsonl(path: Path) -> list[dict]:
    """Every non-blank line of a JSONL file as an object."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RowsError(f"{path}:{number}: not JSON: {exc.msg}") from None
            if not isinstance(row, dict):
                raise RowsError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def split_chat(row: dict) -> tuple[list[dict], str]:
    """(prompt messages, reference answer): the messages before the last assistant turn, and its content."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise RowsError("row has no 'messages' list")
    for index in range(len(messages) - 1, -1, -1):
        if isinstance(messages[index], dict) and messages[index].get("role") == "assistant":
            return messages[:index], str(messages[index].get("content", ""))
    raise RowsError("row has no assistant message")


def read_references(path: Path) -> list[dict]:
    """Chat rows, each with its reference answer checked to exist."""
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        try:
            split_chat(row)
        except RowsError as exc:
            raise RowsError(f"{path}: row {number}: {exc}") from None
    return rows


def read_predictions(path: Path) -> list[dict]:
    rows = read_jsonl(path)
    for number, row in enumerate(rows, 1):
        if not isinstance(row.get("prediction"), str):
            raise RowsError(f"{path}: row {number}: 'prediction' must be a string")
    return rows


def pair(references: list[dict], predictions: list[dict], allow_missing: bool = False
         ) -> tuple[list[dict], list[str], list]:
    """(reference rows, predicted answers, ids) in reference order; by id when all rows carry one. With
    allow_missing, references without a prediction (an eval run with --limit) are left out instead of failing."""
    if all("id" in row for row in references) and all("id" in row for row in predictions):
        by_id = {}
        for row in predictions:
            key = str(row["id"])
            if key in by_id:
                raise RowsError(f"prediction id {row['id']!r} appears twice")
            by_id[key] = row["prediction"]
        ref_ids = [str(row["id"]) for row in references]
        if len(set(ref_ids)) != len(ref_ids):
            raise RowsError("reference ids are not unique; cannot match predictions by id")
        missing = [key for key in ref_ids if key not in by_id]
        if allow_missing:
            references = [row for row in references if str(row["id"]) in by_id]
            ref_ids, missing = [str(row["id"]) for row in references], []
        unknown = sorted(set(by_id) - set(ref_ids))
        if missing or unknown:
            raise RowsError(f"predictions do not match references by id: {len(missing)} reference id(s) without "
                            f"a prediction {missing[:5]}, {len(unknown)} prediction id(s) not in the references "
                            f"{unknown[:5]}")
        ordered = [by_id[key] for key in ref_ids]
        ids = [row["id"] for row in references]
    else:
        if len(references) != len(predictions):
            raise RowsError(f"{len(references)} references but {len(predictions)} predictions (rows without "
                            "ids are matched by order, so the counts must be equal)")
        ordered = [row["prediction"] for row in predictions]
        ids = [row.get("id", index) for index, row in enumerate(references)]
    return references, ordered, ids


def reference_answers(references: list[dict]) -> list[str]:
    return [split_chat(row)[1] for row in references]
