"""Helpers the task scorers (and the judge) share: text normalisation, corpus BLEU/chrF, JSON read from an answer.

sacrebleu is imported inside the scorers that use it, so importing a task (as `ftr list` does) stays fast.
"""

import json
import re
import unicodedata

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def normalize(text: str) -> str:
    """Unicode NFC and surrounding whitespace stripped: how keywords and exact matches are compared."""
    return unicodedata.normalize("NFC", text).strip()


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def check_lengths(references: list[str], predictions: list[str]) -> None:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("nothing to score: no references")


def bleu_tokenizer(references: list[str]) -> str:
    """sacrebleu's tokenizer for these references: "zh" when they contain CJK text, else its default "13a"."""
    return "zh" if any(_CJK.search(text) for text in references) else "13a"


def corpus_bleu(references: list[str], predictions: list[str]) -> float:
    """Corpus BLEU (0-100) of predictions against one reference each."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(predictions, [references], tokenize=bleu_tokenizer(references)).score)


def corpus_chrf(references: list[str], predictions: list[str]) -> float:
    """Corpus chrF (0-100) of predictions against one reference each."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(predictions, [references]).score)


def parse_strict(text: str) -> dict | None:
    """The answer as a JSON object when its whole text (whitespace-stripped) is one, else None."""
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
