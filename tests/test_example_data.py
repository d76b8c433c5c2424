"""Checks for the example datasets in data/examples/ and their generator.

Stdlib + pytest only; runs in well under 5 seconds.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "examples"
GENERATOR = EXAMPLES / "make_examples.py"
REPHRASE = EXAMPLES / "rephrase_vi.json"
STORIES = EXAMPLES / "gon_stories_vi.jsonl"
DOMAIN_ZH = EXAMPLES / "domain_zh.jsonl"
SHIPPED = [REPHRASE, STORIES, DOMAIN_ZH]

REPHRASE_KEYS = ["query", "keyword", "is_in_scope", "reasoning", "message_banner", "message_no_result"]
GON_SYSTEM = (
    "Bạn là một AI chuyên tạo câu chuyện về bảo vệ môi trường dựa trên thẻ bài.\n"
    "Hãy tạo câu chuyện:\n"
    "- Ngắn gọn (1-2 câu)\n"
    "- Sinh động với chi tiết cụ thể\n"
    "- Có ý nghĩa giáo dục về môi trường\n"
    "- Tích hợp hiệu ứng game một cách tự nhiên\n"
    "- Sử dụng ngôn ngữ phù hợp với trẻ em"
)
CARD_RE = re.compile(r"^Tên thẻ: (?P<name>[^.]+)\. Loại: (?P<kind>[^.]+)\. Hiệu ứng: (?P<effect>.+)$")


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_examples", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_examples", module)
    spec.loader.exec_module(module)
    return module


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


@pytest.fixture(scope="module")
def rephrase_rows() -> list[dict]:
    return json.loads(REPHRASE.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- generator


def test_generator_reproduces_shipped_files(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(GENERATOR), "--outdir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    for shipped in SHIPPED:
        regenerated = tmp_path / shipped.name
        assert regenerated.read_bytes() == shipped.read_bytes(), f"{shipped.name} differs from generator output"


def test_rephrase_cli_any_size_is_deterministic(tmp_path):
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    for out in (out_a, out_b):
        proc = subprocess.run(
            [sys.executable, str(GENERATOR), "--rephrase-rows", "2000", "--seed", "7", "-o", str(out)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
    assert out_a.read_bytes() == out_b.read_bytes()
    rows = json.loads(out_a.read_text(encoding="utf-8"))
    assert len(rows) == 2000
    assert len({r["query"].casefold() for r in rows}) == 2000
    assert 0.02 <= sum(not r["is_in_scope"] for r in rows) / len(rows) <= 0.08
    # a different seed gives different data
    gen = _load_generator()
    other = list(gen.iter_rephrase_rows(50, seed=8))
    assert [r["query"] for r in other] != [r["query"] for r in rows[:50]]


def test_streaming_writer_matches_json_dumps():
    gen = _load_generator()
    for n in (0, 1, 37):
        rows = list(gen.iter_rephrase_rows(n, seed=3))
        buf = io.StringIO()
        assert gen.write_rephrase(iter(rows), buf) == n
        assert buf.getvalue() == json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_files_are_clean_utf8_nfc_lf(path):
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "BOM"
    assert b"\r" not in raw, "CR line endings"
    assert raw.endswith(b"\n")
    text = raw.decode("utf-8")
    assert unicodedata.normalize("NFC", text) == text, "not NFC-normalised"


# --------------------------------------------------------------------------- rephrase


def test_rephrase_shape_and_types(rephrase_rows):
    assert isinstance(rephrase_rows, list)
    assert len(rephrase_rows) >= 300
    for row in rephrase_rows:
        assert list(row.keys()) == REPHRASE_KEYS
        assert isinstance(row["is_in_scope"], bool)
        for key in REPHRASE_KEYS:
            if key != "is_in_scope":
                assert isinstance(row[key], str)
        assert row["query"].strip() and row["reasoning"] and row["message_banner"] and row["message_no_result"]
        # keyword is empty exactly for out-of-scope rows
        assert (row["keyword"] == "") == (not row["is_in_scope"]), row


def test_rephrase_is_pretty_printed(rephrase_rows):
    text = REPHRASE.read_text(encoding="utf-8")
    assert text == json.dumps(rephrase_rows, indent=2, ensure_ascii=False) + "\n"


def test_rephrase_queries_unique(rephrase_rows):
    queries = [r["query"] for r in rephrase_rows]
    assert len(set(queries)) == len(queries)
    normalised = {" ".join(q.casefold().split()) for q in queries}
    assert len(normalised) == len(queries)


def test_rephrase_out_of_scope_share(rephrase_rows):
    share = sum(not r["is_in_scope"] for r in rephrase_rows) / len(rephrase_rows)
    assert 0.02 <= share <= 0.08


def test_rephrase_has_queries_without_diacritics(rephrase_rows):
    plain = [r for r in rephrase_rows if r["query"].isascii() and r["is_in_scope"]]
    assert len(plain) >= 0.1 * len(rephrase_rows)
    # ... whose keyword got its diacritics back
    assert sum(not r["keyword"].isascii() for r in plain) >= 0.8 * len(plain)


def test_rephrase_rows_are_short(rephrase_rows):
    gen = _load_generator()
    for row in rephrase_rows:
        assert gen.row_text_chars(row) <= gen.MAX_ROW_TEXT_CHARS


# --------------------------------------------------------------------------- stories


def test_gon_stories():
    rows = _read_jsonl(STORIES)
    assert len(rows) == 24
    kinds, names, effects = Counter(), set(), set()
    for row in rows:
        assert list(row.keys()) == ["messages"]
        msgs = row["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
        assert msgs[0]["content"] == GON_SYSTEM
        match = CARD_RE.match(msgs[1]["content"])
        assert match, msgs[1]["content"]
        kinds[match["kind"]] += 1
        names.add(match["name"])
        effects.add(match["effect"])
        story = msgs[2]["content"]
        assert 20 <= len(story) <= 400
        assert 1 <= len(re.findall(r"[.!?](?:\s|$)", story)) <= 2, story  # 1-2 sentences
        for number in re.findall(r"\d+", match["effect"]):  # the game effect is woven in
            assert number in story, (match["name"], number)
    assert kinds == {"Bảo Vệ": 8, "Cộng Đồng": 8, "Thiên Tai": 8}
    assert len(names) == 24 and len(effects) == 24


# --------------------------------------------------------------------------- domain_zh


def test_domain_zh():
    rows = _read_jsonl(DOMAIN_ZH)
    assert len(rows) >= 40
    for row in rows:
        assert list(row.keys()) == ["instruction", "input", "output"]
        assert all(isinstance(v, str) for v in row.values())
        assert row["instruction"].strip()
        assert 40 <= len(row["output"]) <= 300, row["instruction"]
    with_input = sum(bool(r["input"]) for r in rows) / len(rows)
    assert 0.2 <= with_input <= 0.5
    assert len({r["instruction"] for r in rows}) == len(rows)


def test_all_text_is_nfc():
    data = [json.loads(REPHRASE.read_text(encoding="utf-8")), _read_jsonl(STORIES), _read_jsonl(DOMAIN_ZH)]
    for s in _strings(data):
        assert unicodedata.normalize("NFC", s) == s
