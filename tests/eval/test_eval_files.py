"""Reading and pairing reference/prediction files, `ftr score` on them, the report's bars and the bench's section."""

import json
from pathlib import Path

import pytest

from ftr.bench.eval import SECTION_END, SECTION_START, cycled, write_section
from ftr.eval.report import check_bars, flatten, metric_value
from ftr.eval.rows import RowsError, pair, read_predictions, read_references, reference_answers, split_chat


def chat(row_id, answer, question="q"):
    row = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": question},
                        {"role": "assistant", "content": answer}]}
    return row if row_id is None else {"id": row_id, **row}


def write(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def answer(in_scope: bool) -> str:
    return json.dumps({"keyword": "k", "is_in_scope": in_scope, "reasoning": "r", "message_banner": "b",
                       "message_no_result": "n"})


def test_split_chat_takes_the_last_assistant_turn():
    row = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                        {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]}
    prompt, reference = split_chat(row)
    assert reference == "d" and [m["content"] for m in prompt] == ["a", "b", "c"]
    with pytest.raises(RowsError, match="no assistant"):
        split_chat({"messages": [{"role": "user", "content": "a"}]})


def test_pair_by_id_reorders_and_reports_mismatches():
    refs = [chat(0, "r0"), chat(1, "r1"), chat(2, "r2")]
    preds = [{"id": 2, "prediction": "p2"}, {"id": 0, "prediction": "p0"}, {"id": 1, "prediction": "p1"}]
    rows, predictions, ids = pair(refs, preds)
    assert reference_answers(rows) == ["r0", "r1", "r2"] and predictions == ["p0", "p1", "p2"] and ids == [0, 1, 2]
    with pytest.raises(RowsError, match=r"1 reference id\(s\) without a prediction \['2'\], 1 prediction id\(s\)"):
        pair(refs, preds[1:] + [{"id": 7, "prediction": "p7"}])
    with pytest.raises(RowsError, match="appears twice"):
        pair(refs, preds + [{"id": 0, "prediction": "again"}])
    rows, predictions, _ = pair(refs, preds[:2], allow_missing=True)  # an eval run with --limit
    assert reference_answers(rows) == ["r0", "r2"] and predictions == ["p0", "p2"]


def test_pair_by_order_needs_equal_counts():
    refs = [chat(None, "r0"), chat(None, "r1")]
    _, predictions, ids = pair(refs, [{"prediction": "a"}, {"prediction": "b"}])
    assert predictions == ["a", "b"] and ids == [0, 1]
    with pytest.raises(RowsError, match="2 references but 1 predictions"):
        pair(refs, [{"prediction": "a"}])


def test_readers_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 0, "prediction": "x"}\n{oops\n')
    with pytest.raises(RowsError, match=r"bad.jsonl:2: not JSON"):
        read_predictions(bad)
    write(bad, [{"id": 0, "prediction": 5}])
    with pytest.raises(RowsError, match="row 1: 'prediction' must be a string"):
        read_predictions(bad)
    write(bad, [{"messages": [{"role": "user", "content": "q"}]}])
    with pytest.raises(RowsError, match="row 1: row has no assistant message"):
        read_references(bad)


@pytest.fixture
def run_score(cli):
    """`ftr score ARGS` in-process -> click.testing.Result."""
    return lambda *args: cli(["score", *args])


def test_score_cli_rephrase_json(tmp_path, run_score):
    refs = write(tmp_path / "refs.jsonl", [chat(0, answer(True)), chat(1, answer(False)), chat(2, answer(True))])
    preds = write(tmp_path / "preds.jsonl", [{"id": 2, "prediction": "```" + answer(True) + "```"},
                                             {"id": 1, "prediction": answer(False)},
                                             {"id": 0, "prediction": answer(True)}])
    proc = run_score("--task", "rephrase", "--refs", refs, "--preds", preds, "--json")
    assert proc.exit_code == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["n"] == 3
    assert result["json_valid_rate"] == pytest.approx(2 / 3)
    assert result["json_extractable_rate"] == 1.0
    assert result["per_class"]["true"]["recall"] == 0.5 and result["per_class"]["false"]["recall"] == 1.0
    human = run_score("--task", "rephrase", "--refs", refs, "--preds", preds)
    assert "per_class.true.recall: 0.5000" in human.stdout


def test_score_cli_text_and_errors(tmp_path, run_score):
    refs = write(tmp_path / "refs.jsonl", [chat(None, "một câu chuyện"), chat(None, "hai")])
    preds = write(tmp_path / "preds.jsonl", [{"prediction": "một câu chuyện"}, {"prediction": "ba"}])
    result = json.loads(run_score("--task", "text", "--refs", refs, "--preds", preds, "--json").stdout)
    assert result["exact_match"] == 0.5 and result["task"] == "chat"  # text: the chat task's old name
    short = write(tmp_path / "short.jsonl", [{"prediction": "x"}])
    proc = run_score("--task", "text", "--refs", refs, "--preds", short)
    assert proc.exit_code == 1 and "2 references but 1 predictions" in proc.stderr
    proc = run_score("--task", "rephrase", "--refs", refs, "--preds", preds)  # references are not rephrase JSON
    assert proc.exit_code == 1 and "reference 0 is not a rephrase JSON object" in proc.stderr


def test_bars_min_max_paths_and_unmeasured():
    metrics = {"json_valid_rate": 0.96, "per_class": {"true": {"recall": 0.95}, "false": {"recall": 0.5}},
               "perplexity": 12.0}
    bars = {"json_valid_rate": 0.95, "per_class.true.recall": 0.9, "per_class.false.recall": 0.9,
            "perplexity_max": 10.0, "judge.overall": 4.0}
    results = {row["bar"]: row for row in check_bars(bars, metrics)}
    assert results["json_valid_rate"]["passed"] is True
    assert results["per_class.true.recall"]["passed"] is True
    assert results["per_class.false.recall"] == {"bar": "per_class.false.recall",
                                                 "metric": "per_class.false.recall", "threshold": 0.9,
                                                 "kind": "min", "value": 0.5, "passed": False}
    assert results["perplexity_max"]["kind"] == "max" and results["perplexity_max"]["passed"] is False
    assert results["judge.overall"]["passed"] is None
    assert metric_value({"judge": {"overall": 4.5}}, "judge.overall") == 4.5
    assert metric_value({"per_class": {"true": {}}}, "per_class.true.recall") is None
    assert flatten({"a": {"b": 1, "c": True}, "confusion": {"x": 1}, "d": "s"}) == {"a.b": 1, "d": "s"}


def test_bench_section_replaces_only_its_own_markers(tmp_path):
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Training\nkeep me\n")
    write_section(doc, f"{SECTION_START}\nfirst\n{SECTION_END}")
    write_section(doc, f"{SECTION_START}\nsecond\n{SECTION_END}")
    text = doc.read_text()
    assert "keep me" in text and "second" in text and "first" not in text and text.count(SECTION_START) == 1
    assert cycled([{"a": 1}, {"a": 2}], 5) == [{"a": 1}, {"a": 2}, {"a": 1}, {"a": 2}, {"a": 1}]
