"""The HTTP API: OpenAI-compatible GET /v1/models and POST /v1/chat/completions (JSON or SSE streaming),
GET /health, and for rephrase recipes POST /predict {"query"} -> the validated JSON object.

Every failure is a JSON body {"error": {"message", "type", ...}} with a status that says whose fault it is:
413 body too large, 422 bad request, 502 the model's answer is not the promised JSON, 504 timeout, 500 a bug.
None of them stops the server.
"""

import asyncio
import json
import logging
import threading
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ftr.serving.engine import GenerationTimeout, Params, PromptTooLong
from ftr.serving.schemas import ChatCompletionRequest, InvalidModelOutput, PredictRequest, parse_rephrase

LOG = logging.getLogger("ftr.serve")
_RUNNING: set = set()


def error(status: int, message: str, kind: str, **extra) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, **extra}}, status_code=status)


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over max_bytes, whether announced by Content-Length or not."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = error(413, f"request body over {self.max_bytes} bytes", "request_too_large")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # later calls wait for http.disconnect, as streaming responses expect

        return await self.app(scope, replay, send)


def _params(request: ChatCompletionRequest) -> Params:
    return Params(max_tokens=request.max_completion_tokens or request.max_tokens,
                  temperature=request.temperature or 0.0, top_p=request.top_p or 1.0, stop=request.stop or [],
                  seed=request.seed)


def create_app(engine, info: dict, *, max_request_bytes: int, system_prompt: str | None = None) -> FastAPI:
    """The app around `engine` (encode(messages), generate(ids, params, deadline, ...), max_tokens_cap, timeout_s).

    info: what /health and /v1/models report (model_id, kind, recipe, ...). system_prompt enables /predict.
    """
    app = FastAPI(title=f"ftr serve {info['model_id']}", docs_url=None, redoc_url=None)
    app.add_middleware(BodySizeLimit, max_bytes=max_request_bytes)
    model_id, created = info["model_id"], int(time.time())

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        return error(422, "invalid request: " + "; ".join(problems), "invalid_request_error", problems=problems)

    @app.exception_handler(PromptTooLong)
    async def _too_long(request: Request, exc: PromptTooLong):
        return error(422, str(exc), "invalid_request_error", code="context_length_exceeded")

    @app.exception_handler(GenerationTimeout)
    async def _timeout(request: Request, exc: GenerationTimeout):
        return error(504, str(exc), "timeout")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        LOG.exception("request failed")
        return error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    def deadline() -> float:
        return time.monotonic() + engine.timeout_s

    @app.get("/health")
    async def health():
        return {"status": "ok", **info}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                            "owned_by": "ftr"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: ChatCompletionRequest):
        due = deadline()
        ids = engine.encode([m.as_template_message() for m in request.messages])
        params = _params(request)
        completion_id, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            return await _stream(engine, ids, params, due, completion_id, now, model_id, include_usage)
        done = await run_in_threadpool(engine.generate, ids, params, due)
        return {"id": completion_id, "object": "chat.completion", "created": now, "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                             "logprobs": None, "finish_reason": done.finish_reason}],
                "usage": _usage(done)}

    if system_prompt is not None:
        @app.post("/predict")
        async def predict(request: PredictRequest):
            due = deadline()
            ids = engine.encode([{"role": "system", "content": system_prompt},
                                 {"role": "user", "content": request.query}])
            done = await run_in_threadpool(engine.generate, ids, Params(), due)
            try:
                return parse_rephrase(done.text)
            except InvalidModelOutput as exc:
                if done.finish_reason == "length":
                    exc.problems.append(f"the answer was cut at the max_tokens cap ({engine.max_tokens_cap})")
                return error(502, str(exc), "invalid_model_output", raw=done.text, problems=exc.problems,
                             finish_reason=done.finish_reason)
    else:
        @app.post("/predict")
        async def no_predict():
            return error(404, f"/predict serves rephrase recipes; {info['recipe']} is a {info['data_format']} "
                              "recipe: use /v1/chat/completions", "not_found")

    return app


def _usage(done) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _stream(engine, ids, params, due, completion_id, now, model_id, include_usage):
    """SSE chat.completion.chunk events. The response starts once the request holds the model, so a request that
    times out in the queue still gets a plain 504; a timeout mid-answer ends the stream with an error event."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    cancel = threading.Event()

    def post(kind, payload=None):
        loop.call_soon_threadsafe(events.put_nowait, (kind, payload))

    def work():
        # Runs in a worker thread; every event goes through post() so they arrive in order.
        try:
            post("done", engine.generate(ids, params, due, on_start=lambda: post("start"),
                                         on_text=lambda text: post("text", text), cancel=cancel))
        except Exception as exc:  # reported to the client below
            post("error", exc)

    worker = asyncio.ensure_future(run_in_threadpool(work))
    _RUNNING.add(worker)  # asyncio keeps only weak references to tasks
    worker.add_done_callback(_RUNNING.discard)
    kind, payload = await events.get()
    if kind == "error":
        cancel.set()
        raise payload

    def chunk(delta, finish_reason=None):
        return _sse({"id": completion_id, "object": "chat.completion.chunk", "created": now, "model": model_id,
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]})

    async def body():
        try:
            yield chunk({"role": "assistant", "content": ""})
            while True:
                kind, payload = await events.get()
                if kind == "text":
                    yield chunk({"content": payload})
                elif kind == "done":
                    yield chunk({}, payload.finish_reason)
                    if include_usage:
                        yield _sse({"id": completion_id, "object": "chat.completion.chunk", "created": now,
                                    "model": model_id, "choices": [], "usage": _usage(payload)})
                    break
                elif kind == "error":
                    status = 504 if isinstance(payload, GenerationTimeout) else 500
                    yield _sse({"error": {"message": str(payload), "type": "timeout" if status == 504
                                          else "server_error", "code": status}})
                    break
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()  # a client that hangs up frees the model at the next token

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
