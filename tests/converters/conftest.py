"""The `write` fixture: a records list, text or bytes written as a file under tmp_path."""

import json

import pytest


@pytest.fixture
def write(tmp_path):
    """write(name, records | text | bytes, layout="jsonl"|"array") -> Path"""

    def _write(name, content, layout="jsonl"):
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        elif layout == "array":
            path.write_text(json.dumps(content, ensure_ascii=False, indent=2), encoding="utf-8")
        else:
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in content), encoding="utf-8")
        return path

    return _write
