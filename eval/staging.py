"""Outputs that appear only when complete: temp folders and files named after the process that owns them,
atomic replacement, and the cleanup of what a killed process left behind.

A temp entry is named `<prefix><pid>-<random>` beside its final place (same filesystem, so os.replace and
os.rename are atomic). The PID in the name lets the next command tell a dead owner's leftovers (a killed merge
leaves a whole model) from the temp folder of a command still running beside it. A dead owner's PID reused by a
new process only delays the cleanup to a later run: nothing a live process may own is removed.
"""

import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from ftr.converters.outdir import alive


def owner(name: str, prefix: str) -> int | None:
    """The PID embedded in a temp entry's name (`<prefix><pid>` or `<prefix><pid>-...`), None for other names."""
    found = re.fullmatch(re.escape(prefix) + r"(\d+)(-.*)?", name, re.S)
    return int(found.group(1)) if found else None


def temp_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder `<prefix><this pid>-<random>` in parent."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def remove_dead(parent: Path, prefix: str) -> list[Path]:
    """Remove the temp folders and files of `prefix` in parent whose owning process is dead; what was removed."""
    removed = []
    if not parent.is_dir():
        return removed
    for entry in os.scandir(parent):
        pid = owner(entry.name, prefix)
        if pid is None or alive(pid):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write path as a whole or not at all: a temp file beside it, flushed to disk, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}-"
    remove_dead(path.parent, prefix)
    temp = path.with_name(f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        # os.open, not mkstemp: the file gets the umask's permissions, as a plain write would (mkstemp: 0600)
        with os.fdopen(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def commit_files(staged: Path, outdir: Path, names: tuple[str, ...], last: str) -> list[str]:
    """Move the files of a finished staged folder into outdir; outputs of a previous run (`names`) that this run
    did not write are removed. `last` (the index file, e.g. metrics.json) goes out first and comes in last, so
    when it is present it describes the files beside it. Returns the names removed as stale."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / last).unlink(missing_ok=True)
    stale = []
    for name in names:
        if name != last and not (staged / name).exists() and (outdir / name).exists():
            (outdir / name).unlink()
            stale.append(name)
    for entry in sorted(staged.iterdir(), key=lambda p: p.name == last):
        with open(entry, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(entry, outdir / entry.name)
    return stale
