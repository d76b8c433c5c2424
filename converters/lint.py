"""`ftr lint` as a library: every problem of a data file by line and record, and a summary of what would train.

The summary follows the OpenAI fine-tuning data-prep cookbook: counts per problem class, the token-length
distribution of the converted rows and a suggested epoch count.
"""

import math
from array import array
from collections import Counter
from dataclasses import dataclass, field

from .errors import ERROR, WARNING, Problem
from .pipeline import Outcome, Scan, approx_tokens
from .recipe_options import with_recipe

# The OpenAI cookbook's epoch heuristic.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

APPROX_METHOD = "approximate: UTF-8 bytes / 4 + 4 per message; pass --recipe for the real tokenizer"
TOKENIZE_BATCH = 256


@dataclass
class LintReport:
    """The outcome of `lint_file`: `problems` sorted by line, and `summary` (a JSON-ready dict)."""

    path: str
    problems: list[Problem]
    summary: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    def lines(self, max_per_class: int = 0) -> list[str]:
        """One `PATH:LINE: severity: record N: message [class]` line per problem (at most `max_per_class` of each
        class when it is > 0, then one line saying how many were left out)."""
        shown, left_out = Counter(), Counter()
        out = []
        for problem in self.problems:
            key = (problem.severity, problem.code)
            if max_per_class and shown[key] >= max_per_class:
                left_out[key] += 1
                continue
            shown[key] += 1
            out.append(problem.format(self.path))
        for (severity, code), count in sorted(left_out.items()):
            out.append(f"{self.path}: note: {count} more {severity}s of class {code} not shown")
        return out


def suggested_epochs(n_rows: int) -> int:
    """The cookbook's heuristic: 3 epochs, more for small sets (>= 100 examples seen), fewer for huge ones."""
    if n_rows <= 0:
        return 0
    if n_rows * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n_rows))
    if n_rows * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_rows)
    return TARGET_EPOCHS


def lint_file(path, *, fmt=None, system_prompt=None, requires_alternating=False, recipe=None, sequence_len=None,
              too_long=None, **scan_options) -> LintReport:
    """Check a data file. `recipe` (an id or a loaded recipe) supplies the defaults for the other options and
    measures rows with the recipe's real tokenizer against its sequence_len. Rows far over `sequence_len` are found
    by characters first and never tokenised; `too_long` says what happens to them (see limits; default drop).
    `scan_options`: encoding, fields, roles, supports_tools, conflicts, placeholders, format_from (pipeline.Scan),
    the recipe's by default."""
    recipe = None if recipe is None else resolve_recipe(recipe)
    # False, 0 and "" leave the recipe's value too: a caller may add the alternation rule, never lift it from a
    # family whose template raises without it.
    options = with_recipe(recipe, fmt=fmt, system_prompt=system_prompt, sequence_len=sequence_len or None,
                          requires_alternating=requires_alternating or None, too_long=too_long or None, **scan_options)
    tokenizer = None if recipe is None else recipe.load_tokenizer()
    sequence_len = options.get("sequence_len")
    scan = Scan(str(path), options.pop("fmt", None), **options)
    problems: list[Problem] = []
    lengths = array("q")
    labels: Counter = Counter()
    batch: list[Outcome] = []
    for outcome in scan:
        problems.extend(outcome.problems)
        if outcome.row is None:
            continue
        labels[outcome.label] += 1
        if tokenizer is None:
            lengths.append(approx_tokens(outcome.row["messages"]))
            continue
        batch.append(outcome)
        if len(batch) >= TOKENIZE_BATCH:
            problems.extend(measure_batch(tokenizer, sequence_len, batch, lengths))
            batch.clear()
    if batch:
        problems.extend(measure_batch(tokenizer, sequence_len, batch, lengths))
    problems.extend(scan.file_problems)
    problems.sort(key=lambda p: (p.line or 0, p.index if p.index is not None else -1))
    method = APPROX_METHOD if tokenizer is None else (
        f"apply_chat_template of the recipe's tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__}"
        f", sequence_len {sequence_len}")
    report = LintReport(str(path), problems)
    report.summary = _summary(scan, problems, labels, lengths, method)
    return report


def resolve_recipe(recipe):
    """A loaded recipe from an id (importing ftr.recipes only now: it is heavier than the converters)."""
    if not isinstance(recipe, str):
        return recipe
    try:
        from ftr.recipes import load_recipe
    except ImportError as exc:
        raise ValueError(f"--recipe needs ftr.recipes, which cannot be imported: {exc}") from None
    return load_recipe(recipe)


def measure_batch(tokenizer, sequence_len, batch: list[Outcome], lengths: array) -> list[Problem]:
    """Token lengths of a batch of rows under the chat template, appended to `lengths` (rows the template rejects
    get none, and a template_error); a row over sequence_len is a warning. A batch item needs `row`, `line` and
    `index` (an Outcome, or the like for rows read back from a converted split)."""
    problems = []
    texts, measured = [], []
    for outcome in batch:
        try:
            texts.append(tokenizer.apply_chat_template(outcome.row["messages"], tokenize=False))
            measured.append(outcome)
        except Exception as exc:  # a template that raises on a row must not stop the lint
            problems.append(Problem(ERROR, "template_error", f"the recipe's chat template rejects the row: {exc}",
                                    line=outcome.line, index=outcome.index))
    if not texts:
        return problems
    for outcome, ids in zip(measured, tokenizer(texts, add_special_tokens=False)["input_ids"]):
        lengths.append(len(ids))
        if len(ids) > sequence_len:
            problems.append(Problem(WARNING, "too_long", f"{len(ids)} tokens > sequence_len {sequence_len}; "
                                    "Axolotl drops (or truncates) such rows", line=outcome.line, index=outcome.index))
    return problems


def _summary(scan: Scan, problems: list[Problem], labels: Counter, lengths: array, method: str) -> dict:
    by_class = {ERROR: Counter(), WARNING: Counter()}
    for problem in problems:
        by_class[problem.severity][problem.code] += 1
    valid = sum(labels.values())
    tokens = None
    if lengths:
        ordered = sorted(lengths)
        tokens = {
            "counted_with": method,
            "min": ordered[0],
            "p50": _percentile(ordered, 50),
            "p95": _percentile(ordered, 95),
            "max": ordered[-1],
        }
    return {
        "path": scan.path,
        "format": scan.format,
        "layout": scan.layout,
        "records": scan.records,
        "valid": valid,
        "errors": sum(by_class[ERROR].values()),
        "warnings": sum(by_class[WARNING].values()),
        "errors_by_class": dict(sorted(by_class[ERROR].items())),
        "warnings_by_class": dict(sorted(by_class[WARNING].items())),
        "labels": dict(sorted(labels.items())),
        "tokens": tokens,
        "suggested_epochs": suggested_epochs(valid),
        "fatal": scan.fatal.code if scan.fatal else None,
    }


def _percentile(ordered, percent: int) -> int:
    """Nearest-rank percentile of a sorted sequence."""
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


def format_summary(summary: dict) -> str:
    """The summary as the few lines `ftr lint` prints after the problems."""
    s = summary
    lines = [f"summary: {s['records']} records ({s['format'] or 'unknown format'}, {s['layout'] or 'unread'}): "
             f"{s['valid']} valid rows, {s['errors']} errors, {s['warnings']} warnings"]
    if s["fatal"]:
        lines.append(f"  nothing can be converted from this file: see the [{s['fatal']}] error")
    for severity in ("errors", "warnings"):
        if counts := s[f"{severity}_by_class"]:
            lines.append(f"  {severity} by class: " + ", ".join(f"{code} {n}" for code, n in counts.items()))
    if s["labels"] and list(s["labels"]) != ["all"]:
        lines.append("  valid rows by class: " + ", ".join(f"{label} {n}" for label, n in s["labels"].items()))
    if tokens := s["tokens"]:
        lines.append(f"  tokens per row: min {tokens['min']}, p50 {tokens['p50']}, p95 {tokens['p95']}, "
                     f"max {tokens['max']} ({tokens['counted_with']})")
    if s["valid"]:
        lines.append(f"  suggested epochs: {s['suggested_epochs']} (OpenAI cookbook heuristic for {s['valid']} rows)")
    return "\n".join(lines)
