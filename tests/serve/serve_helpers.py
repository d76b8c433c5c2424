"""Start `ftr serve` for real in a subprocess on a free port and wait until /health answers."""

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

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
def running_server(build_root: Path, args: list[str], log: Path, startup_s: float = 180):
    """Yield the base URL of `ftr serve ARGS --port N`; the server is stopped (SIGTERM, then SIGKILL) after."""
    port = free_port()
    env = dict(os.environ, FTR_BUILD=str(build_root), AXOLOTL_DO_NOT_TRACK="1")
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
