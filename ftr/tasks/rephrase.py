"""The rephrase task: a shopper's query in, one JSON object out (keyword, is_in_scope, reasoning, banner text,
no-result text). Everything about it lives here: the record's fields and the target's key order, record -> chat
row, the class rows are stratified by, the answer parser and /predict's schemas, the scorer (seed 000's bars) and
the names of the metrics it measures.
"""

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from ftr.tasks.text_metrics import (check_lengths, corpus_bleu, corpus_chrf, extract_first_object, mean,
                                    normalize, parse_strict)

NAME = "rephrase"
FORMATS = ("rephrase",)  # the input formats (data.format) whose records this task trains on
FIELDS = {
    "query": str,
    "keyword": str,
    "is_in_scope": bool,
    "reasoning": str,
    "message_banner": str,
    "message_no_result": str,
}
TARGET = ("keyword", "is_in_scope", "reasoning", "message_banner", "message_no_result")
FIELD_TYPES = {name: FIELDS[name] for name in TARGET}
TEXT_FIELDS = ("reasoning", "message_banner", "message_no_result")
STRATIFY_KEY = "is_in_scope"  # splits keep the in-scope / out-of-scope ratio
WHOLE_TARGET = True  # a target cut to fit sequence_len is broken JSON: truncation never cuts it
CLASSES = ("true", "false")
INVALID = "invalid"  # the predicted class of a prediction without a strict-JSON boolean is_in_scope
CONFUSION = "is_in_scope"  # eval draws the confusion matrix of this field
CARD_SYSTEM_PROMPT = True  # the answer's JSON shape depends on the system prompt: the model card quotes it
PREDICT = True  # `ftr serve` offers POST /predict {"query"} -> the validated object

# score()'s numbers as bars name them (flattened paths); importing the scorer's libraries is too slow for
# `ftr list`, so they are listed, and tests/tasks checks them against score()'s real output.
METRICS = ("n", "json_valid_rate", "json_extractable_rate", "field_completeness", "is_in_scope_accuracy",
           *(f"per_class.{label}.{name}" for label in CLASSES for name in ("precision", "recall", "f1", "support")),
           "keyword_exact_match", *(f"{metric}.{name}" for metric in ("bleu", "chrf") for name in TEXT_FIELDS))
HEADLINE = ("json_valid_rate", "field_completeness", "is_in_scope_accuracy")

# json.dumps(..., ensure_ascii=False) builds a new encoder per call; one shared encoder is ~2x faster.
_to_json = json.JSONEncoder(ensure_ascii=False).encode


def target(record: dict) -> str:
    """The assistant turn of a rephrase row: the target fields as one JSON string, in a fixed order."""
    return _to_json({key: record[key] for key in TARGET})


def to_chat(record: dict, system_prompt: str | None) -> list[dict]:
    """A checked record as chat messages: the system prompt (explicit: Qwen2.5's template injects its own default
    when a row has none; None, data.system_prompt: null, writes none), the query, the JSON target."""
    system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    return [*system, {"role": "user", "content": record["query"]}, {"role": "assistant", "content": target(record)}]


def stratify_label(record: dict) -> str:
    """The class a record's split is stratified by: is_in_scope=true|false, or =? when it is not a boolean."""
    value = record.get(STRATIFY_KEY) if isinstance(record, dict) else None
    return f"{STRATIFY_KEY}={str(value).lower() if isinstance(value, bool) else '?'}"


class PredictRequest(BaseModel):
    """POST /predict's body."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank")
        return value


def predict_messages(request: PredictRequest, system_prompt: str) -> list[dict]:
    """The prompt of a /predict request: the training rows' system prompt and the query."""
    system = [] if system_prompt is None else [{"role": "system", "content": system_prompt}]
    return [*system, {"role": "user", "content": request.query}]


Output = create_model(
    "Output", __config__=ConfigDict(extra="forbid", strict=True),
    __doc__="What the rephrase model must answer: exactly the target's fields, with their JSON types.",
    **{name: (FIELD_TYPES[name], ...) for name in TARGET})


class InvalidModelOutput(ValueError):
    """The model's answer is not the JSON object the task promises; `problems` lists why."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


def parse_answer(text: str) -> dict:
    """The model's answer as the validated rephrase object (strict JSON, the Output schema), or InvalidModelOutput
    saying what is wrong."""
    try:
        value = json.loads(text.strip())
    except json.JSONDecodeError as exc:
        raise InvalidModelOutput("model output is not valid JSON", [str(exc)]) from None
    try:
        return Output.model_validate(value).model_dump()
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()]
        raise InvalidModelOutput("model output does not match the rephrase schema", problems) from None


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


def _parse_references(references: list[str]) -> list[dict]:
    parsed = []
    for index, text in enumerate(references):
        value = parse_strict(text)
        if value is None or scope_label(value) == INVALID:
            raise ValueError(f"reference {index} is not a rephrase JSON object with a boolean is_in_scope: "
                             f"{text[:120]!r}")
        parsed.append(value)
    return parsed


def score(references: list[str], predictions: list[str]) -> dict:
    """Seed 000's metrics for predicted rephrase JSON strings against reference JSON strings (same order): JSON
    validity, field completeness, is_in_scope accuracy per class, keyword exact match, BLEU/chrF per text field."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    check_lengths(references, predictions)
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
        "json_valid_rate": mean(pred is not None for pred in preds),
        "json_extractable_rate": mean(extract_first_object(text) is not None for text in predictions),
        "field_completeness": mean(field_completeness(text) for text in predictions),
        "is_in_scope_accuracy": mean(t == p for t, p in zip(y_true, y_pred)),
        "per_class": {
            label: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                    "support": int(support[i])}
            for i, label in enumerate(CLASSES)
        },
        # rows: reference class; columns: predicted class, "invalid" when no boolean could be read
        "confusion": {label: {col: int(matrix[i][j]) for j, col in enumerate([*CLASSES, INVALID])}
                      for i, label in enumerate(CLASSES)},
        "keyword_exact_match": mean(keyword_match(ref, pred) for ref, pred in zip(refs, preds)),
        "bleu": {name: corpus_bleu(field_texts(refs, name), field_texts(preds, name)) for name in TEXT_FIELDS},
        "chrf": {name: corpus_chrf(field_texts(refs, name), field_texts(preds, name)) for name in TEXT_FIELDS},
    }
