"""Files that are not JSONL or a JSON array of records, and files not in UTF-8: one clear file-level message each
(with the fix), a trailing comma read with a warning, a legacy encoding read when it is named."""

import json
import unicodedata

import pytest

from ftr.converters.encodings import likely_encoding
from ftr.converters.errors import Problem, printable
from ftr.converters.lint import lint_file
from ftr.converters.reading import RawRecord, RecordFile, Unreadable

VIETNAMESE = ["Xin chào, bạn có khỏe không? Tôi muốn mua sữa cho bé.", "Dạ, shop có nhiều loại sữa cho bé ạ.",
              "Bỉm cho trẻ sơ sinh loại nào tốt nhất?", "Đồ chơi gỗ an toàn cho bé hai tuổi."]
TONES = {"\u0300", "\u0301", "\u0303", "\u0309", "\u0323"}


def to_cp1258(text: str) -> bytes:
    """Vietnamese as Windows saves it in cp1258: circumflex, breve and horn letters precomposed, tones as marks."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1258")
        except UnicodeEncodeError:
            parts = unicodedata.normalize("NFD", ch)
            base = unicodedata.normalize("NFC", "".join(p for p in parts if p not in TONES))
            out += (base + "".join(p for p in parts if p in TONES)).encode("cp1258")
    return bytes(out)


def vietnamese_jsonl() -> str:
    return "".join(json.dumps({"prompt": q, "response": a}, ensure_ascii=False) + "\n"
                   for q, a in zip(VIETNAMESE, VIETNAMESE[1:] + VIETNAMESE[:1]))


def read(path, encoding=None):
    items = list(RecordFile(path, encoding=encoding))
    return [i for i in items if isinstance(i, RawRecord)], [i for i in items if isinstance(i, Problem)]


def test_a_single_pretty_printed_object_is_one_file_level_error_naming_its_list_key(write):
    path = write("one.json", json.dumps({"version": 1, "data": [{"prompt": "a", "response": "b"}] * 3}, indent=2))
    with pytest.raises(Unreadable) as caught:
        read(path)
    problem = caught.value.problem
    assert problem.code == "not_records" and problem.line == 1
    assert "the file is one JSON object" in problem.message and "wrap the records in [ ]" in problem.message
    assert 'its key "data" holds a list of 3 objects' in problem.message


def test_a_single_object_is_one_message_from_lint_not_one_per_line(write):
    path = write("one.json", json.dumps({"prompt": "a", "response": "b", "system": "c"}, indent=2))
    report = lint_file(path, system_prompt="")
    assert [p.code for p in report.errors] == ["not_records"]


def test_pretty_printed_objects_one_after_another_name_the_lines(write):
    text = "".join(json.dumps({"prompt": str(i), "response": "x"}, indent=2) + "\n" for i in range(3))
    with pytest.raises(Unreadable) as caught:
        read(write("many.jsonl", text))
    assert "record 0 spans lines 1-4 and the next value starts on line 5" in caught.value.problem.message


def test_jsonl_with_a_broken_first_line_keeps_per_line_errors(write):
    records, _ = read(write("a.jsonl", '{"a": 1,, "b": 2}\n{"a": 2}\n'))
    assert records[0].problem.code == "invalid_json" and records[1].value == {"a": 2}


@pytest.mark.parametrize("text, comma_line", [('[\n{"a": 1},\n{"a": 2},\n]\n', 3), ('[{"a": 1}, {"a": 2},]', 1)])
def test_a_trailing_comma_keeps_every_record_with_a_warning(write, text, comma_line):
    records, problems = read(write("a.json", text))
    assert [r.value for r in records] == [{"a": 1}, {"a": 2}]
    (warning,) = problems
    assert (warning.code, warning.severity, warning.line) == ("trailing_comma", "warning", comma_line)
    assert "after the last record (1, line" in warning.message


def test_a_cp1258_file_is_one_error_naming_cp1258_and_the_fix(write):
    path = write("vi.jsonl", to_cp1258(vietnamese_jsonl()))
    with pytest.raises(Unreadable) as caught:
        read(path)
    message = caught.value.problem.message
    assert caught.value.problem.code == "not_utf8"
    assert "it looks like cp1258" in message and "--encoding cp1258" in message and "data.encoding" in message
    assert "\\udc" not in message


def test_a_named_encoding_reads_the_file(write):
    records, _ = read(write("vi.jsonl", to_cp1258(vietnamese_jsonl())), encoding="cp1258")
    prompts = [unicodedata.normalize("NFC", r.value["prompt"]) for r in records]
    assert prompts == VIETNAMESE


def test_an_unknown_encoding_name_is_refused(write):
    with pytest.raises(Unreadable) as caught:
        read(write("a.jsonl", '{"a": 1}\n'), encoding="no-such-codec")
    assert caught.value.problem.code == "unknown_encoding"


def test_gb18030_chinese_is_named(write):
    text = "".join(json.dumps({"instruction": "识别并解释给定列表中的两个科学理论", "output": "细胞理论和日心说"},
                              ensure_ascii=False) + "\n" for _ in range(5))
    with pytest.raises(Unreadable) as caught:
        read(write("zh.jsonl", text.encode("gb18030")))
    assert "--encoding gb18030" in caught.value.problem.message


def test_a_utf8_file_with_one_damaged_line_is_still_read_record_by_record(write):
    good = vietnamese_jsonl().encode()
    path = write("a.jsonl", good + b'{"prompt": "caf\xe9", "response": "x"}\n')
    records, _ = read(path)
    assert len(records) == 5 and records[0].value["prompt"] == VIETNAMESE[0]


def test_likely_encoding_tells_vietnamese_from_western_european():
    assert likely_encoding(to_cp1258(" ".join(VIETNAMESE))) == "cp1258"
    assert likely_encoding("Ça coûte très cher, señor; die Größe".encode("cp1252")) != "cp1258"


def test_undecodable_bytes_print_as_the_bytes_they_were():
    text = b"caf\xe9".decode("utf-8", "surrogateescape")
    assert printable(text) == "caf\\xe9" and printable("x\ud800") == "x\\ud800"
