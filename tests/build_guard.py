"""Snapshot a folder's paths with their mtimes and sizes, and list what changed: how tests/conftest.py proves that a
test session left the checkout's build/ alone."""

import os
from pathlib import Path

# setuptools' own output (`pip install .` writes it, ftr never does): another install during a session is not ours
NOT_OURS = ("lib", "bdist.")


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under `root` (folders too, so an empty new folder counts) -> (mtime_ns, size); {} if no root."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        if rel == ".":
            dirs[:] = [d for d in dirs if not d.startswith(NOT_OURS)]
        for name in [*dirs, *files]:
            path = os.path.join(folder, name)
            try:
                stat = os.lstat(path)
            except FileNotFoundError:
                continue
            found[os.path.relpath(path, root)] = (stat.st_mtime_ns, stat.st_size)
    return found


def changes(before: dict, after: dict) -> list[str]:
    """'added X', 'changed X', 'removed X' lines, sorted by path."""
    rows = [(path, "added") for path in after.keys() - before.keys()]
    rows += [(path, "removed") for path in before.keys() - after.keys()]
    rows += [(path, "changed") for path in before.keys() & after.keys() if before[path] != after[path]]
    return [f"{kind} {path}" for path, kind in sorted(rows)]
