"""Rows far beyond the recipe's sequence_len, found by counting characters before any tokenizer sees them.

Tokenising one pathological row is what costs (a 200 MB row: 477 s and 17.5 GB in preprocessing, only to be
dropped there), so a row is bounded by characters first: message contents (system prompt included) and tool calls
(each function's name and JSON arguments, which the template renders too) totalling more than
sequence_len * CHARS_PER_TOKEN characters are certainly too long for natural text. Measured with the
real tokenizers on the shipped data, Qwen2.5 averages 1.7 (Chinese) to 3.7 (English, code) characters a token and
Mistral 1.1 to 3.0, so 10 leaves a margin of ~3x. Only long runs of one character pack denser (Qwen2.5: 128 spaces
or 64 dashes a token), and such a row is no training data either. Rows under the bound can still exceed
sequence_len: `ftr lint --recipe` counts those with the real tokenizer, and Axolotl drops them.
Without a recipe the bound is DEFAULT_SEQUENCE_LEN (the 32k context of the shipped base models) tokens' worth.

What happens to a row over the bound is the recipe's `data.too_long` (or --too-long):
- drop (default): the row goes to the manifest's rejected list, reason [too_long], with a warning;
- error: an error like any bad record (convert refuses the file unless --drop-invalid);
- truncate: the longest contents are cut to one common length, so shorter ones (the system prompt, a short
  answer) stay whole, until the row fits the bound; a warning names every cut. Text is cut, not summarised, and
  the bound is in characters, so a cut row may still be over sequence_len in tokens: Axolotl then applies its
  own rule to it (drop, by default), but tokenising it is now cheap. A rephrase target and a tool call's arguments
  are JSON that a cut would break: they are never cut, and a row that does not fit without cutting them is
  dropped instead.
"""

from .errors import ERROR, WARNING, Problem

CHARS_PER_TOKEN = 10
DEFAULT_SEQUENCE_LEN = 32768
TOO_LONG = ("drop", "truncate", "error")


def char_bound(sequence_len: int | None) -> int:
    """The most characters a row's messages may hold: sequence_len (or the default) times CHARS_PER_TOKEN."""
    return (sequence_len or DEFAULT_SEQUENCE_LEN) * CHARS_PER_TOKEN


def check_too_long(too_long: str) -> str:
    if too_long not in TOO_LONG:
        raise ValueError(f"too_long must be one of {', '.join(TOO_LONG)}, got {too_long!r}")
    return too_long


def limit_row(messages: list[dict], bound: int, too_long: str, keep_target: bool = False):
    """(messages to write or None, Problem or None) for a converted row. `keep_target`: never cut the last
    message. The Problem has no line or record yet; the pipeline adds them."""
    total = sum(len(m["content"]) + tool_call_chars(m) for m in messages)
    if total <= bound:
        return messages, None
    over = (f"{total:,} characters of text > {bound:,} ({bound // CHARS_PER_TOKEN:,} tokens x {CHARS_PER_TOKEN} "
            "characters a token): far over sequence_len")
    if too_long == "error":
        return None, Problem(ERROR, "too_long", over)
    if too_long == "truncate":
        if (cut := _truncate(messages, bound, keep_target)) is not None:
            out, cuts = cut
            return out, Problem(WARNING, "too_long", f"{over}; truncated {', '.join(cuts)} (too_long: truncate)")
        over += f"; it cannot be truncated to fit without cutting {'the target' if keep_target else 'its tool calls'}"
    return None, Problem(WARNING, "too_long", f"{over}; dropped (too_long: drop)")


def tool_call_chars(message: dict) -> int:
    """The characters of a message's tool calls: each function's name and arguments (JSON text once converted)."""
    return sum(len(call["function"]["name"]) + len(call["function"]["arguments"])
               for call in message.get("tool_calls") or ())


def _truncate(messages: list[dict], bound: int, keep_target: bool):
    """The messages with the longest contents cut to a common cap so that they hold at most `bound` characters,
    and a description of each cut; None when even empty cuttable contents would not fit."""
    last = len(messages) - 1
    cuttable = {i for i, m in enumerate(messages) if m["content"] and not (keep_target and i == last)}
    budget = bound - sum(len(m["content"]) for i, m in enumerate(messages) if i not in cuttable) \
        - sum(map(tool_call_chars, messages))
    if not cuttable or budget < len(cuttable):  # every cut content keeps at least one character
        return None
    sizes = sorted(len(messages[i]["content"]) for i in cuttable)
    cap = sizes[-1]
    for position, size in enumerate(sizes):  # the largest cap that fits, so that the shorter contents stay whole
        left = len(sizes) - position
        if size * left > budget:
            cap = budget // left
            break
        budget -= size
    out, cuts = [], []
    for i, message in enumerate(messages):
        content = message["content"]
        if i in cuttable and len(content) > cap:
            cuts.append(f"the {message.get('role')} text (message {i} of the converted row) from {len(content):,} "
                        f"to {cap:,} characters")
            message = {**message, "content": content[:cap]}
        out.append(message)
    return out, cuts
