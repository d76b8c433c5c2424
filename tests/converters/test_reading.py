"""Reading files: line numbers in JSONL and (pretty-printed) JSON arrays, encodings, and input that is not JSON."""

import codecs
import json

import pytest

from converters_data import rephrase_rows
from ftr.converters import reading
from ftr.converters.errors import Problem
from ftr.converters.reading import RawRecord, RecordFile, Unreadable


def read(path):
    items = list(RecordFile(path))
    return [i for i in items if isinstance(i, RawRecord)], [i for i in items if isinstance(i, Problem)]


def test_jsonl_records_with_lines_and_indexes(write):
    path = write("a.jsonl", '{"a": 1}\n\n{"a": 2}\nnot json\n{"a": 3}\n')
    records, problems = read(path)
    assert [(r.line, r.index, r.value) for r in records] == [(1, 0, {"a": 1}), (3, 1, {"a": 2}), (4, 2, None), (5, 3, {"a": 3})]
    assert records[2].problem.code == "invalid_json" and records[2].problem.severity == "error"
    assert [(p.code, p.line, p.severity) for p in problems] == [("blank_line", 2, "warning")]


def test_pretty_printed_array_gives_the_line_each_record_starts_on(write):
    rows = rephrase_rows(5)
    path = write("a.json", rows, layout="array")
    records, problems = read(path)
    text_lines = path.read_text(encoding="utf-8").splitlines()
    assert [r.value for r in records] == rows
    assert problems == []
    for record in records:
        assert text_lines[record.line - 1].strip() == "{"
        assert json.dumps(record.value["query"], ensure_ascii=False) in text_lines[record.line]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11])
def test_array_parsing_across_chunk_boundaries(write, monkeypatch, chunk):
    """Tiny chunks make every value straddle a boundary; the records and lines must not change."""
    rows = [{"n": 12345}, {"s": "dài " * 7}, [1, 2], 3.25, None, True, "x", {"e": 'é\n"\\ \u2028 \U0001f600'}, -1e-07]
    path = write("a.json", json.dumps(rows, ensure_ascii=True, indent=1))  # \uXXXX escapes straddle chunks too
    expected = [(r.line, r.value) for r in read(path)[0]]
    monkeypatch.setattr(reading, "CHUNK_CHARS", chunk)
    assert [(r.line, r.value) for r in read(path)[0]] == expected
    assert [v for _, v in expected] == rows


def test_a_syntax_error_mid_file_is_reported_at_once(write, monkeypatch):
    """A broken record is a real error, not a value cut off by the chunk end: the reader stops there."""
    rows = [{"n": i, "s": "x" * 40} for i in range(200)]
    text = json.dumps(rows, indent=2).replace('"n": 50,', '"n": tru,')
    monkeypatch.setattr(reading, "CHUNK_CHARS", 4096)
    reads = []
    original = reading._read_array

    def counting(stream):
        real_read = stream.read
        stream.read = lambda n: reads.append(n) or real_read(n)
        return original(stream)

    monkeypatch.setattr(reading, "_read_array", counting)
    with pytest.raises(Unreadable) as caught:
        list(RecordFile(write("a.json", text)))
    assert caught.value.problem.index == 50
    assert "Expecting value" in caught.value.problem.message
    assert len(reads) < len(text) / 4096 / 2  # stopped long before the end of the file


def test_empty_array(write):
    assert read(write("a.json", "[\n]\n")) == ([], [])


@pytest.mark.parametrize("text, line", [
    ('[\n{"a": 1},\n{"a": 2\n', 3),       # truncated
    ('[\n{"a": 1}\n{"a": 2}\n]', 3),      # missing comma
    ('[\n{"a": 1}\n]\nextra', 4),          # data after the array
])
def test_broken_array_raises_unreadable_after_the_records_before(write, text, line):
    items = []
    with pytest.raises(Unreadable) as caught:
        for item in RecordFile(write("a.json", text)):
            items.append(item)
    assert items[0].value == {"a": 1}
    assert caught.value.problem.line == line
    assert caught.value.problem.code == "invalid_json"


def test_utf8_bom_is_removed_with_a_warning(write):
    path = write("a.jsonl", codecs.BOM_UTF8 + b'{"a": 1}\n')
    records, problems = read(path)
    assert records[0].value == {"a": 1}
    assert [p.code for p in problems] == ["bom"]


def test_utf16_file_is_read(write):
    path = write("a.json", codecs.BOM_UTF16_LE + '[{"a": "ữ"}]'.encode("utf-16-le"))
    records, problems = read(path)
    assert records[0].value == {"a": "ữ"}
    assert [p.code for p in problems] == ["bom"]


@pytest.mark.parametrize("layout", ["jsonl", "array"])
def test_crlf_line_endings_are_a_warning(write, layout):
    text = '{"a": 1}\r\n{"a": 2}\r\n' if layout == "jsonl" else '[\r\n{"a": 1},\r\n{"a": 2}\r\n]\r\n'
    records, problems = read(write("a.json", text.encode()))
    assert [r.value for r in records] == [{"a": 1}, {"a": 2}]
    assert [p.code for p in problems] == ["crlf"]
    assert [r.line for r in records] == ([1, 2] if layout == "jsonl" else [2, 3])


def test_invalid_utf8_bytes_survive_as_surrogates(write):
    # a mostly-UTF-8 file (a file whose non-ASCII lines are mostly not UTF-8 is one error: test_file_shapes)
    good = '{"a": "tiếng Việt"}\n'.encode() * 3
    records, _ = read(write("a.jsonl", good + b'{"a": "x\xe1y"}\n\xff\xfe garbage\n'))
    assert records[3].value == {"a": "x\udce1y"}
    assert records[4].problem.code == "invalid_json"
    assert "not valid UTF-8" in records[4].problem.message


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(Unreadable) as caught:
        list(RecordFile(tmp_path / "nope.json"))
    assert caught.value.problem.code == "unreadable"


@pytest.mark.parametrize("text, layout, count", [
    ('[{"a": 1}, {"a": 2}]', "json_array", 2),          # minified array on one line
    ('\n\n[\n{"a": 1}\n]\n', "json_array", 1),         # leading blank lines
    ('[1, 2]\n[3]\n', "jsonl", 2),                      # JSONL whose records are arrays (data_type errors later)
])
def test_layout_detection(write, text, layout, count):
    source = RecordFile(write("x.json", text))
    records = [i for i in source if isinstance(i, RawRecord)]
    assert (source.layout, len(records)) == (layout, count)
