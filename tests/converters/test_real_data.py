"""The real public files in ../shared/real-data/ (never copied here): shapes the seeds do not have."""

import json

import pytest

from converters_data import REAL_DATA, SYSTEM
from ftr.converters.convert import convert_file
from ftr.converters.lint import lint_file

GPT4VN = REAL_DATA / "gpt4vn_sample_vi.jsonl"
ALPACA_ZH = REAL_DATA / "llamafactory_alpaca_zh_demo.json"


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent")


@needs(GPT4VN)
def test_gpt4vn_prompt_response_jsonl_with_two_nfd_lines():
    report = lint_file(GPT4VN, system_prompt=SYSTEM)
    assert report.summary["format"] == "instruct" and report.summary["layout"] == "jsonl"
    assert report.summary["records"] == report.summary["valid"] == 1000
    assert report.errors == []
    assert sorted(p.code for p in report.warnings) == ["not_nfc", "not_nfc", "system_prompt_added"]
    added = next(p for p in report.warnings if p.code == "system_prompt_added")
    assert "added to 1000 of 1000 rows" in added.message


@needs(GPT4VN)
def test_gpt4vn_converts_with_composed_text(tmp_path):
    manifest = convert_file(GPT4VN, tmp_path / "out", system_prompt=SYSTEM)
    assert manifest["kept"] == 1000 and manifest["warnings"] == 3  # 2 not_nfc, 1 system_prompt_added
    rows = [json.loads(line) for name in ("train", "val", "test")
            for line in (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    source = [json.loads(line) for line in GPT4VN.read_text(encoding="utf-8").splitlines()]
    row = next(r for r in rows if r["id"] == 0)
    assert [m["content"] for m in row["messages"]] == [SYSTEM, source[0]["prompt"], source[0]["response"]]


@needs(ALPACA_ZH)
def test_llamafactory_alpaca_array(tmp_path):
    report = lint_file(ALPACA_ZH, system_prompt=SYSTEM)
    assert report.summary["format"] == "instruct" and report.summary["layout"] == "json_array"
    assert report.errors == []
    duplicates = [p for p in report.warnings if p.code == "exact_duplicate"]
    assert len(duplicates) == len(report.warnings) - 1 == 8  # and one system_prompt_added
    source = json.loads(ALPACA_ZH.read_text(encoding="utf-8"))
    text_lines = ALPACA_ZH.read_text(encoding="utf-8").splitlines()
    for problem in duplicates:  # the reported line is where the duplicate record starts
        assert text_lines[problem.line - 1].strip() == "{"
        assert json.dumps(source[problem.index]["instruction"], ensure_ascii=False) in text_lines[problem.line]

    manifest = convert_file(ALPACA_ZH, tmp_path / "out", system_prompt=SYSTEM)
    assert manifest["kept"] == 992 and len(manifest["rejected"]) == 8
    rows = {json.loads(line)["id"]: json.loads(line) for name in ("train", "val", "test")
            for line in (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()}
    with_input = [i for i, r in enumerate(source) if r["input"] and i in rows]
    assert len([i for i, r in enumerate(source) if r["input"]]) == 139
    for i in with_input:
        assert rows[i]["messages"][1]["content"] == source[i]["instruction"] + "\n\n" + source[i]["input"]
