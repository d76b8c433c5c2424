"""The chat task: free-text assistant answers (stories, domain answers, any chat data), trained from chat,
instruct or any other chat-shaped records and scored against the reference answer with BLEU, chrF, exact match and length ratio. No
stratification, no answer schema, no /predict: clients use the OpenAI chat endpoint.
"""

from ftr.tasks.text_metrics import bleu_tokenizer, check_lengths, corpus_bleu, corpus_chrf, mean, normalize

NAME = "chat"
FORMATS = None  # every input format (data.format) no other task claims: chat, instruct, and any added later
STRATIFY_KEY = None  # rows are split at random, not per class
WHOLE_TARGET = False  # too_long: truncate may cut the answer too
CONFUSION = None
CARD_SYSTEM_PROMPT = False
PREDICT = False

# score()'s numbers as bars name them; tests/tasks checks them against score()'s real output.
METRICS = ("n", "bleu", "chrf", "exact_match", "length_ratio")
HEADLINE = ("bleu", "chrf")


def to_chat(messages: list[dict], system_prompt: str | None) -> list[dict]:
    """Checked messages as a chat row: the record's own system message kept, else the recipe's prepended (explicit
    by default: Qwen2.5's template injects its own default system prompt when a row has none); a None prompt
    (data.system_prompt: null) leaves the row as it is."""
    if system_prompt is None or (messages and messages[0].get("role") == "system"):
        return messages
    return [{"role": "system", "content": system_prompt}, *messages]


def stratify_label(record) -> str:
    return "all"


def score(references: list[str], predictions: list[str]) -> dict:
    """BLEU, chrF, exact match and length ratio (predicted / reference characters) of free-text answers."""
    check_lengths(references, predictions)
    refs = [normalize(text) for text in references]
    preds = [normalize(text) for text in predictions]
    return {
        "n": len(refs),
        "bleu": corpus_bleu(refs, preds),
        "bleu_tokenize": bleu_tokenizer(refs),
        "chrf": corpus_chrf(refs, preds),
        "exact_match": mean(r == p for r, p in zip(refs, preds)),
        "length_ratio": sum(map(len, preds)) / max(1, sum(map(len, refs))),
    }
