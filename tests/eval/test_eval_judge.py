"""`ftr judge` over real HTTP: the verdict parser, a canned judge server (conftest.py) and the project's own server."""

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ftr.eval.judge import (JUDGE_PROMPT, Judge, JudgeReplyError, chat_url, judge_prompt, judge_rows, parse_verdict,
                            rejection)

from canned_judge import VERDICT

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_prompt_is_seed_004s_rubric():
    prompt = judge_prompt("什么是市盈率?", "股价/每股收益", "不知道")
    assert prompt.startswith("请评估AI助手的回答质量。")
    for line in ("问题: 什么是市盈率?", "参考答案: 股价/每股收益", "待评估回答: 不知道", "1. 准确性", "2. 完整性",
                 "3. 流畅性", "4. 专业性", '{"accuracy": X, "completeness": X, "fluency": X, "professionalism": X, '
                 '"overall": X, "reasoning": "..."}'):
        assert line in prompt
    assert "{{" not in prompt and JUDGE_PROMPT.count("{question}") == 1


def test_parse_verdict():
    assert parse_verdict(json.dumps(VERDICT)) == {"scores": {"accuracy": 4.0, "completeness": 5.0, "fluency": 4.0,
                                                             "professionalism": 3.0, "overall": 4.0},
                                                  "reasoning": "回答基本正确"}
    fenced = "结果：```json\n" + json.dumps({**VERDICT, "overall": "4.5"}) + "\n```"
    assert parse_verdict(fenced)["scores"]["overall"] == 4.5
    for bad, why in [("给4分", "no JSON object"), (json.dumps({**VERDICT, "fluency": 0}), "'fluency' is 0"),
                     (json.dumps({**VERDICT, "overall": True}), "'overall' is True"),
                     (json.dumps({k: v for k, v in VERDICT.items() if k != "accuracy"}), "'accuracy' is None")]:
        with pytest.raises(JudgeReplyError, match=why):
            parse_verdict(bad)


def test_chat_url():
    assert chat_url("http://h:1") == chat_url("http://h:1/") == chat_url("http://h:1/v1/") == \
        "http://h:1/v1/chat/completions"


def test_judge_rows_retries_once_and_counts_failures(judge_server):
    url, handler = judge_server
    items = [{"id": i, "question": "q", "reference": "r", "prediction": marker}
             for i, marker in enumerate(["GOOD", "FLAKY", "BAD", "ERROR", "FENCED", "RANGE"])]
    judge = Judge(url, "judge-model", timeout=10)
    try:
        result = judge_rows(judge, items, concurrency=2, progress=False)
    finally:
        judge.close()
    by_marker = {row["prediction"]: row for row in result["rows"]}
    assert (result["n"], result["judged"], result["failures"]) == (6, 3, 3)
    assert [row["id"] for row in result["rows"]] == list(range(6))  # input order kept
    assert by_marker["FLAKY"]["attempts"] == 2 and by_marker["FLAKY"]["scores"]["overall"] == 4.0
    assert by_marker["GOOD"]["attempts"] == 1 and by_marker["GOOD"]["error"] is None
    assert by_marker["BAD"]["scores"] is None and "no JSON object" in by_marker["BAD"]["error"]
    assert "500" in by_marker["ERROR"]["error"] and "'accuracy' is 9" in by_marker["RANGE"]["error"]
    assert handler.calls == {"GOOD": 1, "FLAKY": 2, "BAD": 2, "ERROR": 2, "FENCED": 1, "RANGE": 2}
    assert result["averages"] == {"accuracy": 4.0, "completeness": 5.0, "fluency": 4.0, "professionalism": 3.0,
                                  "overall": 4.0}


def _fake_run(build: Path, recipe_id: str, predictions: list[str]) -> Path:
    """A run folder with a test split and eval/predictions.jsonl, as `ftr eval` leaves it."""
    run = build / recipe_id
    (run / "data").mkdir(parents=True)
    (run / "eval").mkdir()
    with open(run / "data" / "test.jsonl", "w", encoding="utf-8") as fh:
        for i in range(len(predictions) + 1):  # one reference more than predictions: an eval run with --limit
            fh.write(json.dumps({"id": i, "messages": [{"role": "system", "content": "s"},
                                                      {"role": "user", "content": f"câu hỏi {i}"},
                                                      {"role": "assistant", "content": f"đáp án {i}"}]},
                                ensure_ascii=False) + "\n")
    with open(run / "eval" / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for i, prediction in enumerate(predictions):
            fh.write(json.dumps({"id": i, "prediction": prediction}) + "\n")
    return run


def run_judge(build: Path, *args, **env):
    return subprocess.run([sys.executable, "-m", "ftr.cli", "judge", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, FTR_BUILD=str(build), **env), timeout=120)


def _dead_url() -> str:
    with socket.socket() as sock:  # a port nobody listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


PREVIOUS = b'{"n": 3, "judged": 3, "averages": {"overall": 4.5}}\n'  # a good judge.json from an earlier run


def test_judge_cli_writes_judge_json(judge_server, tmp_path):
    url, handler = judge_server
    run = _fake_run(tmp_path, "qwen-domain-zh", ["GOOD", "GOOD", "FLAKY", "GOOD"])
    (run / "eval" / "judge.failed.json").write_text("{}")  # an earlier failed attempt, superseded now
    proc = run_judge(tmp_path, "qwen-domain-zh", "--url", url + "/v1", "--model", "judge-model",
                     "--api-key-env", "JUDGE_KEY", "--limit", "3", JUDGE_KEY="sekret")
    assert proc.returncode == 0, proc.stderr
    assert "judged 3/3 rows (0 failures, 1 retried)" in proc.stdout and "warning" not in proc.stderr
    assert "bar judge.overall >= 4.0: PASS" in proc.stdout  # qwen-domain-zh's bar, on the averages
    result = json.loads((run / "eval" / "judge.json").read_text())
    assert result["n"] == 3 and result["failures"] == 0 and result["averages"]["overall"] == 4.0
    assert [row["question"] for row in result["rows"]] == ["câu hỏi 0", "câu hỏi 1", "câu hỏi 2"]
    assert result["rows"][1]["reference"] == "đáp án 1" and result["failed_ids"] == []
    assert result["predictions_sha256"] == hashlib.sha256((run / "eval" / "predictions.jsonl").read_bytes()).hexdigest()
    assert all(h.get("Authorization") == "Bearer sekret" for h in handler.headers_seen)
    assert sorted(p.name for p in (run / "eval").iterdir()) == ["judge.json", "predictions.jsonl"]


def test_judge_cli_writes_a_partial_result_within_max_failures_and_lists_the_failures(judge_server, tmp_path):
    url, _ = judge_server
    run = _fake_run(tmp_path, "qwen-domain-zh", ["GOOD", "BAD", "FLAKY", "GOOD"])
    proc = run_judge(tmp_path, "qwen-domain-zh", "--url", url, "--model", "m", "--max-failures", "0.25")
    assert proc.returncode == 0, proc.stderr
    assert "judged 3/4 rows (1 failures, 2 retried)" in proc.stdout
    assert "warning: 1 of 4 rows were not judged (ids 1); the averages cover the other 3" in proc.stderr
    result = json.loads((run / "eval" / "judge.json").read_text())
    assert result["failures"] == 1 and result["failed_ids"] == [1] and result["max_failure_rate"] == 0.25
    assert result["rows"][1]["scores"] is None and "no JSON object" in result["rows"][1]["error"]


def test_judge_cli_keeps_the_previous_judge_json_when_too_many_fail(judge_server, tmp_path):
    url, _ = judge_server
    run = _fake_run(tmp_path, "qwen-domain-zh", ["GOOD", "BAD", "FLAKY", "GOOD"])
    (run / "eval" / "judge.json").write_bytes(PREVIOUS)
    proc = run_judge(tmp_path, "qwen-domain-zh", "--url", url, "--model", "m")  # default --max-failures 0.1
    assert proc.returncode == 1
    assert "1 of 4 judgements failed (25%, more than the 10% allowed by --max-failures" in proc.stderr
    assert "judge.json left as it was" in proc.stderr
    assert (run / "eval" / "judge.json").read_bytes() == PREVIOUS
    attempt = json.loads((run / "eval" / "judge.failed.json").read_text())
    assert attempt["failed_ids"] == [1] and attempt["judged"] == 3


def test_judge_cli_against_a_dead_endpoint_exits_1_and_keeps_judge_json(tmp_path):
    run = _fake_run(tmp_path, "tiny-rephrase", ["x", "y", "z"])
    (run / "eval" / "judge.json").write_bytes(PREVIOUS)
    before = (run / "eval" / "judge.json").stat().st_mtime_ns
    proc = run_judge(tmp_path, "tiny-rephrase", "--url", _dead_url(), "--model", "m", "--timeout", "5")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "judged 0/3 rows (3 failures" in proc.stdout
    assert "every judgement failed (3 of 3 rows; first error: ConnectError" in proc.stderr
    assert "judge.json left as it was" in proc.stderr
    assert (run / "eval" / "judge.json").read_bytes() == PREVIOUS
    assert (run / "eval" / "judge.json").stat().st_mtime_ns == before
    assert json.loads((run / "eval" / "judge.failed.json").read_text())["failures"] == 3
    # with no previous judge.json, none is created
    (run / "eval" / "judge.json").unlink()
    proc = run_judge(tmp_path, "tiny-rephrase", "--url", _dead_url(), "--model", "m", "--timeout", "5")
    assert proc.returncode == 1 and "no judge.json written" in proc.stderr
    assert not (run / "eval" / "judge.json").exists()


def test_rejection():
    def result(*scored):
        rows = [{"scores": {"overall": 4.0} if ok else None, "error": None if ok else f"E{i}"}
                for i, ok in enumerate(scored)]
        return {"n": len(rows), "judged": sum(scored), "failures": len(rows) - sum(scored), "rows": rows}

    assert rejection(result(True, True)) is None
    assert "nothing to judge" in rejection(result())
    assert "every judgement failed (2 of 2 rows; first error: E0)" in rejection(result(False, False))
    assert rejection(result(*[True] * 9, False)) is None  # 10%: allowed
    assert "2 of 10 judgements failed (20%" in rejection(result(*[True] * 8, False, False))
    assert rejection(result(*[True] * 8, False, False), max_failure_rate=0.2) is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_judge_through_ftr_serve(trained_tiny_rephrase, tmp_path):
    """The tiny model behind `ftr serve` answers garbage: every row exercises the retry, then counts as a failure."""
    build = trained_tiny_rephrase.parent
    port = _free_port()
    env = dict(os.environ, FTR_BUILD=str(build))
    server = subprocess.Popen([sys.executable, "-m", "ftr.cli", "serve", "tiny-rephrase", "--model", "adapter",
                               "--port", str(port)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, f"ftr serve exited {server.returncode}: {server.stdout.read()[-3000:]}"
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "ftr serve did not answer within 120 s"
                time.sleep(1)
        outdir = tmp_path / "eval"
        outdir.mkdir()
        test_rows = [json.loads(line) for line in (trained_tiny_rephrase / "data" / "test.jsonl").open()][:2]
        (outdir / "predictions.jsonl").write_text("".join(
            json.dumps({"id": row["id"], "prediction": row["messages"][-1]["content"]}, ensure_ascii=False) + "\n"
            for row in test_rows), encoding="utf-8")
        proc = run_judge(build, "tiny-rephrase", "--url", f"http://127.0.0.1:{port}", "--model", "tiny-rephrase",
                         "--max-tokens", "24", "-o", str(outdir), "--concurrency", "1")
        assert proc.returncode == 1 and "every judgement failed (2 of 2 rows" in proc.stderr, proc.stderr
        assert not (outdir / "judge.json").exists()
        result = json.loads((outdir / "judge.failed.json").read_text())
        assert result["n"] == 2 and result["failures"] == 2
        assert all(row["attempts"] == 2 and row["error"] for row in result["rows"])
    finally:
        server.terminate()
        server.wait(timeout=30)
