"""The input formats (rephrase, OpenAI chat, ShareGPT, instruct): detect one, check a record against it and convert it to an Axolotl chat row.

Pure functions, records in and rows out: no file I/O, no line numbers (the pipeline adds those). Every text field
goes through text.repair_text, so a row is written only with repaired text and every repair is a warning; {{name}}
placeholders in it are filled from data.placeholders or left, and counted (the pipeline reports them per file). What a
record holds and how it becomes a chat row (fields, target order, stratify class) is its task's (ftr.tasks).
"""

import json
import re
from collections import Counter
from dataclasses import dataclass, field

from ftr.tasks import chat, rephrase

from .chatshapes import sharegpt_to_chat, text_of_parts, tool_calls_of, tools_of, training_flag
from .errors import ERROR, WARNING, Problem
from .text import ascii_safe, control_characters, repair_text, snippet

FORMATS = ("rephrase", "chat", "sharegpt", "instruct")

# The OpenAI chat format's record keys, message keys and roles (tool calling and fine-tuning weights included).
RECORD_KEYS = ("messages", "tools", "functions")
MESSAGE_KEYS = ("role", "content", "name", "function_call", "tool_calls", "tool_call_id", "weight")
ROLES = ("system", "user", "assistant", "tool")

# json.dumps(..., ensure_ascii=False) builds a new encoder per call; one shared encoder is ~2x faster.
to_json = json.JSONEncoder(ensure_ascii=False).encode

# A template placeholder left in a text (LLaMA-Factory's identity data: "I am {{name}}, developed by {{author}}").
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

_JSON_TYPE = {str: "a string", bool: "a JSON boolean", type(None): "null", int: "a number", float: "a number",
              list: "an array", dict: "an object"}


@dataclass
class Checked:
    """A record after checking: `messages` when it converts (None on any error), its findings, its class."""

    messages: list[dict] | None
    problems: list[Problem] = field(default_factory=list)
    label: str = "all"
    tools: str | None = None  # the record's tool list as JSON text (chat rows that declare tools)
    own_system: bool | None = None  # the record brought its own system message (None: its format has none)
    fill: dict | None = None  # data.placeholders: name -> the text that replaces {{name}}
    filled: Counter | None = None  # placeholder name -> times filled in this record
    unfilled: Counter | None = None  # placeholder name -> times left as it was

    @property
    def has_error(self) -> bool:
        return any(p.severity == ERROR for p in self.problems)


def detect_format(value) -> str | None:
    """The format a record looks like, from its keys; None when it is not an object of a known shape."""
    if not isinstance(value, dict):
        return None
    if "messages" in value:
        return "chat"
    if "conversations" in value:
        return "sharegpt"
    if "query" in value or "is_in_scope" in value:
        return "rephrase"
    if "instruction" in value or "prompt" in value or "output" in value or "response" in value:
        return "instruct"
    return None


def format_keys(value, fmt: str) -> str:
    """The keys of `value` that make it look like format `fmt`, as `{prompt, response}` (for a mismatch message)."""
    known = {"rephrase": rephrase.FIELDS, "chat": RECORD_KEYS, "sharegpt": ("conversations", "system", "tools"),
             "instruct": (*INSTRUCT_FIELDS, *PROMPT_RESPONSE_FIELDS)}[fmt]
    return "{" + ", ".join(key for key in value if key in known) + "}"


def check_record(value, fmt: str, system_prompt: str | None, requires_alternating: bool = False,
                 supports_tools: bool = True, placeholders: dict | None = None) -> Checked:
    """Check one record of format `fmt` and convert it to chat messages; a record without its own system message
    gets `system_prompt` first (none when it is None). `supports_tools`: whether the recipe's chat template renders
    tools and tool calls (else such records are errors). `placeholders`: {{name}} -> text, filled in every text."""
    out = Checked(None, fill=placeholders or None)
    if fmt == "rephrase":
        return _rephrase(value, system_prompt, out)
    if fmt == "instruct":
        return _instruct(value, system_prompt, out)
    if fmt == "chat":
        return _chat(value, system_prompt, requires_alternating, supports_tools, out)
    if fmt == "sharegpt":
        record, problems = sharegpt_to_chat(value)
        if any(p.severity == ERROR for p in problems):
            out.problems = problems
            return out
        checked = _chat(record, system_prompt, requires_alternating, supports_tools, out)
        checked.problems[:0] = problems
        return checked
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def _rephrase(value, system_prompt, out: Checked) -> Checked:
    """The rephrase task's record (ftr.tasks.rephrase: its fields, target order and stratify class)."""
    out.label = rephrase.stratify_label(None)
    if not _is_object(value, out):
        return out
    record = _typed_fields(value, rephrase.FIELDS, required=rephrase.FIELDS, out=out)
    _unknown_fields(value, rephrase.FIELDS, out)
    out.label = rephrase.stratify_label(record)
    for key, text in record.items():
        if type(text) is str:
            # An empty target string is data (out-of-scope rows have no keyword or banner: seed 000 writes
            # data.get("message_banner", "")); only an empty query leaves nothing to learn from.
            record[key] = _text(text, key, out, may_be_empty=key != "query")
    keyword = record.get("keyword")
    if record.get("is_in_scope") is True and isinstance(keyword, str) and not keyword.strip():
        _add(out, WARNING, "empty_keyword_in_scope", 'field "keyword" is empty but "is_in_scope" is true: an in-scope '
             "query should have something to search for; kept")
    if not out.has_error:
        out.messages = rephrase.to_chat(record, system_prompt)
    return out


INSTRUCT_FIELDS = {"instruction": str, "input": (str, type(None)), "output": str, "system": str}
PROMPT_RESPONSE_FIELDS = {"prompt": str, "response": str, "system": str}


def _instruct(value, system_prompt, out: Checked) -> Checked:
    if not _is_object(value, out):
        return out
    # {"prompt", "response"} rows (e.g. GPT4VN) are instruct rows with other names.
    if "instruction" not in value and ("prompt" in value or "response" in value):
        fields, instruction_key, output_key = PROMPT_RESPONSE_FIELDS, "prompt", "response"
    else:
        fields, instruction_key, output_key = INSTRUCT_FIELDS, "instruction", "output"
    record = _typed_fields(value, fields, required=(instruction_key, output_key), out=out)
    _unknown_fields(value, fields, out)
    for key, text in record.items():
        if type(text) is str:
            record[key] = _text(text, key, out, may_be_empty=key in ("input", "system"))
    if out.has_error:
        return out
    user = record[instruction_key]
    if (extra := record.get("input")) and extra.strip():
        user += "\n\n" + extra
    own_system = record.get("system")
    out.own_system = bool(own_system and own_system.strip())
    out.messages = chat.to_chat([
        {"role": "user", "content": user},
        {"role": "assistant", "content": record[output_key]},
    ], own_system if out.own_system else system_prompt)
    return out


def _chat(value, system_prompt, requires_alternating, supports_tools=True, out: Checked | None = None) -> Checked:
    """The OpenAI cookbook's format checks (tool calls, tool results, weights and content parts included, see
    chatshapes), then text repair, alternation and the system message (a record's own is kept)."""
    out = out if out is not None else Checked(None)
    if not _is_object(value, out):
        return out
    messages = value.get("messages")
    if not messages or not isinstance(messages, list):
        _add(out, ERROR, "missing_messages_list", '"messages" is missing or not a non-empty list')
        return out
    _unknown_fields(value, RECORD_KEYS, out)
    tools, problems = tools_of(value)
    out.problems += problems
    repaired = []
    for position, message in enumerate(messages):
        if (checked := _message(message, f"message {position}", out)) is not None:
            repaired.append(checked)
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    uses_tools = tools is not None or any("tool_calls" in m or m["role"] == "tool" for m in repaired)
    if uses_tools and not supports_tools:
        _add(out, ERROR, "tools_unsupported", "the record has tools, tool calls or tool results, which the recipe's "
             "chat template cannot render (a call must never be dropped from a target): use a family whose template "
             "renders tools (e.g. family: qwen2_5)")
    if "assistant" not in roles:
        _add(out, ERROR, "example_missing_assistant_message", "no assistant message")
    elif all(m.get("training") is False for m in repaired if m["role"] == "assistant"):
        _add(out, ERROR, "nothing_to_train", "every assistant message has weight 0: the row would train nothing")
    if "user" not in roles:
        _add(out, WARNING, "missing_user_message", "no user message")
    # A tool call and its results sit inside the assistant's turn: alternation is of the user/assistant turns.
    turns = [(i, m["role"]) for i, m in enumerate(repaired) if m["role"] != "tool" and "tool_calls" not in m]
    if (broken := _alternation_break(turns)) is not None:
        severity = ERROR if requires_alternating else WARNING
        why = "the recipe's Mistral template rejects it" if requires_alternating else "Mistral templates reject it"
        _add(out, severity, "non_alternating_roles", f"roles do not alternate user/assistant: {broken} ({why})")
    if not out.has_error:
        out.own_system = bool(repaired) and repaired[0]["role"] == "system"
        out.messages = chat.to_chat(repaired, system_prompt)
        out.tools = tools
    return out


def _message(message, where: str, out: Checked) -> dict | None:
    """One checked, repaired message as it is written: role, text content, and where present tool_calls (arguments
    as JSON text), tool_call_id, name and the training flag of its weight; None when it is not an object."""
    if not isinstance(message, dict):
        _add(out, ERROR, "data_type", f"{where} is {_json_type(message)}, not an object")
        return None
    if unknown := [k for k in message if k not in MESSAGE_KEYS]:
        _add(out, ERROR, "message_unrecognized_key",
             f"{where} has unrecognised key(s) {', '.join(map(json.dumps, unknown))}; allowed: {', '.join(MESSAGE_KEYS)}")
    role = message.get("role")
    if role == "function":  # OpenAI's legacy name for a tool result
        role = "tool"
        _add(out, WARNING, "legacy_function_call", f'{where}: legacy role "function" written as "tool"')
    if "role" not in message:
        _add(out, ERROR, "message_missing_key", f'{where} has no "role"')
    elif role not in ROLES:
        _add(out, ERROR, "unrecognized_role", f"{where} has role {_short(role)}; expected one of {', '.join(ROLES)}")
    written = {"role": role}
    calls, problems = tool_calls_of(message, where) if role == "assistant" else (None, [])
    out.problems += problems
    if calls:
        written["tool_calls"] = calls
    content = message.get("content")
    if isinstance(content, list):
        content, problems = text_of_parts(content, f"{where} ({role}) content")
        out.problems += problems
        if content is None:
            return written
    if content is None and calls:
        content = ""  # a call without text: "" keeps one column type for Arrow; the template writes no text
    elif "content" not in message:
        _add(out, ERROR, "message_missing_key", f'{where} has no "content"')
    elif not isinstance(content, str) or not content:
        _add(out, ERROR, "missing_content", f"{where} ({_short(role)}) has no text content")
    else:
        content = _text(content, f"{where} ({role}) content", out)
    written["content"] = content if isinstance(content, str) else ""
    for key in ("tool_call_id", "name"):
        if isinstance(message.get(key), str):
            written[key] = message[key]
    flag, problems = training_flag({**message, "role": role}, where)
    out.problems += problems
    if flag is not None:
        written["training"] = flag
    return written


def _alternation_break(turns: list[tuple[int, str]]) -> str | None:
    """Where user/assistant alternation (after one leading system message) first breaks in (position, role)
    pairs, or None."""
    start = 1 if turns and turns[0][1] == "system" else 0
    expected = "user"
    for position, role in turns[start:]:
        if role != expected:
            return f"message {position} is {_short(role)} where {expected!r} was expected"
        expected = "assistant" if expected == "user" else "user"
    return None


def _is_object(value, out: Checked) -> bool:
    if isinstance(value, dict):
        return True
    _add(out, ERROR, "data_type", f"record is {_json_type(value)}, expected an object")
    return False


def _typed_fields(value: dict, fields: dict, required, out: Checked) -> dict:
    """The fields present with the right JSON type; a missing required field or a wrong type is an error."""
    record = {}
    for key, expected in fields.items():
        if key not in value:
            if key in required:
                _add(out, ERROR, "missing_field", f'missing field "{key}"')
            continue
        got = value[key]
        # bool is an int in Python but not in JSON: exact type checks, so "true" and 1 are not booleans.
        ok = type(got) in expected if isinstance(expected, tuple) else type(got) is expected
        if not ok:
            want = " or ".join(_JSON_TYPE[t] for t in (expected if isinstance(expected, tuple) else (expected,)))
            _add(out, ERROR, "wrong_type", f'field "{key}" must be {want}, got {_json_type(got)} {_short(got)}')
            continue
        record[key] = got
    return record


def _unknown_fields(value: dict, known, out: Checked) -> None:
    for key in value:
        if key not in known:
            _add(out, WARNING, "unknown_field", f"field {_short(key)} is not part of the format; ignored")


def _text(text: str, where: str, out: Checked, may_be_empty: bool = False) -> str:
    """Repair one text field, adding a warning per repair and an error for damage or emptiness. `where` is a
    field name or a phrase like "message 2 (user) content"."""
    fixed, fixes, damage = repair_text(text)
    if "{{" in fixed:
        fixed = _fill_placeholders(fixed, out)
    controls = None if damage else control_characters(fixed)
    if fixes or damage or controls or not fixed or fixed.isspace():
        where = f'field "{where}"' if where.isidentifier() else where
        for fix in fixes:
            _add(out, WARNING, *_FIX_MESSAGES[fix](where, fixed))
        if damage:
            _add(out, ERROR, "damaged_text", f"{where}: {damage}")
        elif not may_be_empty and (not fixed or fixed.isspace()):
            _add(out, ERROR, "empty_text", f"{where} is {'empty' if not fixed else 'whitespace only'}")
        if controls:
            _add(out, WARNING, "control_character", f"{where} has {controls}; kept unchanged")
    return fixed


def _fill_placeholders(text: str, out: Checked) -> str:
    """`text` with each {{name}} that data.placeholders names replaced; fills and leftovers are counted on `out`
    (the pipeline reports them per file)."""
    def fill(match):
        name = match.group(1)
        if out.fill is not None and name in out.fill:
            out.filled = out.filled if out.filled is not None else Counter()
            out.filled[name] += 1
            return out.fill[name]
        out.unfilled = out.unfilled if out.unfilled is not None else Counter()
        out.unfilled[name] += 1
        return match.group(0)

    return PLACEHOLDER.sub(fill, text)


_FIX_MESSAGES = {
    "crlf": lambda where, text: ("crlf", f"{where} has CRLF line breaks; normalised to LF"),
    "mojibake": lambda where, text: ("mojibake", f"{where} was mojibake; repaired with ftfy to {snippet(text)}"),
    "nfd": lambda where, text: ("not_nfc", f"{where} is not NFC (decomposed accents); composed to NFC: {snippet(text)}"),
}


def _add(out: Checked, severity: str, code: str, message: str) -> None:
    out.problems.append(Problem(severity, code, message))


def _json_type(value) -> str:
    return _JSON_TYPE.get(type(value), type(value).__name__)


def _short(value, width: int = 40) -> str:
    """A value as JSON, cut to `width` characters and safe to print."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except RecursionError:  # parsed just within the recursion limit, dumped from deeper in the stack
        return "(a value nested too deeply to show)"
    return ascii_safe(text[:width] + "..." if len(text) > width else text)
