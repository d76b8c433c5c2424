"""The server under hostile or careless clients, live on 127.0.0.1 (uvicorn configured as `ftr serve` does) with
SlowEngine: a fake model behind the real Engine's queue. Clients that hang up free the model, a full queue is a
503 with Retry-After, slow or idle connections are closed, a connection cap holds, and the API key is enforced.
Every socket and client has a timeout; assertions count what the engine did rather than trust tight timings."""

import json
import logging
import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_helpers import SlowEngine, live_app

from ftr.serving.app import create_app
from ftr.tasks import rephrase

INFO = {"model_id": "m", "recipe": "m", "kind": "merged", "data_format": "rephrase", "folder": "m/merged"}
KEY = "k-0123456789abcdef"


def app_for(engine, **options):
    return create_app(engine, INFO, max_request_bytes=4096, task=rephrase, system_prompt="S", **options)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def send_raw(port: int, path="/v1/chat/completions", payload=None, headers=b"") -> socket.socket:
    """A socket that has sent one complete POST and nothing more (the caller hangs up by closing it)."""
    body = json.dumps(payload or {"messages": [{"role": "user", "content": "q"}]}).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                 % (path.encode(), len(body), headers) + body)
    return sock


def closed_by_server(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes `sock` (EOF or reset) within `within_s` seconds."""
    sock.settimeout(within_s)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def wait_until(condition, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def chat(url, max_tokens=8, **kwargs):
    return httpx.post(f"{url}/v1/chat/completions", timeout=30, **kwargs,
                      json={"messages": [{"role": "user", "content": "q"}], "max_tokens": max_tokens})


@pytest.fixture
def no_tracebacks(caplog):
    """Fails the test if anything logged an exception (uvicorn's 'Exception in ASGI application', our 500s)."""
    caplog.set_level(logging.INFO)
    yield
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("stream", [False, True])
def test_clients_that_hang_up_free_the_model(stream, no_tracebacks):
    # 500 tokens at 20 ms each: 10 s per request that is not cancelled
    engine = SlowEngine(step_s=0.02, max_tokens_cap=500)
    app = app_for(engine)
    payload = {"messages": [{"role": "user", "content": "q"}], "stream": stream}
    with live_app(app) as url:
        start = time.monotonic()
        assert chat(url).status_code == 200
        baseline = time.monotonic() - start

        # hung up while generating: the generation stops at the next token
        generating = send_raw(port_of(url), payload=payload)
        assert wait_until(lambda: engine.running == 1, 10)
        generating.close()
        assert wait_until(lambda: app.state.queue.inside == 0, 10)
        assert engine.cancels[1].is_set() and engine.tokens < 8 + 500

        # hung up while waiting: with the model held throughout, each request must leave the queue on its own
        with engine._lock:
            waiting = [send_raw(port_of(url), payload=payload) for _ in range(12)]
            assert wait_until(lambda: len(engine.cancels) == 14, 10)
            for sock in waiting:
                sock.close()
            assert wait_until(lambda: app.state.queue.inside == 0, 10)
        assert all(cancel.is_set() for cancel in engine.cancels[2:])
        assert engine.started == 2  # the baseline and the first one: no queued one ever reached the model

        start = time.monotonic()
        response = chat(url)
        assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 8
        assert time.monotonic() - start < baseline + 5  # not 13 * 10 s


def test_a_full_queue_is_a_503_with_retry_after_and_clears(no_tracebacks):
    engine = SlowEngine(step_s=0.02, max_tokens_cap=500)
    app = app_for(engine, max_queue=3)
    with live_app(app) as url:
        waiting = [send_raw(port_of(url)) for _ in range(4)]  # one generates, three wait
        assert wait_until(lambda: len(engine.cancels) == 4, 10)
        response = chat(url)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        error = response.json()["error"]
        assert error["type"] == "server_busy" and "--max-queue 3" in error["message"]
        predict = httpx.post(f"{url}/predict", json={"query": "q"}, timeout=10)
        assert predict.status_code == 503
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # /health does not queue
        for sock in waiting:
            sock.close()
        assert wait_until(lambda: app.state.queue.inside == 0, 10)
        assert chat(url).status_code == 200


def test_partial_headers_and_idle_connections_are_closed_after_the_header_timeout(no_tracebacks):
    with live_app(app_for(SlowEngine()), header_timeout_s=1.0) as url:
        port = port_of(url)
        slow = []
        for i in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            if i % 4:  # and every fourth sends nothing at all
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * i)
            slow.append(sock)
        # a kept-alive connection must send its next header in time too, however it trickles in
        kept = socket.create_connection(("127.0.0.1", port), timeout=10)
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        while not answer.endswith(b"}"):
            answer += kept.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /heal")
        slow.append(kept)
        start = time.monotonic()
        assert all(closed_by_server(sock, within_s=6) for sock in slow)
        assert time.monotonic() - start < 6
        assert chat(url).status_code == 200  # a client that sends its request normally is served
        for sock in slow:
            sock.close()


def test_a_header_sent_in_pieces_within_the_timeout_is_served():
    with live_app(app_for(SlowEngine()), header_timeout_s=3.0) as url:
        sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
        for piece in (b"GET /health HTTP/1.1\r\n", b"Host: t\r\n", b"\r\n"):
            sock.sendall(piece)
            time.sleep(0.2)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()


def test_a_body_that_trickles_in_gets_408_and_the_connection_closes(no_tracebacks):
    with live_app(app_for(SlowEngine(), read_timeout_s=1.0), header_timeout_s=1.0) as url:
        sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"query\":")
        sock.settimeout(6)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
        sock.close()


def test_the_connection_cap_answers_503_past_it():
    with live_app(app_for(SlowEngine()), header_timeout_s=30, max_connections=4) as url:
        held = [socket.create_connection(("127.0.0.1", port_of(url)), timeout=10) for _ in range(3)]
        time.sleep(0.2)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200  # the 4th connection is served
        held.append(socket.create_connection(("127.0.0.1", port_of(url)), timeout=10))
        time.sleep(0.2)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 503  # the 5th is not
        for sock in held:
            sock.close()
        assert wait_until(lambda: httpx.get(f"{url}/health", timeout=10).status_code == 200, 10)


def test_the_api_key_is_required_everywhere_but_health():
    app = TestClient(app_for(SlowEngine(), api_key=KEY), raise_server_exceptions=False)
    health = app.get("/health")
    assert health.status_code == 200 and KEY not in health.text
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"},
                    {"Authorization": f"Bearer {KEY}x"}, {"Authorization": "Bearer "}):
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/predict"),
                             ("GET", "/nowhere")):
            response = app.request(method, path, headers=headers, json={"messages": [{"role": "user", "content": "q"}]})
            assert response.status_code == 401, (headers, path)
            assert response.json()["error"]["code"] == "invalid_api_key" and KEY not in response.text
            assert response.headers["www-authenticate"] == "Bearer"
    good = {"Authorization": f"Bearer {KEY}"}
    assert app.get("/v1/models", headers=good).status_code == 200
    response = app.post("/v1/chat/completions", headers={"authorization": f"bearer {KEY}"},
                        json={"messages": [{"role": "user", "content": "q"}], "max_tokens": 2})
    assert response.status_code == 200
    # no key, a malformed body: still 401, not a 422 that describes the schema
    assert app.post("/predict", content=b"{", headers={"content-type": "application/json"}).status_code == 401


def test_the_api_key_live_and_without_a_key_everything_is_open():
    with live_app(app_for(SlowEngine(), api_key=KEY)) as url:
        assert chat(url).status_code == 401
        assert chat(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    app = TestClient(app_for(SlowEngine()))
    assert app.get("/v1/models").status_code == 200


@pytest.mark.parametrize("raw", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)),  # a TLS hello on the plain port
    b"GARBAGE\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",  # a huge header
    b"GET /%00%ff/../health HTTP/1.1\r\nHost: t\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n\xff\xfe\x00{",
    b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: -5\r\n\r\n",
    b"POST /predict HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
    b'{"messages": [{"role": "user", "content": 1e999999}]}'[:40],
])
def test_malformed_requests_never_get_a_5xx_or_a_traceback(raw, no_tracebacks):
    with live_app(app_for(SlowEngine()), header_timeout_s=2.0) as url:
        sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
        try:
            sock.sendall(raw)
            answer = sock.recv(4096)
        except ConnectionResetError:
            answer = b""
        sock.close()
        assert answer == b"" or answer.split(b" ")[1][:1] in (b"2", b"4"), answer[:200]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
