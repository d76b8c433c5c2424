"""A canned OpenAI-compatible judge for the judge tests: a real HTTP server on 127.0.0.1 whose reply depends
on the graded answer.

The answer under evaluation (the prompt's "待评估回答" line) picks the behaviour:
GOOD -> a valid verdict; FLAKY -> prose first, a valid verdict on the retry; BAD -> prose every time;
ERROR -> HTTP 500; FENCED -> a valid verdict inside a ```json fence; RANGE -> a score of 9 (out of range).
"""

import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERDICT = {"accuracy": 4, "completeness": 5, "fluency": 4, "professionalism": 3, "overall": 4,
           "reasoning": "回答基本正确"}


class CannedJudge(BaseHTTPRequestHandler):
    calls: dict  # answer marker -> number of requests seen; set on the subclass per server
    headers_seen: list

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.headers_seen.append(dict(self.headers))
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": "not found"})
        prompt = body["messages"][-1]["content"]
        candidate = prompt.split("待评估回答: ", 1)[1].split("\n", 1)[0]
        marker = next((m for m in ("GOOD", "FLAKY", "BAD", "ERROR", "FENCED", "RANGE") if m in candidate), "GOOD")
        self.calls[marker] = self.calls.get(marker, 0) + 1
        if marker == "ERROR":
            return self._send(500, {"error": "boom"})
        content = {
            "GOOD": json.dumps(VERDICT, ensure_ascii=False),
            "FLAKY": "我认为这个回答不错。" if self.calls[marker] % 2 else json.dumps(VERDICT),
            "BAD": "这个回答还可以，给4分吧。",
            "FENCED": "```json\n" + json.dumps(VERDICT) + "\n```",
            "RANGE": json.dumps({**VERDICT, "accuracy": 9}),
        }[marker]
        self._send(200, {"id": "x", "object": "chat.completion", "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}]})

    def _send(self, status, payload):
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def serve_canned_judge():
    """(base URL, handler class with .calls and .headers_seen) of a canned judge on a free local port."""
    handler = type("Handler", (CannedJudge,), {"calls": {}, "headers_seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()
