"""The HTTP server around the app: uvicorn on its h11 protocol with a deadline for request headers and a cap on
connections, and the cheap checks `ftr serve` runs before it spends seconds loading a model.
"""

import asyncio
import ipaddress

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


def is_loopback(host: str) -> bool:
    """Whether listening on `host` keeps the server to this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_can_listen(host: str, port: int) -> None:
    """Bind host:port as uvicorn will (asyncio's create_server), without listening, then let go: an unknown host,
    a taken or a privileged port raise OSError here rather than after the model has loaded."""

    async def bind():
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, host, port, start_serving=False)
        server.close()
        await server.wait_closed()

    asyncio.run(bind())


class HeaderDeadline(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request header.

    uvicorn (0.54) arms its keep-alive timer only after a response and cancels it on the next byte received, so a
    connection that sends nothing, or half a header (slowloris), is held forever. Here a timer runs whenever the
    connection waits for a request (from connect, and again after each response), and only a complete header
    (h11 leaving IDLE) stops it; when it fires the connection is closed the way uvicorn closes an idle one.
    """

    header_timeout_s = 10.0
    _header_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self._await_header()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_header()

    def connection_lost(self, exc):
        self._stop_header_timer()
        super().connection_lost(exc)

    def _await_header(self) -> None:
        self._stop_header_timer()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout_s, self.timeout_keep_alive_handler)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None


def config(app, host: str, port: int, *, header_timeout_s: float, max_connections: int,
           **options) -> uvicorn.Config:
    """uvicorn's configuration for `app` (options: more uvicorn.Config arguments, such as log_level):
    past max_connections open connections, a request gets uvicorn's 503."""

    class Protocol(HeaderDeadline):
        pass

    Protocol.header_timeout_s = header_timeout_s
    # uvicorn compares with >= and counts the connection asking too: +1 lets max_connections be served at once.
    return uvicorn.Config(app, host=host, port=port, http=Protocol, limit_concurrency=max_connections + 1,
                          timeout_graceful_shutdown=5, **options)
