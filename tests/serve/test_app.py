"""The HTTP layer with a scripted engine (no model): OpenAI response shapes, SSE, the /predict 200 and 502 paths,
and the 413/422/504/500 answers, none of which stops the app."""

import json

import pytest
from fastapi.testclient import TestClient

from ftr.serving.app import create_app
from ftr.serving.engine import Completion, GenerationTimeout, PromptTooLong
from ftr.tasks import InvalidModelOutput, chat, rephrase

SYSTEM = "You rephrase shop queries into JSON."
VALID = {"keyword": "sữa bột cho bé 3 tuổi", "is_in_scope": True, "reasoning": "Sữa cho bé: trong phạm vi.",
         "message_banner": "Sữa bột cho bé 3 tuổi", "message_no_result": "Chưa có sản phẩm phù hợp."}


class ScriptedEngine:
    """Answers with a fixed text in pieces, or raises what it is told to; records what it was asked."""

    max_tokens_cap, timeout_s = 32, 5.0

    def __init__(self, answer="", pieces=3, fail=None, fail_after_start=None):
        self.answer, self.pieces, self.fail, self.fail_after_start = answer, pieces, fail, fail_after_start
        self.messages, self.params = None, None

    def encode(self, messages):
        self.messages = messages
        if any("TOO LONG" in m["content"] for m in messages):
            raise PromptTooLong("the prompt is 9999 tokens; the model's context is 4096")
        return [1, 2, 3]

    def generate(self, ids, params, deadline, *, on_start=None, on_text=None, cancel=None):
        self.params = params
        if self.fail:
            raise self.fail
        if on_start:
            on_start()
        size = max(1, -(-len(self.answer) // self.pieces))
        for start in range(0, len(self.answer), size):
            if on_text:
                on_text(self.answer[start:start + size])
        if self.fail_after_start:
            raise self.fail_after_start
        return Completion(self.answer, "stop", len(ids), 7)


def client(engine, task=rephrase, max_request_bytes=4096):
    info = {"model_id": "tiny-rephrase", "recipe": "tiny-rephrase", "kind": "merged", "task": task.NAME}
    return TestClient(create_app(engine, info, max_request_bytes=max_request_bytes, task=task, system_prompt=SYSTEM),
                      raise_server_exceptions=False)


def test_predict_returns_the_validated_object():
    engine = ScriptedEngine(json.dumps(VALID, ensure_ascii=False))
    response = client(engine).post("/predict", json={"query": "sua bot be 3 tuoi"})
    assert response.status_code == 200 and response.json() == VALID
    assert engine.messages == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "sua bot be 3 tuoi"}]
    assert engine.params.temperature == 0.0  # greedy


@pytest.mark.parametrize("answer, problem", [
    ('{"keyword": "x"', "Expecting"),
    ("Sure! Here is the JSON", "Expecting value"),
    (json.dumps({**VALID, "is_in_scope": "yes"}), "is_in_scope"),
    (json.dumps({k: v for k, v in VALID.items() if k != "reasoning"}), "reasoning: Field required"),
    (json.dumps({**VALID, "extra": 1}), "extra"),
    (json.dumps([VALID]), "(root)"),
])
def test_predict_answers_502_with_the_raw_text_when_the_model_breaks_the_schema(answer, problem):
    app = client(ScriptedEngine(answer))
    response = app.post("/predict", json={"query": "q"})
    assert response.status_code == 502
    body = response.json()["error"]
    assert body["type"] == "invalid_model_output" and body["raw"] == answer
    assert any(problem in p for p in body["problems"]), body["problems"]
    assert app.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("payload", [{}, {"query": ""}, {"query": "   "}, {"query": 3}, {"query": "q", "x": 1}, []])
def test_predict_bad_requests_get_422(payload):
    response = client(ScriptedEngine("{}")).post("/predict", json=payload)
    assert response.status_code == 422 and response.json()["error"]["type"] == "invalid_request_error"


def test_malformed_json_body_gets_422():
    response = client(ScriptedEngine("{}")).post("/predict", content=b'{"query": ',
                                                 headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_body_over_the_limit_gets_413_with_or_without_content_length():
    app = client(ScriptedEngine("{}"), max_request_bytes=100)
    assert app.post("/predict", json={"query": "x" * 200}).status_code == 413
    chunked = app.post("/predict", content=iter([b'{"query": "', b"x" * 200, b'"}']),
                       headers={"content-type": "application/json"})
    assert chunked.status_code == 413 and chunked.json()["error"]["type"] == "request_too_large"
    assert app.post("/predict", json={"query": "x"}).status_code == 502  # small ones still served


def test_prompt_beyond_the_context_gets_422():
    response = client(ScriptedEngine("hi")).post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "TOO LONG"}]})
    assert response.status_code == 422 and response.json()["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize("path, payload", [
    ("/predict", {"query": "q"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "q"}], "stream": True}),
])
def test_timeouts_get_504(path, payload):
    response = client(ScriptedEngine(fail=GenerationTimeout("ran past the 5 s timeout"))).post(path, json=payload)
    assert response.status_code == 504 and response.json()["error"]["type"] == "timeout"


def test_an_engine_crash_is_a_500_and_the_app_goes_on():
    engine = ScriptedEngine("fine", fail=RuntimeError("CUDA out of memory"))
    app = client(engine)
    response = app.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]})
    assert response.status_code == 500 and "CUDA out of memory" in response.json()["error"]["message"]
    engine.fail = None
    assert app.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "q"}]}).status_code == 200


def test_chat_completion_shape_and_parameters():
    engine = ScriptedEngine("xin chào")
    body = client(engine).post("/v1/chat/completions", json={
        "model": "tiny-rephrase", "max_tokens": 5, "temperature": 0.7, "top_p": 0.9, "stop": "\n", "user": "ignored",
        "messages": [{"role": "developer", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "chào"}]}]}).json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "tiny-rephrase"
    assert isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "xin chào"},
                                "logprobs": None, "finish_reason": "stop"}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    assert engine.messages == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "chào"}]
    assert (engine.params.max_tokens, engine.params.temperature, engine.params.top_p, engine.params.stop) == (
        5, 0.7, 0.9, ["\n"])


@pytest.mark.parametrize("payload", [
    {"messages": []},
    {"messages": [{"role": "tool", "content": "x"}]},
    {"messages": [{"role": "user", "content": "x"}], "n": 2},
    {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
    {"messages": [{"role": "user", "content": "x"}], "temperature": 3},
    {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
])
def test_chat_bad_requests_get_422(payload):
    assert client(ScriptedEngine("x")).post("/v1/chat/completions", json=payload).status_code == 422


def sse_events(text: str) -> list:
    lines = [line for line in text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


def test_streaming_sends_chunks_then_done():
    response = client(ScriptedEngine("một hai ba bốn", pieces=4)).post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "q"}], "stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
    assert content == "một hai ba bốn"
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 7


def test_a_timeout_mid_stream_ends_it_with_an_error_event():
    engine = ScriptedEngine("partial", fail_after_start=GenerationTimeout("ran past the 5 s timeout"))
    response = client(engine).post("/v1/chat/completions",
                                   json={"messages": [{"role": "user", "content": "q"}], "stream": True})
    events = sse_events(response.text)
    assert events[-1]["error"]["type"] == "timeout" and events[-1]["error"]["code"] == 504


def test_models_and_health():
    app = client(ScriptedEngine("x"))
    models = app.get("/v1/models").json()
    assert models["object"] == "list" and [m["id"] for m in models["data"]] == ["tiny-rephrase"]
    assert models["data"][0]["object"] == "model"
    assert app.get("/health").json()["status"] == "ok"


def test_predict_is_only_for_tasks_that_offer_it():
    response = client(ScriptedEngine("x"), task=chat).post("/predict", json={"query": "q"})
    message = response.json()["error"]["message"]
    assert response.status_code == 404 and "chat/completions" in message and "is a chat recipe" in message


def test_parse_rephrase():
    assert rephrase.parse_answer("  " + json.dumps(VALID) + "\n") == VALID
    with pytest.raises(InvalidModelOutput, match="not valid JSON"):
        rephrase.parse_answer("```json\n{}\n```")
    with pytest.raises(InvalidModelOutput, match="schema"):
        rephrase.parse_answer(json.dumps({**VALID, "keyword": None}))
