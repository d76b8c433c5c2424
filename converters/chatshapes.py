"""The chat shapes users bring, turned into the one chat record the chat format checks and writes.

- ShareGPT (`{"conversations": [{"from", "value"}], "system"?, "tools"?}`, LLaMA-Factory's and Axolotl's
  convention): `sharegpt_to_chat`.
- Other field and role names, declared in the recipe (`data.fields`, `data.roles`), not in Python: `rename`.
- Content as a list of parts (`[{"type": "text", "text": ...}]`): `text_of_parts`.
- OpenAI tool calling: `tools`, assistant `tool_calls` (content may be null), `role: "tool"` with `tool_call_id`,
  and the legacy `function_call` / `role: "function"` / `functions`: `tool_calls_of`, `tools_of`.
- Per-message `weight` (0 or 1 on assistant turns; LLaMA-Factory's `loss_weight` through `data.fields`):
  `training_flag`, written as the message's `training` key that Axolotl's chat_template reads
  (`message_field_training`), so a weight-0 turn carries no labels.

Pure functions: a value in, (value, problems) out. Tool-call arguments and tool lists are written as JSON text:
Arrow would otherwise merge every row's argument objects into one struct type (null-filling keys a call never
had), and Axolotl parses the text back before rendering.
"""

import json

from .errors import ERROR, WARNING, Problem

SHAREGPT_KEYS = ("conversations", "system", "tools")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "tool", "tool": "tool",
                  "function": "tool"}
# data.fields: ftr's name -> the user's key. Record-level and per-message names.
RECORD_FIELDS = ("messages", "system", "tools", "instruction", "input", "output", "prompt", "response")
MESSAGE_FIELDS = ("role", "content", "weight")
FIELDS = RECORD_FIELDS + MESSAGE_FIELDS
ROLE_NAMES = ("system", "user", "assistant", "tool")

to_json = json.JSONEncoder(ensure_ascii=False).encode


def rename(value, fields: dict | None, roles: dict | None):
    """The record with the user's keys (`fields`: ftr name -> their key) and role names (`roles`: ftr role ->
    list of their names) turned into ftr's. Keys not named stay as they are; a record that is not an object is
    returned unchanged for the format check to name."""
    if not isinstance(value, dict) or not (fields or roles):
        return value
    fields = fields or {}
    theirs = {their: ours for ours, their in fields.items() if ours in RECORD_FIELDS}
    out = {theirs.get(key, key): item for key, item in value.items()}
    messages = out.get("messages")
    if isinstance(messages, list):
        out["messages"] = [_renamed_message(m, fields, roles) for m in messages]
    return out


def _renamed_message(message, fields: dict, roles: dict | None):
    if not isinstance(message, dict):
        return message
    theirs = {their: ours for ours, their in fields.items() if ours in MESSAGE_FIELDS}
    out = {theirs.get(key, key): item for key, item in message.items()}
    if roles and isinstance(out.get("role"), str):
        names = {their: ours for ours, names in roles.items() for their in names}
        out["role"] = names.get(out["role"], out["role"])
    return out


def looks_like_sharegpt(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("conversations"), list)


def sharegpt_to_chat(value) -> tuple[object, list[Problem]]:
    """A ShareGPT record as an OpenAI chat record: `from` -> role, `value` -> content, a `function_call` turn ->
    an assistant tool call, an `observation` turn -> a tool result, top-level `system` -> a leading system message."""
    if not isinstance(value, dict) or not isinstance(value.get("conversations"), list):
        return value, [Problem(ERROR, "missing_conversations", '"conversations" is missing or not a list')]
    problems = []
    messages = []
    if isinstance(value.get("system"), str) and value["system"].strip():
        messages.append({"role": "system", "content": value["system"]})
    for position, turn in enumerate(value["conversations"]):
        where = f"conversations[{position}]"
        if not isinstance(turn, dict):
            problems.append(Problem(ERROR, "data_type", f"{where} is not an object"))
            continue
        unknown = [k for k in turn if k not in ("from", "value", "weight", "loss_weight")]
        if unknown:
            problems.append(Problem(WARNING, "unknown_field", f"{where} has key(s) {', '.join(map(json.dumps, unknown))}"
                                    ' that ShareGPT does not define ("from", "value"); ignored'))
        speaker, text = turn.get("from"), turn.get("value")
        role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            problems.append(Problem(ERROR, "unrecognized_role", f"{where} is from {json.dumps(speaker)}; expected one "
                                    f"of {', '.join(SHAREGPT_ROLES)}"))
            continue
        message = {"role": role, "content": text}
        for key in ("weight", "loss_weight"):
            if key in turn:
                message["weight"] = turn[key]
        if speaker == "function_call":
            call, problem = _sharegpt_call(text, where)
            if problem is not None:
                problems.append(problem)
                continue
            message = {**message, "content": None, "tool_calls": [call]}
        messages.append(message)
    out = {"messages": messages}
    if "tools" in value:
        out["tools"] = value["tools"]
    unknown = [k for k in value if k not in SHAREGPT_KEYS]
    if unknown:
        problems.append(Problem(WARNING, "unknown_field", f"field(s) {', '.join(map(json.dumps, unknown))} are not "
                                "part of the ShareGPT format; ignored"))
    return out, problems


def _sharegpt_call(text, where) -> tuple[dict | None, Problem | None]:
    """A ShareGPT `function_call` value, `{"name": ..., "arguments": {...}}` as JSON text, as an OpenAI tool call."""
    try:
        call = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError as exc:
        return None, Problem(ERROR, "invalid_tool_call", f"{where} (function_call) is not JSON: {exc.msg}")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None, Problem(ERROR, "invalid_tool_call", f'{where} (function_call) must be {{"name": ..., '
                             '"arguments": ...}} as JSON text')
    return {"type": "function", "function": {"name": call["name"], "arguments": call.get("arguments", {})}}, None


def text_of_parts(content, where: str) -> tuple[str | None, list[Problem]]:
    """Content given as OpenAI parts: the text parts joined as they are (no separator, as Axolotl and OpenAI read
    them), with a warning saying so; any other part type is an error naming it."""
    problems, texts = [], []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            shown = json.dumps(kind) if kind is not None else f"a {type(part).__name__}, not a part object"
            problems.append(Problem(ERROR, "unsupported_content_part", f"{where} part {index} is of type {shown}: "
                                    "only text parts can be trained by a text model"))
    if problems:
        return None, problems
    if len(texts) > 1:
        problems.append(Problem(WARNING, "content_parts_joined", f"{where}: {len(texts)} text parts joined into one "
                                "text, with no separator"))
    return "".join(texts), problems


def tool_calls_of(message: dict, where: str) -> tuple[list | None, list[Problem]]:
    """The message's tool calls in OpenAI's shape with arguments as JSON text, from `tool_calls` or the legacy
    `function_call` (converted, with a warning); None when it has none; an error for each malformed call."""
    problems = []
    calls = message.get("tool_calls")
    if calls is None and message.get("function_call") is not None:
        calls = [{"type": "function", "function": message["function_call"]}]
        problems.append(Problem(WARNING, "legacy_function_call", f"{where}: legacy function_call written as tool_calls"))
    if calls is None:
        return None, problems
    if not isinstance(calls, list) or not calls:
        return None, [Problem(ERROR, "invalid_tool_call", f"{where}: tool_calls must be a non-empty list")]
    out = []
    for index, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        label = f"{where} tool call {index}"
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            problems.append(Problem(ERROR, "invalid_tool_call", f'{label} has no "function" with a "name"'))
            continue
        arguments = function.get("arguments", "{}")
        if isinstance(arguments, str):
            try:
                parsed = json.loads(arguments)
            except json.JSONDecodeError as exc:
                problems.append(Problem(ERROR, "invalid_tool_call", f"{label} ({function['name']}): arguments are "
                                        f"not JSON: {exc.msg}"))
                continue
        else:
            parsed = arguments
        if not isinstance(parsed, dict):
            problems.append(Problem(ERROR, "invalid_tool_call", f"{label} ({function['name']}): arguments must be "
                                    "a JSON object"))
            continue
        written = {"type": "function", "function": {"name": function["name"], "arguments": to_json(parsed)}}
        if isinstance(call.get("id"), str):
            written["id"] = call["id"]
        out.append(written)
    return out, problems


def tools_of(value: dict) -> tuple[str | None, list[Problem]]:
    """The record's tool list (`tools`, or the legacy `functions`) as JSON text, or None; an error when malformed."""
    tools = value.get("tools")
    if tools is None and value.get("functions") is not None:
        tools = [{"type": "function", "function": f} for f in value["functions"]] \
            if isinstance(value["functions"], list) else value["functions"]
    if tools is None:
        return None, []
    if isinstance(tools, str):  # LLaMA-Factory writes its tools as JSON text
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as exc:
            return None, [Problem(ERROR, "invalid_tools", f'"tools" is text that is not JSON: {exc.msg}')]
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        return None, [Problem(ERROR, "invalid_tools", '"tools" must be a list of tool objects')]
    # OpenAI wraps each tool as {"type": "function", "function": {...}}; LLaMA-Factory lists the functions bare.
    wrapped = [t if "function" in t else {"type": "function", "function": t} for t in tools]
    if any(not isinstance(t["function"], dict) or not t["function"].get("name") for t in wrapped):
        return None, [Problem(ERROR, "invalid_tools", 'every tool needs a "function" with a "name"')]
    return to_json(wrapped), []


def training_flag(message: dict, where: str) -> tuple[bool | None, list[Problem]]:
    """A message's `weight` (0 or 1) as Axolotl's per-message training flag; None when it has none."""
    if "weight" not in message:
        return None, []
    weight = message["weight"]
    if type(weight) not in (int, float) or weight not in (0, 1):
        return None, [Problem(ERROR, "invalid_weight", f"{where}: weight must be 0 or 1, got {json.dumps(weight)}")]
    if message.get("role") != "assistant":
        return None, [Problem(ERROR, "invalid_weight", f"{where}: only assistant messages take a weight (the "
                              f"{message.get('role')} turn is never trained)")]
    return bool(weight), []
