"""Pathological input: rows far over sequence_len, nesting and numbers Python's parser cannot hold, control
characters. Each becomes a `PATH:LINE: severity: record N: ...` problem, in both layouts, never a traceback."""

import json
import time

import pytest

from cli_run import ftr_cli
from converters_data import SYSTEM, rephrase, rephrase_rows
from ftr.converters.convert import convert_file
from ftr.converters.errors import DataError
from ftr.converters.limits import CHARS_PER_TOKEN, char_bound, limit_row
from ftr.converters.lint import lint_file


def chat_line(content_json: str = '"q"', extra: str = "") -> str:
    """One chat record as raw JSON text, so that it can hold what json.dumps never writes."""
    return '{"messages": [{"role": "user", "content": %s%s}, {"role": "assistant", "content": "a"}]}' % (
        content_json, extra)


GOOD = [json.dumps({"messages": [{"role": "user", "content": f"câu {i}"}, {"role": "assistant", "content": "đáp"}]},
                   ensure_ascii=False) for i in range(12)]


def layout_file(tmp_path, bad: str, layout: str, at: int = 6):
    """GOOD with `bad` (raw JSON text) as record `at`, as JSONL or as an array with one record a line."""
    lines = GOOD[:at] + [bad] + GOOD[at:]
    if layout == "jsonl":
        path = tmp_path / "data.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path, at + 1
    path = tmp_path / "data.json"
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n", encoding="utf-8")
    return path, at + 2


# --- values Python's JSON parser cannot hold, or should not accept ------------------------------------------------

BAD_VALUES = {
    "deep array record": ("[" * 100_000 + "]" * 100_000, "too_deep"),
    "deep object record": ('{"a":' * 100_000 + "1" + "}" * 100_000, "too_deep"),
    "deep field value": (chat_line(extra=', "name": ' + "[" * 100_000 + "]" * 100_000), "too_deep"),
    "5000-digit record": ("7" * 5000, "invalid_number"),
    "5000-digit field": (chat_line(extra=', "weight": ' + "9" * 5000), "invalid_number"),
    "1e999": (chat_line(extra=', "weight": 1e999'), "invalid_number"),
    "-1e999": ('{"x": -1e999}', "invalid_number"),
    "NaN": (chat_line(extra=', "weight": NaN'), "invalid_number"),
    "Infinity": ('{"messages": [], "w": Infinity}', "invalid_number"),
}


@pytest.mark.parametrize("name", BAD_VALUES)
@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_unparseable_values_are_problems_at_their_line(tmp_path, name, layout):
    bad, code = BAD_VALUES[name]
    path, line = layout_file(tmp_path, bad, layout)
    report = lint_file(path, fmt="chat", system_prompt=SYSTEM)
    [error] = report.errors
    assert (error.code, error.line, error.index) == (code, line, 6)
    assert error.format(path).startswith(f"{path}:{line}: error: record 6: ")
    if layout == "array" and code == "too_deep":  # where the record ends is unknown: the rest is not read
        assert report.summary["fatal"] == "too_deep" and report.summary["records"] == 6
        return
    manifest = convert_file(path, tmp_path / "out", fmt="chat", system_prompt=SYSTEM, drop_invalid=True)
    assert manifest["kept"] == 12 and [(r["line"], r["index"]) for r in manifest["rejected"]] == [(line, 6)]
    assert f"[{code}]" in manifest["rejected"][0]["reason"]


def test_numbers_and_nesting_that_python_holds_are_fine(tmp_path):
    near_limit = chat_line(extra=', "name": ' + "[" * 900 + "]" * 900)  # parses; must not crash further on
    path, _ = layout_file(tmp_path, near_limit, "jsonl")
    lint_file(path, fmt="chat", system_prompt=SYSTEM)
    convert_file(path, tmp_path / "out", fmt="chat", system_prompt=SYSTEM, drop_invalid=True)
    digits = chat_line('"' + "1" * 5000 + '"')  # a 5,000-digit number inside a text is just text
    path, _ = layout_file(tmp_path, digits, "array")
    assert lint_file(path, fmt="chat", system_prompt=SYSTEM).errors == []


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_the_cli_reports_every_bad_value_by_line_without_a_traceback(tmp_path, layout):
    if layout == "jsonl":
        lines = GOOD[:3] + [bad for bad, _ in BAD_VALUES.values()] + GOOD[3:]
        path = tmp_path / "all.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected = {4 + i: code for i, (_, code) in enumerate(BAD_VALUES.values())}
    else:
        numbers = [(bad, code) for bad, code in BAD_VALUES.values() if code != "too_deep"]
        path = tmp_path / "all.json"
        path.write_text("[\n" + ",\n".join(GOOD[:3] + [bad for bad, _ in numbers] + GOOD[3:]) + "\n]\n")
        expected = {5 + i: code for i, (_, code) in enumerate(numbers)}
    lint = ftr_cli("lint", path.name, "--format", "chat", cwd=tmp_path)
    assert lint.returncode == 1
    found = {int(line.split(":")[1]): line.rsplit("[", 1)[1].rstrip("]")
             for line in lint.stdout.splitlines() if ": error: record " in line}
    assert found == expected
    convert = ftr_cli("convert", path.name, "--format", "chat", "-o", "out", "--drop-invalid", cwd=tmp_path)
    assert convert.returncode == 0, convert.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {r["line"] for r in manifest["rejected"]} == set(expected) and manifest["kept"] == 12


def test_a_deep_record_in_an_array_stops_the_cli_cleanly(tmp_path):
    path, line = layout_file(tmp_path, BAD_VALUES["deep array record"][0], "array")
    for verb in (["lint", path.name], ["convert", path.name, "-o", "out", "--drop-invalid"]):
        proc = ftr_cli(*verb, "--format", "chat", cwd=tmp_path)
        assert proc.returncode == 1
        assert f"data.json:{line}: error: record 6: arrays or objects nested too deeply" in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_ten_megabytes_of_spaces(tmp_path, layout):
    spaces = " " * 10_000_000
    path, line = layout_file(tmp_path, spaces + GOOD[0].replace("câu 0", "câu x"), layout)
    assert lint_file(path, fmt="chat", system_prompt=SYSTEM).errors == []
    path, line = layout_file(tmp_path, chat_line('"' + spaces + '"'), layout)
    [error] = lint_file(path, fmt="chat", system_prompt=SYSTEM).errors
    assert (error.code, error.line) == ("empty_text", line)
    if layout == "jsonl":
        path.write_text("\n".join(GOOD[:2] + [spaces] + GOOD[2:]) + "\n")
        warnings = lint_file(path, fmt="chat", system_prompt=SYSTEM).warnings
        assert ("blank_line", 3) in [(w.code, w.line) for w in warnings]


# --- control characters -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("escaped, char", [("\\u0000", "U+0000"), ("\\u001b[31m", "U+001B"), ("\\u0007", "U+0007"),
                                           ("\\u007f", "U+007F"), ("\\u009b", "U+009B"), ("\\u0085", "U+0085")])
def test_control_characters_are_warned_about_and_kept(tmp_path, escaped, char):
    path, line = layout_file(tmp_path, chat_line(f'"red {escaped}alert"'), "jsonl")
    report = lint_file(path, fmt="chat", system_prompt=SYSTEM)
    [warning] = [p for p in report.problems if p.code == "control_character"]
    assert (warning.severity, warning.line, warning.index) == ("warning", line, 6)
    assert char in warning.message and "message 0 (user) content" in warning.message
    convert_file(path, tmp_path / "out", fmt="chat", system_prompt=SYSTEM)
    texts = [json.loads(row)["messages"][1]["content"] for name in ("train", "val", "test")
             for row in (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert json.loads(f'"red {escaped}alert"') in texts  # kept unchanged


def test_tabs_and_line_feeds_are_not_control_problems(write):
    rows = [rephrase(f"q{i}", reasoning="một\thai\nba") for i in range(3)]
    assert [p.code for p in lint_file(write("r.jsonl", rows), system_prompt=SYSTEM).problems] == []


# --- rows far over sequence_len -----------------------------------------------------------------------------------

def long_chat(n_chars: int, system: str | None = None):
    messages = [{"role": "user", "content": "x" * n_chars}, {"role": "assistant", "content": "ngắn"}]
    return {"messages": ([{"role": "system", "content": system}] if system else []) + messages}


def chat_rows(n=12):
    return [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]} for i in range(n)]


def test_the_bound_is_sequence_len_times_the_ceiling():
    assert char_bound(512) == 512 * CHARS_PER_TOKEN and char_bound(None) == 32768 * CHARS_PER_TOKEN


def test_too_long_rows_are_dropped_by_default_with_a_warning_and_a_reject(write, tmp_path):
    rows = chat_rows()
    rows[4] = long_chat(2000)
    seen = []
    manifest = convert_file(write("c.jsonl", rows), tmp_path / "out", system_prompt=SYSTEM, sequence_len=100,
                            on_warning=seen.append)
    [reject] = manifest["rejected"]
    assert (reject["line"], reject["index"]) == (5, 4) and reject["reason"].endswith("[too_long]")
    assert "dropped" in reject["reason"] and manifest["kept"] == 11
    assert manifest["warnings_by_class"]["too_long"] == 1
    assert [(p.code, p.line, p.index) for p in seen if p.code == "too_long"] == [("too_long", 5, 4)]
    assert manifest["too_long"] == {"policy": "drop", "max_characters": 1000}


def test_too_long_error_refuses_the_file_unless_drop_invalid(write, tmp_path):
    rows = chat_rows()
    rows[4] = long_chat(2000)
    path = write("c.jsonl", rows)
    with pytest.raises(DataError) as caught:
        convert_file(path, tmp_path / "out", system_prompt=SYSTEM, sequence_len=100, too_long="error")
    assert f"{path}:5: error: record 4: 2,0" in str(caught.value) and "[too_long]" in str(caught.value)
    manifest = convert_file(path, tmp_path / "out", system_prompt=SYSTEM, sequence_len=100, too_long="error",
                            drop_invalid=True)
    assert [r["index"] for r in manifest["rejected"]] == [4]


def test_truncate_cuts_the_longest_text_and_keeps_the_short_ones_whole(write, tmp_path):
    rows = chat_rows()
    rows[4] = long_chat(5000, system="Riêng")
    seen = []
    manifest = convert_file(write("c.jsonl", rows), tmp_path / "out", system_prompt=SYSTEM, sequence_len=100,
                            too_long="truncate", on_warning=seen.append)
    assert manifest["kept"] == 12 and manifest["rejected"] == []
    [warning] = [p for p in seen if p.code == "too_long"]
    assert "truncated the user text" in warning.message and "from 5,000 to" in warning.message
    row = next(json.loads(line) for name in ("train", "val", "test")
               for line in (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines() if json.loads(line)["id"] == 4)
    contents = [m["content"] for m in row["messages"]]
    assert contents[0] == "Riêng" and contents[2] == "ngắn" and set(contents[1]) == {"x"}
    assert sum(map(len, contents)) == 1000


def test_limit_row_water_fills_and_gives_up_when_the_target_alone_is_too_long():
    messages = [{"role": "system", "content": "s" * 10}, {"role": "user", "content": "u" * 600},
                {"role": "assistant", "content": "a" * 500}]
    cut, warning = limit_row(messages, 500, "truncate")
    assert [len(m["content"]) for m in cut] == [10, 245, 245] and warning.severity == "warning"
    assert messages[1]["content"] == "u" * 600  # the input is not changed in place
    kept, problem = limit_row(messages, 500, "truncate", keep_target=True)
    assert kept is None and "cannot be truncated" in problem.message
    assert limit_row(messages, 2000, "truncate") == (messages, None)


def tool_call_turn(arguments: dict, content=None) -> dict:
    """An assistant turn calling a tool: as a record has it (content None), or as converted (content "")."""
    return {"role": "assistant", "content": content, "tool_calls": [
        {"type": "function", "function": {"name": "search", "arguments": json.dumps(arguments)}}]}


def test_tool_calls_count_towards_the_bound_and_are_never_cut():
    call = tool_call_turn({"q": "x" * 600}, content="")
    call_chars = len("search") + len(call["tool_calls"][0]["function"]["arguments"])
    messages = [{"role": "user", "content": "u" * 100}, call, {"role": "tool", "content": "r" * 100},
                {"role": "assistant", "content": "a" * 100}]
    assert limit_row(messages, 300 + call_chars, "drop") == (messages, None)
    dropped, problem = limit_row(messages, 500, "drop")  # the contents alone (300 characters) would fit
    assert dropped is None and f"{300 + call_chars:,} characters" in problem.message
    cut, _ = limit_row(messages, 800, "truncate")  # the three contents share what the call leaves
    share = (800 - call_chars) // 3
    assert cut[1] == call and [len(m["content"]) for m in cut] == [share, 0, share, share]
    kept, problem = limit_row(messages, call_chars, "truncate")  # only the call would fit: nothing to cut to
    assert kept is None and "without cutting its tool calls" in problem.message


def test_lint_finds_a_row_too_long_by_its_tool_call_arguments(write):
    rows = [{"messages": [{"role": "user", "content": "tìm"}, tool_call_turn({"q": "x" * char_bound(50)}),
                          {"role": "tool", "content": "[]"}, {"role": "assistant", "content": "không có"}]}]
    [problem] = [p for p in lint_file(write("t.jsonl", rows), sequence_len=50).problems if p.code == "too_long"]
    assert (problem.severity, problem.line) == ("warning", 1)


def test_a_rephrase_rows_query_is_cut_but_its_json_target_never(write, tmp_path):
    rows = rephrase_rows(10)
    rows[2]["query"] = "sữa " * 1000
    rows[3]["reasoning"] = "vì " * 1000  # inside the JSON target
    manifest = convert_file(write("r.jsonl", rows), tmp_path / "out", system_prompt=SYSTEM, sequence_len=100,
                            too_long="truncate")
    assert [r["index"] for r in manifest["rejected"]] == [3] and "cannot be truncated" in manifest["rejected"][0]["reason"]


class ExplodingTokenizer:
    """Fails the test when a row over the character bound reaches the tokenizer."""

    name_or_path = "exploding"

    def apply_chat_template(self, messages, tokenize=False):
        text = " ".join(m["content"] for m in messages)
        assert len(text) <= char_bound(50) + 10, "a row over the bound was tokenised"
        return text

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [text.split() for text in texts]}


class TinyRecipe:
    data_format = "chat"
    system_prompt = SYSTEM
    requires_alternating = False
    sequence_len = 50

    def __init__(self, too_long="drop"):
        self.data = {"too_long": too_long}

    def load_tokenizer(self):
        return ExplodingTokenizer()


@pytest.mark.parametrize("too_long, severity", [("drop", "warning"), ("truncate", "warning"), ("error", "error")])
def test_lint_finds_too_long_rows_before_the_tokenizer(write, too_long, severity):
    rows = chat_rows()
    rows[7] = long_chat(100_000)
    report = lint_file(write("c.jsonl", rows), recipe=TinyRecipe(too_long))
    [problem] = [p for p in report.problems if p.code == "too_long" and "characters" in p.message]
    assert (problem.severity, problem.line, problem.index) == (severity, 8, 7)


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_a_30_mb_line_is_flagged_quickly_by_the_cli(tmp_path, layout):
    """The 200 MB row of the issue, scaled down: found by characters, never tokenised, in seconds."""
    path, line = layout_file(tmp_path, json.dumps(long_chat(30_000_000)), layout)
    started = time.monotonic()
    lint = ftr_cli("lint", path.name, "--format", "chat", cwd=tmp_path)
    convert = ftr_cli("convert", path.name, "--format", "chat", "-o", "out", cwd=tmp_path)
    truncate = ftr_cli("convert", path.name, "--format", "chat", "-o", "cut", "--too-long", "truncate", cwd=tmp_path)
    error = ftr_cli("convert", path.name, "--format", "chat", "-o", "err", "--too-long", "error", cwd=tmp_path)
    elapsed = time.monotonic() - started
    where = f"{path.name}:{line}: "
    assert lint.returncode == 0 and f"{where}warning: record 6: 30,000,0" in lint.stdout
    assert convert.returncode == 0 and f"{where}warning: record 6:" in convert.stderr and "1 rejected" in convert.stdout
    assert truncate.returncode == 0 and "truncated the user text" in truncate.stderr
    assert (tmp_path / "cut" / "train.jsonl").stat().st_size + (tmp_path / "cut" / "val.jsonl").stat().st_size + \
        (tmp_path / "cut" / "test.jsonl").stat().st_size < char_bound(None) + 10_000
    assert error.returncode == 1 and f"{where}error: record 6:" in error.stderr and not (tmp_path / "err").exists()
    assert elapsed < 60, f"four CLI runs on a 30 MB line took {elapsed:.0f} s"
