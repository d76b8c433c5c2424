"""The HTTP API: OpenAI-compatible GET /v1/models and POST /v1/chat/completions (JSON or SSE streaming),
GET /health, and for a task that offers it (rephrase) POST /predict {"query"} -> the validated JSON object: the
request and answer schemas are the task's (ftr.tasks).

Every failure is a JSON body {"error": {"message", "type", ...}} with a status that says whose fault it is:
401 no or wrong API key, 408 body too slow, 413 body too large, 422 bad request, 502 the model's answer is not
the promised JSON, 503 queue full (Retry-After), 504 timeout, 500 a bug. None of them stops the server; a client
that hangs up frees the model (see guards.py).
"""

import asyncio
import json
import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ftr.serving.engine import ClientGone, GenerationTimeout, Params, PromptTooLong
from ftr.serving.guards import HANGUP, RETRY_AFTER_S, ModelQueue, QueueFull, ReadBody, require_api_key
from ftr.serving.schemas import ChatCompletionRequest, error
from ftr.tasks import InvalidModelOutput

LOG = logging.getLogger("ftr.serve")
_RUNNING: set = set()


def _params(request: ChatCompletionRequest) -> Params:
    return Params(max_tokens=request.max_completion_tokens or request.max_tokens,
                  temperature=request.temperature or 0.0, top_p=request.top_p or 1.0, stop=request.stop or [],
                  seed=request.seed)


def create_app(engine, info: dict, *, max_request_bytes: int, task=None, system_prompt: str | None = None,
               max_queue: int = 16, read_timeout_s: float = 10.0, api_key: str | None = None) -> FastAPI:
    """The app around `engine` (encode(messages), generate(ids, params, deadline, ...), max_tokens_cap, timeout_s).

    info: what /health and /v1/models report (model_id, kind, recipe, task, ...). task: the recipe's ftr.tasks
    module; when it offers /predict, system_prompt is the one its rows were trained with.
    max_queue: requests that may wait for the model (503 past it). api_key: required on all but /health.
    """
    app = FastAPI(title=f"ftr serve {info['model_id']}", docs_url=None, redoc_url=None)
    app.add_middleware(ReadBody, max_bytes=max_request_bytes, timeout_s=read_timeout_s)
    if api_key is not None:
        require_api_key(app, api_key)  # outermost: a request without the key is refused before its body is read
    model_id, created = info["model_id"], int(time.time())
    queue = app.state.queue = ModelQueue(max_queue)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        return error(422, "invalid request: " + "; ".join(problems), "invalid_request_error", problems=problems)

    @app.exception_handler(PromptTooLong)
    async def _too_long(request: Request, exc: PromptTooLong):
        return error(422, str(exc), "invalid_request_error", code="context_length_exceeded")

    @app.exception_handler(QueueFull)
    async def _busy(request: Request, exc: QueueFull):
        return error(503, str(exc), "server_busy", headers={"Retry-After": str(RETRY_AFTER_S)})

    @app.exception_handler(GenerationTimeout)
    async def _timeout(request: Request, exc: GenerationTimeout):
        return error(504, str(exc), "timeout")

    @app.exception_handler(ClientGone)
    async def _gone(request: Request, exc: ClientGone):
        return error(499, str(exc), "client_closed_request")  # nginx's code; nobody is left to read it

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        LOG.exception("request failed")
        return error(500, f"internal error: {type(exc).__name__}: {exc}", "server_error")

    def deadline() -> float:
        return time.monotonic() + engine.timeout_s

    def generate(*args, **kwargs):
        """engine.generate, logging a hangup once, wherever it found the request: queued, generating, streaming."""
        try:
            return engine.generate(*args, **kwargs)
        except ClientGone as exc:
            LOG.warning("%s", exc)
            raise

    def in_thread(fn, *args, **kwargs) -> asyncio.Future:
        """Run fn (a generation) in a worker thread, holding a place in the queue until the thread is done."""
        queue.enter()
        worker = asyncio.ensure_future(run_in_threadpool(fn, *args, **kwargs))
        _RUNNING.add(worker)  # asyncio keeps only weak references to tasks
        worker.add_done_callback(_RUNNING.discard)
        worker.add_done_callback(queue.leave)
        return worker

    @app.get("/health")
    async def health():
        return {"status": "ok", **info, "requests": queue.inside, "max_queue": queue.max_waiting}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": created,
                                            "owned_by": "ftr"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        due, hangup = deadline(), request.scope[HANGUP]
        ids = engine.encode([m.as_template_message() for m in body.messages])
        params = _params(body)
        completion_id, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await _stream(generate, in_thread, hangup, ids, params, due, completion_id, now, model_id,
                                 include_usage)
        done = await in_thread(generate, ids, params, due, cancel=hangup)
        return {"id": completion_id, "object": "chat.completion", "created": now, "model": model_id,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                             "logprobs": None, "finish_reason": done.finish_reason}],
                "usage": _usage(done)}

    if task is not None and task.PREDICT:
        @app.post("/predict")
        async def predict(body: task.PredictRequest, request: Request):
            due = deadline()
            ids = engine.encode(task.predict_messages(body, system_prompt))
            done = await in_thread(generate, ids, Params(), due, cancel=request.scope[HANGUP])
            try:
                return task.parse_answer(done.text)
            except InvalidModelOutput as exc:
                if done.finish_reason == "length":
                    exc.problems.append(f"the answer was cut at the max_tokens cap ({engine.max_tokens_cap})")
                return error(502, str(exc), "invalid_model_output", raw=done.text, problems=exc.problems,
                             finish_reason=done.finish_reason)
    else:
        @app.post("/predict")
        async def no_predict():
            return error(404, f"/predict serves tasks that offer it (rephrase); {info['recipe']} is a "
                              f"{info.get('task', 'chat')} recipe: use /v1/chat/completions", "not_found")

    return app


def _usage(done) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


def _sse(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _stream(generate, in_thread, cancel, ids, params, due, completion_id, now, model_id, include_usage):
    """SSE chat.completion.chunk events. The response starts once the request holds the model, so a request that
    times out in the queue still gets a plain 504; a timeout mid-answer ends the stream with an error event."""
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()

    def post(kind, payload=None):
        loop.call_soon_threadsafe(events.put_nowait, (kind, payload))

    def work():
        # Runs in a worker thread; every event goes through post() so they arrive in order.
        try:
            post("done", generate(ids, params, due, on_start=lambda: post("start"),
                                         on_text=lambda text: post("text", text), cancel=cancel))
        except Exception as exc:  # reported to the client below
            post("error", exc)

    in_thread(work)
    kind, payload = await events.get()
    if kind == "error":
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
            cancel.set()  # the stream ended or was cancelled: either way the generation may stop

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
