"""`ftr serve` for real (the merged tiny model, an API key, short header timeout) under careless and hostile
clients on 127.0.0.1: clients that hang up free the model, a full queue answers 503 with Retry-After, half-sent
headers and a connection flood are cut off, and the server log never shows a traceback. Sockets and clients all
have timeouts; the hangup test asserts on what the server logged rather than on tight timings."""

import json
import socket
import time

import httpx
import pytest
from serve_helpers import running_server

pytestmark = pytest.mark.slow
KEY = "sk-test-" + "0123456789abcdef" * 2
AUTH = {"Authorization": f"Bearer {KEY}"}
CAP, QUEUE, HEADER_TIMEOUT, CONNECTIONS = 512, 12, 2.0, 20


@pytest.fixture(scope="module")
def served(merged_tiny_rephrase, build_root, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "safety.log"
    args = ["tiny-rephrase", "--max-tokens", str(CAP), "--api-key-env", "FTR_TEST_SERVE_KEY", "--max-queue",
            str(QUEUE), "--header-timeout", str(HEADER_TIMEOUT), "--max-connections", str(CONNECTIONS)]
    with running_server(build_root, args, log, env={"FTR_TEST_SERVE_KEY": KEY}) as url:
        yield url, log
    text = log.read_text()
    assert "Traceback" not in text and KEY not in text, text[-4000:]


def chat(url, max_tokens, headers=AUTH, **extra):
    return httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=120, json={
        "messages": [{"role": "user", "content": "bỉm cho bé sơ sinh"}], "max_tokens": max_tokens, **extra})


def timed(call) -> float:
    start = time.monotonic()
    response = call()
    assert response.status_code == 200, response.text
    return time.monotonic() - start


def send_raw(url, max_tokens=CAP, stream=False) -> socket.socket:
    """A socket that has sent one authorised chat request and will never read the answer."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps({"messages": [{"role": "user", "content": "xe đẩy"}], "max_tokens": max_tokens,
                       "stream": stream}).encode()
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n" % (KEY.encode(), len(body)) + body)
    return sock


def wait_for(condition, within_s):
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def in_queue(url) -> int:
    """Requests holding or waiting for the model, as /health reports them."""
    return httpx.get(f"{url}/health", timeout=10).json()["requests"]


def test_the_key_is_required_and_health_is_open_without_paths(served, build_root):
    url, _ = served
    assert chat(url, 2, headers={}).status_code == 401
    assert chat(url, 2, headers={"Authorization": "Bearer nope"}).json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
    assert chat(url, 2).status_code == 200
    health = httpx.get(f"{url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["folder"] == "tiny-rephrase/merged"
    assert str(build_root) not in health.text and KEY not in health.text


def test_abandoned_requests_are_cancelled(served):
    url, log = served
    baseline = min(timed(lambda: chat(url, 8)) for _ in range(3))
    full = timed(lambda: chat(url, CAP))  # what each abandoned request would cost uncancelled
    before = log.read_text().count("client hung up")
    abandoned = [send_raw(url, stream=i % 4 == 3) for i in range(12)]
    wait_for(lambda: in_queue(url) == 12, 30)  # one generates, eleven wait for the model
    for sock in abandoned:
        sock.close()
    wait_for(lambda: in_queue(url) == 0, 30)
    took = timed(lambda: chat(url, 8))
    print(f"8 tokens {baseline:.2f} s, {CAP} tokens {full:.2f} s, 8 tokens after 12 hangups {took:.2f} s")
    # uncancelled, the 12 would hold the model for about 12 * full; cancelled, the short request waits for none
    assert took < baseline + full + 5, (took, baseline, full)
    assert log.read_text().count("client hung up") - before == 12  # each one noticed, queued or generating


def test_a_full_queue_answers_503_with_retry_after(served):
    url, _ = served
    held = [send_raw(url) for _ in range(QUEUE + 1)]  # one generates, QUEUE wait
    try:
        wait_for(lambda: in_queue(url) == QUEUE + 1, 30)
        response = chat(url, 8)
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"].isdigit() and response.json()["error"]["type"] == "server_busy"
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: in_queue(url) == 0, 30)
    assert chat(url, 8).status_code == 200


def test_half_sent_headers_and_a_connection_flood_are_cut_off(served):
    url, _ = served
    host, port = url.removeprefix("http://").rsplit(":", 1)
    flood = []
    for i in range(CONNECTIONS):
        sock = socket.create_connection((host, int(port)), timeout=10)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"." * i)
        flood.append(sock)
    time.sleep(0.3)
    # all CONNECTIONS are taken (by clients that will never finish a header): past the cap, 503
    assert httpx.get(f"{url}/health", timeout=10).status_code == 503
    start = time.monotonic()
    for sock in flood:
        sock.settimeout(HEADER_TIMEOUT + 10)
        try:
            assert sock.recv(4096) == b""
        except ConnectionResetError:
            pass
        sock.close()
    assert time.monotonic() - start < HEADER_TIMEOUT + 10
    wait_for(lambda: httpx.get(f"{url}/health", timeout=10).status_code == 200, 10)
