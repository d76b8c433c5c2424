"""Scoring functions: lists of reference and predicted strings in, a dict of numbers out. No files, no models.

`score_rephrase` scores the rephrase JSON task (seed 000's bars: JSON validity, field completeness, is_in_scope
accuracy per class) plus keyword exact match and BLEU/chrF of the free-text fields; `score_text` scores free text
(stories, domain answers) with BLEU, chrF, exact match and length ratio.
"""

import json
import re
import unicodedata

import sacrebleu
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from ftr.converters.formats import REPHRASE_FIELDS, REPHRASE_TARGET

FIELD_TYPES = {name: REPHRASE_FIELDS[name] for name in REPHRASE_TARGET}
TEXT_FIELDS = ("reasoning", "message_banner", "message_no_result")
CLASSES = ("true", "false")
INVALID = "invalid"  # the predicted class of a prediction without a strict-JSON boolean is_in_scope
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def parse_strict(text: str) -> dict | None:
    """The prediction as a JSON object when its whole text (whitespace-stripped) is one, else None."""
    try:
        value = json.loads(text.strip())
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def extract_first_object(text: str) -> dict | None:
    """The first JSON object that parses starting at any '{' in text (fences and prose around it allowed)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    return None


def _has_type(value, expected: type) -> bool:
    # bool is a subclass of int, and JSON's true must not pass for a number (or the reverse): compare exactly.
    return type(value) is expected


def field_completeness(text: str) -> float:
    """Share of the five target fields present with the right JSON type; 0 when the text is not strict JSON."""
    parsed = parse_strict(text)
    if parsed is None:
        return 0.0
    return sum(_has_type(parsed.get(name), kind) for name, kind in FIELD_TYPES.items()) / len(FIELD_TYPES)


def scope_label(parsed: dict | None) -> str:
    """"true"/"false" for a JSON boolean is_in_scope, else "invalid" (unparsed, missing, or not a boolean)."""
    value = parsed.get("is_in_scope") if parsed is not None else None
    return ("true" if value else "false") if type(value) is bool else INVALID


def normalize(text: str) -> str:
    """Unicode NFC and surrounding whitespace stripped: how keywords and exact matches are compared."""
    return unicodedata.normalize("NFC", text).strip()


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _check_lengths(references: list[str], predictions: list[str]) -> None:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("nothing to score: no references")


def _parse_references(references: list[str]) -> list[dict]:
    parsed = []
    for index, text in enumerate(references):
        value = parse_strict(text)
        if value is None or scope_label(value) == INVALID:
            raise ValueError(f"reference {index} is not a rephrase JSON object with a boolean is_in_scope: "
                             f"{text[:120]!r}")
        parsed.append(value)
    return parsed


def score_rephrase(references: list[str], predictions: list[str]) -> dict:
    """Seed 000's metrics for predicted rephrase JSON strings against reference JSON strings (same order)."""
    _check_lengths(references, predictions)
    refs = _parse_references(references)
    preds = [parse_strict(text) for text in predictions]
    y_true = [scope_label(ref) for ref in refs]
    y_pred = [scope_label(pred) for pred in preds]
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(CLASSES), zero_division=0)
    matrix = confusion_matrix(y_true, y_pred, labels=[*CLASSES, INVALID])

    def keyword_match(ref, pred):
        return pred is not None and isinstance(pred.get("keyword"), str) and \
            normalize(pred["keyword"]) == normalize(ref["keyword"])

    def field_texts(rows, name):
        return [row.get(name) if row is not None and isinstance(row.get(name), str) else "" for row in rows]

    return {
        "n": len(refs),
        "json_valid_rate": _mean(pred is not None for pred in preds),
        "json_extractable_rate": _mean(extract_first_object(text) is not None for text in predictions),
        "field_completeness": _mean(field_completeness(text) for text in predictions),
        "is_in_scope_accuracy": _mean(t == p for t, p in zip(y_true, y_pred)),
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(support[i])}
            for i, label in enumerate(CLASSES)
        },
        # rows: reference class; columns: predicted class, "invalid" when no boolean could be read
        "confusion": {label: {col: int(matrix[i][j]) for j, col in enumerate([*CLASSES, INVALID])}
                      for i, label in enumerate(CLASSES)},
        "keyword_exact_match": _mean(keyword_match(ref, pred) for ref, pred in zip(refs, preds)),
        "bleu": {name: corpus_bleu(field_texts(refs, name), field_texts(preds, name)) for name in TEXT_FIELDS},
        "chrf": {name: corpus_chrf(field_texts(refs, name), field_texts(preds, name)) for name in TEXT_FIELDS},
    }


def bleu_tokenizer(references: list[str]) -> str:
    """sacrebleu's tokenizer for these references: "zh" when they contain CJK text, else its default "13a"."""
    return "zh" if any(_CJK.search(text) for text in references) else "13a"


def corpus_bleu(references: list[str], predictions: list[str]) -> float:
    """Corpus BLEU (0-100) of predictions against one reference each."""
    return float(sacrebleu.corpus_bleu(predictions, [references], tokenize=bleu_tokenizer(references)).score)


def corpus_chrf(references: list[str], predictions: list[str]) -> float:
    """Corpus chrF (0-100) of predictions against one reference each."""
    return float(sacrebleu.corpus_chrf(predictions, [references]).score)


def score_text(references: list[str], predictions: list[str]) -> dict:
    """BLEU, chrF, exact match and length ratio (predicted / reference characters) of free-text answers."""
    _check_lengths(references, predictions)
    refs = [normalize(text) for text in references]
    preds = [normalize(text) for text in predictions]
    return {
        "n": len(refs),
        "bleu": corpus_bleu(refs, preds),
        "bleu_tokenize": bleu_tokenizer(refs),
        "chrf": corpus_chrf(refs, preds),
        "exact_match": _mean(r == p for r, p in zip(refs, preds)),
        "length_ratio": sum(map(len, preds)) / max(1, sum(map(len, refs))),
    }


TASKS = {"rephrase": score_rephrase, "text": score_text}


def score(task: str, references: list[str], predictions: list[str]) -> dict:
    """Dispatch to the task's scorer ("rephrase" or "text")."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return {"task": task, **TASKS[task](references, predictions)}


def task_for(data_format: str) -> str:
    """The scoring task of a recipe's data format: rephrase recipes are scored as JSON, the rest as text."""
    return "rephrase" if data_format == "rephrase" else "text"
