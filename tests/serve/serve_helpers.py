"""Start `ftr serve` for real in a subprocess on a free port and wait until /health answers; or serve an app
(with SlowEngine, a fake model behind the real Engine's queue) from a thread, configured as `ftr serve` does."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from ftr.serving.engine import ClientGone, Completion, Engine, GenerationTimeout

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ftr(args: list[str], build_root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, FTR_BUILD=str(build_root), AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled")
    return subprocess.run([sys.executable, "-m", "ftr.cli", *args], cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


@contextmanager
def running_server(build_root: Path, args: list[str], log: Path, startup_s: float = 180, env: dict | None = None):
    """Yield the base URL of `ftr serve ARGS --port N` (env: more environment variables); the server is stopped
    (SIGTERM, then SIGKILL) after."""
    port = free_port()
    env = dict(os.environ, FTR_BUILD=str(build_root), AXOLOTL_DO_NOT_TRACK="1", **(env or {}))
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ftr.cli", "serve", *args, "--port", str(port)], cwd=REPO_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"ftr serve exited {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"ftr serve not healthy after {startup_s} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class SlowEngine(Engine):
    """Engine's real queueing (its lock, deadline and cancel handling) around a fake model that makes one token
    every step_s until the cap, the deadline or the cancel Event; it records every cancel Event it was handed."""

    def __init__(self, step_s: float = 0.02, max_tokens_cap: int = 500, timeout_s: float = 30.0):
        super().__init__(None, None, [], max_tokens_cap=max_tokens_cap, timeout_s=timeout_s, context_length=10**6)
        self.step_s, self.cancels, self.started, self.tokens, self.running = step_s, [], 0, 0, 0

    def encode(self, messages):
        return [1, 2, 3]

    def generate(self, ids, params, deadline, *, on_start=None, on_text=None, cancel=None):
        self.cancels.append(cancel)
        return super().generate(ids, params, deadline, on_start=on_start, on_text=on_text, cancel=cancel)

    def _generate(self, prompt_ids, params, deadline, on_text, cancel):
        count = min(params.max_tokens or self.max_tokens_cap, self.max_tokens_cap)
        self.started += 1  # under the engine's lock
        self.running += 1
        try:
            for done in range(count):
                if cancel is not None and cancel.is_set():
                    raise ClientGone(f"stopped after {done} tokens")
                if time.monotonic() > deadline:
                    raise GenerationTimeout(f"ran past the timeout after {done} tokens")
                time.sleep(self.step_s)
                self.tokens += 1
                if on_text is not None:
                    on_text("x")
            return Completion("x" * count, "length", len(prompt_ids), count)
        finally:
            self.running -= 1


@contextmanager
def live_app(app, header_timeout_s: float = 10.0, max_connections: int = 64):
    """Yield the base URL of `app` served by uvicorn, configured as `ftr serve` does, in a thread on 127.0.0.1."""
    import threading

    import uvicorn

    from ftr.serving.server import config

    port = free_port()
    server = uvicorn.Server(config(app, "127.0.0.1", port, header_timeout_s=header_timeout_s,
                                   max_connections=max_connections, log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
