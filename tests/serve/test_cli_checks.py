"""`ftr serve` refuses, before loading anything, a merged model that is missing, failed or older than the adapter,
and arguments it could only fail on later: a port out of range or taken, a host it cannot bind, a non-loopback
host without an API key, an API key variable that is unset or empty. Each exits non-zero at once, no traceback."""

import json
import socket
import time

import pytest
from serve_helpers import ftr

from ftr.inference import Run, RunError, adapter_fingerprint, check_merged


def _run(tmp_path, figures):
    run = Run("r", tmp_path / "r")
    (run.adapter).mkdir(parents=True)
    (run.adapter / "adapter_config.json").write_text("{}")
    (run.adapter / "adapter_model.safetensors").write_bytes(b"weights")
    run.merged.mkdir()
    (run.merged / "verification.json").write_text(json.dumps(figures))
    return run


def test_a_verified_merge_of_the_current_adapter_is_accepted(tmp_path):
    run = _run(tmp_path, {"verification": {"passed": True}})
    figures = json.loads((run.merged / "verification.json").read_text())
    figures["adapter_sha256"] = adapter_fingerprint(run.adapter)
    (run.merged / "verification.json").write_text(json.dumps(figures))
    assert check_merged(run)["verification"]["passed"]


def test_a_merge_of_an_earlier_adapter_is_refused(tmp_path):
    run = _run(tmp_path, {"verification": {"passed": True}, "adapter_sha256": "0" * 64})
    with pytest.raises(RunError, match="earlier adapter"):
        check_merged(run)


def test_a_failed_merge_is_refused(tmp_path):
    run = _run(tmp_path, {"verification": {"passed": False}})
    with pytest.raises(RunError, match="did not pass"):
        check_merged(run)


def test_serve_without_a_merge_says_what_to_run(tmp_path):
    proc = ftr(["serve", "tiny-rephrase"], tmp_path, timeout=120)
    assert proc.returncode == 1
    assert "make merge RECIPE=tiny-rephrase" in proc.stderr and "MODEL=adapter" in proc.stderr


def serve_fails(tmp_path, args, code=2):
    """`ftr serve tiny-rephrase ARGS` in an empty build tree: it must exit `code` quickly, without a traceback."""
    start = time.monotonic()
    proc = ftr(["serve", "tiny-rephrase", *args], tmp_path, timeout=60)
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert time.monotonic() - start < 30
    return proc.stderr


NO_MERGE = "make merge RECIPE=tiny-rephrase"  # what the run check says: reaching it means the arguments passed


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_a_port_out_of_range(tmp_path, port):
    assert "--port" in serve_fails(tmp_path, ["--port", port])


def test_a_taken_port_is_refused_before_anything_loads(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = serve_fails(tmp_path, ["--port", str(port)], code=1)
    assert f"cannot listen on 127.0.0.1:{port}" in err and NO_MERGE not in err


def test_a_host_that_cannot_be_bound(tmp_path):
    err = serve_fails(tmp_path, ["--host", "192.0.2.1", "--insecure-no-auth"], code=1)  # TEST-NET: not ours
    assert "cannot listen on 192.0.2.1" in err and NO_MERGE not in err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org"])
def test_listening_beyond_loopback_needs_an_api_key(tmp_path, host):
    err = serve_fails(tmp_path, ["--host", host])
    assert "--api-key-env" in err and "--insecure-no-auth" in err


def test_insecure_no_auth_warns_loudly_and_goes_on(tmp_path):
    err = serve_fails(tmp_path, ["--host", "0.0.0.0", "--insecure-no-auth"], code=1)
    assert "WITHOUT AUTHENTICATION" in err and NO_MERGE in err


@pytest.mark.parametrize("value, says", [(None, "not set"), ("", "empty"), ("  ", "empty")])
def test_an_api_key_variable_that_is_unset_or_empty(tmp_path, monkeypatch, value, says):
    if value is None:
        monkeypatch.delenv("FTR_TEST_SERVE_KEY", raising=False)
    else:
        monkeypatch.setenv("FTR_TEST_SERVE_KEY", value)
    err = serve_fails(tmp_path, ["--api-key-env", "FTR_TEST_SERVE_KEY"])
    assert f"FTR_TEST_SERVE_KEY is {says}" in err


def test_an_api_key_is_accepted_and_never_echoed(tmp_path, monkeypatch):
    key = "sk-never-print-this-0123456789"
    monkeypatch.setenv("FTR_TEST_SERVE_KEY", key)
    err = serve_fails(tmp_path, ["--host", "0.0.0.0", "--api-key-env", "FTR_TEST_SERVE_KEY"], code=1)
    assert NO_MERGE in err and key not in err and "WITHOUT AUTHENTICATION" not in err
    err = serve_fails(tmp_path, ["--api-key-env", "FTR_TEST_SERVE_KEY", "--insecure-no-auth"])
    assert "exclude each other" in err and key not in err
