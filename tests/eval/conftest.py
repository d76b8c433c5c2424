"""Fixtures of the eval tests: a canned judge server (canned_judge.py) on a free local port."""

import pytest

from canned_judge import serve_canned_judge


@pytest.fixture
def judge_server():
    with serve_canned_judge() as server:
        yield server
