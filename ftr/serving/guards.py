"""What stands between a client and the model, inside the app: an optional API key (Starlette's
AuthenticationMiddleware with a bearer-key backend), the request body read in full under a size and a time limit,
a watch on the connection that tells the generation when its client has hung up, and the bound on the queue.
The socket-level limits (header deadline, connection cap) live in serving/server.py.
"""

import asyncio
import hmac
import threading

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware

from ftr.serving.schemas import error

HANGUP = "ftr.hangup"  # scope key: a threading.Event set once the client has disconnected
OPEN_PATHS = frozenset({"/health"})
RETRY_AFTER_S = 1  # a full queue drains one generation at a time: a client may as well retry soon
CLOSE = {"Connection": "close"}  # the client is still sending a body nobody will read


class BearerKey(AuthenticationBackend):
    """OpenAI-style `Authorization: Bearer <key>` on every path but /health."""

    def __init__(self, key: str):
        self._key = key.encode()

    async def authenticate(self, conn):
        if conn.url.path in OPEN_PATHS:
            return None
        scheme, _, token = conn.headers.get("authorization", "").partition(" ")
        # Starlette decodes header bytes as latin-1; encoding back gives the bytes the client sent.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("latin-1"), self._key):
            raise AuthenticationError("missing or wrong API key: send `Authorization: Bearer <key>`")
        return AuthCredentials(["api_key"]), SimpleUser("client")


def require_api_key(app, key: str) -> None:
    """Make `app` answer 401 (JSON, before the body is read) to requests without the key."""
    app.add_middleware(AuthenticationMiddleware, backend=BearerKey(key), on_error=lambda conn, exc: error(
        401, str(exc), "invalid_request_error", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}))


class ReadBody:
    """ASGI middleware: read the whole request body first (413 past max_bytes, 408 when it takes longer than
    timeout_s), then watch the connection while the app runs and set scope[HANGUP] once the client disconnects,
    so that a generation nobody will read stops and a request still waiting for the model gives up its place.

    The app's own receive() gets the body once, then waits for that same disconnect (as Starlette's streaming
    responses expect): this middleware is the only reader of the server's receive().
    """

    def __init__(self, app, max_bytes: int, timeout_s: float):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await self._read(receive)
        except TimeoutError:
            return await error(408, f"request body not received within {self.timeout_s:g} s", "request_timeout",
                               headers=CLOSE)(scope, receive, send)
        if body is None:
            return  # the client went away
        if len(body) > self.max_bytes:
            return await self._too_large(scope, receive, send)

        hangup = scope[HANGUP] = threading.Event()
        gone = asyncio.Event()

        async def watch():
            while (await receive())["type"] != "http.disconnect":
                pass
            hangup.set()
            gone.set()

        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        watcher = asyncio.create_task(watch())
        try:
            await self.app(scope, replay, send)
        finally:
            watcher.cancel()

    async def _read(self, receive) -> bytes | None:
        """The body (stops early once over max_bytes), or None when the client disconnects first."""
        chunks, size, more = [], 0, True
        while more and size <= self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _too_large(self, scope, receive, send):
        await error(413, f"request body over {self.max_bytes} bytes", "request_too_large",
                    headers=CLOSE)(scope, receive, send)


class QueueFull(RuntimeError):
    """As many requests already wait for the model as the server queues."""


class ModelQueue:
    """Counts the requests that hold or wait for the model; past max_waiting waiting ones, QueueFull (503).
    Only the event loop touches it, so a plain counter is safe."""

    def __init__(self, max_waiting: int):
        self.max_waiting, self.inside = max_waiting, 0

    def enter(self) -> None:
        if self.inside > self.max_waiting:
            raise QueueFull(f"the server is busy: {self.inside - 1} requests already wait for the model "
                            f"(--max-queue {self.max_waiting})")
        self.inside += 1

    def leave(self, *_) -> None:
        self.inside -= 1
