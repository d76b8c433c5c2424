"""Every problem code `ftr lint` and `ftr convert` can report, with its severity and what it means: the list
`ftr lint --help` prints. tests/converters/test_codes.py checks that every code the converters emit is here.

An error rejects the record (or, for a file-level error, the file); a warning keeps it and says what was changed
or what looks wrong. "error|warning" codes depend on an option (too_long, conflicts, the family's alternation).
"""

CODES = {
    # the file
    "unreadable": ("error", "the file cannot be opened or read"),
    "not_utf8": ("error", "the file is in another encoding; the message names the likely one and --encoding"),
    "unknown_encoding": ("error", "--encoding / data.encoding names no Python codec"),
    "not_records": ("error", "one JSON object, or pretty-printed objects one after another: not JSONL or an array"),
    "invalid_json": ("error", "a line (JSONL) or the array (JSON) is not valid JSON"),
    "too_deep": ("error", "arrays or objects nested too deeply to parse"),
    "invalid_number": ("error", "a number JSON can write but no parser should hold (NaN, 1e999, 4300+ digits)"),
    "unknown_format": ("error", "no record has the keys of a known format; pass --format"),
    "no_records": ("error", "the file holds no records"),
    "no_valid_rows": ("error", "no record converts"),
    "bom": ("warning", "a byte-order mark, removed (UTF-16 is read and written as UTF-8)"),
    "crlf": ("warning", "Windows line breaks, written as LF"),
    "blank_line": ("warning", "a blank line in JSONL, skipped"),
    "trailing_comma": ("warning", "a comma after the last record of an array, ignored"),
    "no_system_prompt": ("warning", "no system prompt (null or none given): rows without one keep none, and "
                         "Qwen2.5's template then writes its own default"),
    "system_prompt_added": ("warning", "the recipe's system prompt was added to the rows that had none (count)"),
    "format_mismatch": ("error", "the file is clearly another known format than the one expected; names the fix"),
    "template_placeholder": ("warning", "{{name}} placeholders left in targets (count); data.placeholders fills them"),
    "placeholders_filled": ("warning", "data.placeholders filled placeholders (count per name)"),
    # the output folder (ftr convert -o)
    "output_unwritable": ("error", "the output folder cannot be created"),
    "output_not_a_folder": ("error", "the output path exists and is not a folder"),
    "output_holds_input": ("error", "the output folder holds the input file"),
    "output_not_ours": ("error", "something in the output folder is not a file ftr wrote"),
    "output_not_empty": ("error", "the output folder holds other files (--force writes beside them)"),
    # a record's shape
    "data_type": ("error", "a record or message is not an object"),
    "missing_field": ("error", "a required field is missing"),
    "wrong_type": ("error", "a field has the wrong JSON type (\"true\" is not a boolean)"),
    "unknown_field": ("warning", "a field the format does not define; ignored"),
    "missing_messages_list": ("error", "\"messages\" is missing or not a non-empty list"),
    "missing_conversations": ("error", "ShareGPT: \"conversations\" is missing or not a list"),
    "message_missing_key": ("error", "a message has no role or no content"),
    "message_unrecognized_key": ("error", "a message key the OpenAI chat format does not define"),
    "unrecognized_role": ("error", "a role (or ShareGPT speaker) the format does not define"),
    "missing_content": ("error", "a message without text (and without tool calls)"),
    "unsupported_content_part": ("error", "a content part that is not text (an image, audio, ...)"),
    "content_parts_joined": ("warning", "text parts of one message joined into one text"),
    "example_missing_assistant_message": ("error", "no assistant message: nothing to train"),
    "nothing_to_train": ("error", "every assistant message has weight 0"),
    "missing_user_message": ("warning", "no user message"),
    "non_alternating_roles": ("error|warning", "user/assistant turns do not alternate (an error for Mistral)"),
    "invalid_weight": ("error", "a weight that is not 0 or 1, or on a message that is not the assistant's"),
    "invalid_tool_call": ("error", "a tool call without a function name, or whose arguments are not a JSON object"),
    "invalid_tools": ("error", "\"tools\" is not a list of tool objects with a function name"),
    "tools_unsupported": ("error", "tools or tool calls, which the recipe's chat template cannot render"),
    "legacy_function_call": ("warning", "OpenAI's legacy function_call / role \"function\", written as tool calls"),
    # a record's text
    "damaged_text": ("error", "text with a lost character (U+FFFD), an invalid UTF-8 byte or a lone surrogate"),
    "empty_text": ("error", "a text field that must hold text is empty or whitespace only"),
    "empty_keyword_in_scope": ("warning", "an in-scope rephrase row with an empty keyword; kept"),
    "mojibake": ("warning", "UTF-8 read as a legacy encoding, repaired with ftfy"),
    "not_nfc": ("warning", "decomposed accents, composed to NFC"),
    "control_character": ("warning", "a control character, kept unchanged"),
    "too_long": ("error|warning", "a row far over sequence_len: dropped, truncated or an error (too_long)"),
    "template_error": ("error", "the recipe's chat template rejects the row (ftr lint --recipe)"),
    # duplicates
    "exact_duplicate": ("warning", "same prompt and answer as an earlier record; only the first is kept"),
    "conflicting_duplicate": ("error|warning", "same prompt, another answer: both kept, or an error (conflicts)"),
}


def help_text() -> str:
    """The code list for `ftr lint --help`, one line per code (click keeps lines after a \\b marker as they are)."""
    width = max(map(len, CODES))
    lines = [f"{code.ljust(width)}  {severity:<13} {meaning}" for code, (severity, meaning) in CODES.items()]
    return "Problem codes (severity, meaning):\n\n\b\n" + "\n".join(lines)


# Warnings that mean a kept row's text differs from the input's (a repair, a join, a conversion, a cut): the
# manifest counts the rows they touched as "repaired". File-level fills (system prompt, placeholders) are counted
# by their own warnings.
REPAIRS = frozenset({"mojibake", "not_nfc", "crlf", "content_parts_joined", "legacy_function_call", "too_long"})
