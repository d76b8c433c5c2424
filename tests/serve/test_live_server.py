"""`ftr serve` for real: a subprocess on a free port serving the merged tiny-rephrase model (and its adapter),
called over HTTP. The tiny model is random, so /predict can only answer its clean 502 (the 200 path is covered
in test_app.py); 20 concurrent requests must all be answered, each with what it gets alone."""

import asyncio
import json

import httpx
import pytest
from serve_helpers import running_server

pytestmark = pytest.mark.slow
CAP = 16  # --max-tokens: no complete five-field JSON fits, so /predict's answer is always invalid here
SYSTEM = ("Bạn là trợ lý tìm kiếm của một cửa hàng mẹ và bé. Với mỗi truy vấn, hãy trả về đúng một đối tượng JSON "
          "gồm keyword, is_in_scope, reasoning, message_banner, message_no_result.")


@pytest.fixture(scope="module")
def server(merged_tiny_rephrase, build_root, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "merged.log"
    args = ["tiny-rephrase", "--model", "merged", "--max-tokens", str(CAP), "--max-queue", "32"]  # 20 at once
    with running_server(build_root, args, log) as url:
        yield url


def chat(url, content, **extra):
    return httpx.post(f"{url}/v1/chat/completions", timeout=60,
                      json={"model": "tiny-rephrase", "messages": [{"role": "user", "content": content}], **extra})


def test_health_and_models(server, build_root):
    response = httpx.get(f"{server}/health")
    health = response.json()
    assert health["status"] == "ok" and health["kind"] == "merged" and health["predict"] is True
    assert health["folder"] == "tiny-rephrase/merged" and str(build_root) not in response.text  # no absolute paths
    assert not [v for v in health.values() if isinstance(v, str) and v.startswith("/")]
    models = httpx.get(f"{server}/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny-rephrase"


def test_chat_completion(server):
    response = chat(server, "sữa bột cho bé 3 tuổi", max_tokens=8)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "tiny-rephrase"
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["completion_tokens"] <= 8 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def stream_text(url, content, **extra) -> str:
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=60,
                      json={"messages": [{"role": "user", "content": content}], "stream": True, **extra}) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    return "".join(e["choices"][0]["delta"].get("content", "") for e in events)


def test_streaming_gives_the_same_answer(server):
    expected = chat(server, "tã quần size L").json()["choices"][0]["message"]["content"]
    assert stream_text(server, "tã quần size L") == expected


def test_predict_on_the_random_model_is_a_clean_502_with_the_raw_text(server):
    response = httpx.post(f"{server}/predict", json={"query": "sua bot be 3 tuoi"}, timeout=60)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["type"] == "invalid_model_output" and error["problems"]
    # the raw text is exactly the model's greedy answer to the recipe's system prompt + the query
    direct = httpx.post(f"{server}/v1/chat/completions", timeout=60, json={"messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "sua bot be 3 tuoi"}]}).json()
    assert error["raw"] == direct["choices"][0]["message"]["content"]
    assert httpx.get(f"{server}/health").status_code == 200


def test_bad_and_oversized_requests(server):
    assert httpx.post(f"{server}/predict", json={"q": "x"}).status_code == 422
    assert httpx.post(f"{server}/v1/chat/completions", json={"messages": []}).status_code == 422
    assert httpx.post(f"{server}/predict", json={"query": "x" * 300_000}).status_code == 413
    assert httpx.get(f"{server}/health").status_code == 200


def test_20_concurrent_requests_all_answered_uncorrupted(server):
    prompts = ["bỉm newborn", "sữa cho mẹ bầu", "xe đẩy gấp gọn", "bình sữa 240ml", "điện thoại iphone"]
    alone = {p: chat(server, p).json()["choices"][0]["message"]["content"] for p in prompts}

    async def ask(client, prompt, stream):
        payload = {"messages": [{"role": "user", "content": prompt}], "stream": stream}
        response = await client.post("/v1/chat/completions", json=payload)
        assert response.status_code == 200, response.text
        if not stream:
            return response.json()["choices"][0]["message"]["content"]
        lines = [line for line in response.text.split("\n") if line]
        assert lines[-1] == "data: [DONE]"
        return "".join(json.loads(line[6:])["choices"][0]["delta"].get("content", "") for line in lines[:-1])

    async def all_at_once():
        async with httpx.AsyncClient(base_url=server, timeout=120) as client:
            jobs = [(prompts[i % 5], i % 2 == 1) for i in range(20)]
            return jobs, await asyncio.gather(*(ask(client, p, s) for p, s in jobs))

    jobs, answers = asyncio.run(all_at_once())
    assert len(answers) == 20
    for (prompt, _), answer in zip(jobs, answers):
        assert answer == alone[prompt]
    assert httpx.get(f"{server}/health").json()["status"] == "ok"


def test_the_adapter_serves_the_same_answers(server, build_root, tmp_path):
    questions = ["bỉm newborn", "sữa cho mẹ bầu"]
    merged = [chat(server, q).json()["choices"][0]["message"]["content"] for q in questions]
    args = ["tiny-rephrase", "--model", "adapter", "--max-tokens", str(CAP)]
    with running_server(build_root, args, tmp_path / "adapter.log") as adapter_url:
        assert httpx.get(f"{adapter_url}/health").json()["kind"] == "adapter"
        assert [chat(adapter_url, q).json()["choices"][0]["message"]["content"] for q in questions] == merged
