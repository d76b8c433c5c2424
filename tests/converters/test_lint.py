"""lint_file and `ftr lint`: problem lines, duplicates, the summary, exit codes, and no traceback on any input."""

import json
import os
import re

import pytest
from click.testing import CliRunner

from converters_data import SYSTEM, rephrase, rephrase_rows
from ftr.converters.cli import lint as lint_command
from ftr.converters.lint import lint_file, suggested_epochs

LINE = re.compile(r"^(?P<path>.+):(?P<line>\d+): (?P<severity>error|warning): record (?P<index>\d+): (?P<message>.+) \[(?P<code>\w+)\]$")


def test_problem_line_names_file_line_and_record(write):
    rows = rephrase_rows(10)
    del rows[8]["keyword"]
    path = write("raw.json", rows, layout="array")
    report = lint_file(path, system_prompt=SYSTEM)
    [error] = report.errors
    text_lines = path.read_text(encoding="utf-8").splitlines()
    assert error.format(path) == f'{path}:{error.line}: error: record 8: missing field "keyword" [missing_field]'
    assert text_lines[error.line - 1].strip() == "{" and rows[8]["query"] in text_lines[error.line]


def test_every_line_printed_by_the_cli_has_the_documented_shape(write):
    rows = [rephrase("a"), rephrase("b", is_in_scope="true"), rephrase(query="  ")]
    path = write("raw.jsonl", rows)
    result = CliRunner().invoke(lint_command, [str(path), "--system-prompt", SYSTEM])
    problem_lines = [line for line in result.output.splitlines() if not line.startswith(("summary:", "  "))]
    assert result.exit_code == 1
    parsed = [LINE.match(line) for line in problem_lines]
    assert all(parsed), problem_lines
    assert [(m["line"], m["index"], m["code"]) for m in parsed] == [("2", "1", "wrong_type"), ("3", "2", "empty_text")]


def test_exact_duplicate_is_dropped_a_conflicting_one_kept_with_a_warning(write):
    rows = [rephrase("q1"), rephrase("q2"), rephrase("q1"), rephrase("q2", reasoning="Khác hẳn.")]
    report = lint_file(write("d.jsonl", rows), system_prompt=SYSTEM)
    found = {(p.index, p.code, p.severity) for p in report.problems}
    assert found == {(2, "exact_duplicate", "warning"), (3, "conflicting_duplicate", "warning")}
    assert "record 0 (line 1)" in next(p for p in report.problems if p.index == 2).message
    assert report.summary["valid"] == 3


def test_conflicts_error_refuses_a_conflicting_duplicate(write):
    rows = [rephrase("q2"), rephrase("q2", reasoning="Khác hẳn.")]
    report = lint_file(write("d.jsonl", rows), system_prompt=SYSTEM, conflicts="error")
    assert {(p.index, p.code, p.severity) for p in report.problems} == {(1, "conflicting_duplicate", "error")}
    assert report.summary["valid"] == 1


def test_nfd_copy_of_a_row_is_an_exact_duplicate(write):
    import unicodedata

    rows = [rephrase("sữa bột"), rephrase(unicodedata.normalize("NFD", "sữa bột"))]
    codes = sorted(p.code for p in lint_file(write("d.jsonl", rows), system_prompt=SYSTEM).problems)
    assert codes == ["exact_duplicate", "not_nfc"]


def test_blank_line_warns_and_invalid_json_line_errors(write):
    path = write("b.jsonl", json.dumps(rephrase("a")) + "\n\n{oops\n" + json.dumps(rephrase("b")) + "\n")
    report = lint_file(path, system_prompt=SYSTEM)
    assert [(p.line, p.severity, p.code) for p in report.problems] == [(2, "warning", "blank_line"),
                                                                       (3, "error", "invalid_json")]
    assert report.summary["records"] == 3 and report.summary["valid"] == 2


def test_summary_counts_classes_tokens_and_epochs(write):
    rows = rephrase_rows(20) + [rephrase("x", is_in_scope="yes")]
    summary = lint_file(write("s.json", rows, layout="array"), system_prompt=SYSTEM).summary
    assert summary["format"] == "rephrase" and summary["layout"] == "json_array"
    assert (summary["records"], summary["valid"], summary["errors"]) == (21, 20, 1)
    assert summary["errors_by_class"] == {"wrong_type": 1}
    assert summary["labels"] == {"is_in_scope=false": 4, "is_in_scope=true": 16}
    tokens = summary["tokens"]
    assert 0 < tokens["min"] <= tokens["p50"] <= tokens["p95"] <= tokens["max"]
    assert "approximate" in tokens["counted_with"]
    assert summary["suggested_epochs"] == 5  # ceil(100 / 20)


@pytest.mark.parametrize("n, epochs", [(1, 25), (3, 25), (20, 5), (34, 3), (100, 3), (8333, 3), (8334, 2), (30000, 1)])
def test_suggested_epochs_follows_the_cookbook(n, epochs):
    assert suggested_epochs(n) == epochs


def test_mistral_recipes_make_non_alternating_roles_an_error(write):
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                          {"role": "assistant", "content": "c"}]}]
    path = write("c.jsonl", rows)
    assert lint_file(path, system_prompt=SYSTEM).errors == []
    assert [p.code for p in lint_file(path, system_prompt=SYSTEM, requires_alternating=True).errors] == [
        "non_alternating_roles"]


def test_unknown_format_and_empty_file_are_errors(write):
    assert [p.code for p in lint_file(write("u.jsonl", [{"text": "x"}])).errors] == ["unknown_format"]
    assert [p.code for p in lint_file(write("e.jsonl", "")).errors] == ["no_records"]


def test_explicit_format_overrides_detection(write):
    report = lint_file(write("f.jsonl", [rephrase(), {"prompt": "p", "response": "r"}]), fmt="instruct",
                       system_prompt=SYSTEM)
    assert report.summary["format"] == "instruct"
    assert "missing_field" in [p.code for p in report.errors]


def test_cli_exit_codes(write):
    runner = CliRunner()
    good = runner.invoke(lint_command, [str(write("g.jsonl", rephrase_rows(3))), "--system-prompt", SYSTEM])
    assert good.exit_code == 0, good.output
    assert "summary: 3 records (rephrase, jsonl): 3 valid rows, 0 errors" in good.output
    missing = runner.invoke(lint_command, [str(write("g.jsonl", rephrase_rows(3)).parent / "missing.json")])
    assert missing.exit_code == 1 and "cannot read file" in missing.output


@pytest.mark.parametrize("content", [
    os.urandom(2048), b"\x00\x01\x02", b"[", b"[1, 2", b"]", b"{}", b"null\n42\n\"s\"\n[]\n", b"\xef\xbb\xbf",
    b'[{"messages": [{"role": "user", "content": "\xc3\x28"}]}]', "".join(chr(c) for c in range(1, 300)).encode(),
])
def test_cli_never_shows_a_traceback(write, content):
    result = CliRunner().invoke(lint_command, [str(write("junk.json", content))])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def test_seed_documents_as_data(write):
    """Lines of the seeds' mojibake documents as chat rows: repairable lines warn, lost characters are errors."""
    from converters_data import SEEDS

    seed_001, decoded_004 = SEEDS / "001_5323021728f7ea31.txt", SEEDS / "004_b3bd7426f4c3e07a.decoded.md"
    if not (seed_001.exists() and decoded_004.exists()):
        pytest.skip("seed documents are absent")
    lines = [line for path in (seed_001, decoded_004)
             for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [{"messages": [{"role": "user", "content": line}, {"role": "assistant", "content": "ok"}]} for line in lines]
    report = lint_file(write("seeds.jsonl", rows), system_prompt=SYSTEM)
    classes = report.summary["warnings_by_class"] | report.summary["errors_by_class"]
    assert classes["mojibake"] > 50 and classes["damaged_text"] > 20
    stats_line = 1 + next(i for i, line in enumerate(lines) if "Tá»•ng sá»‘ máº«u" in line)
    assert [p.code for p in report.problems if p.line == stats_line] == ["mojibake"]
    fffd = [p for p in report.errors if "U+FFFD" in p.message]
    assert fffd and all(lines[p.line - 1].count("\ufffd") for p in fffd)
