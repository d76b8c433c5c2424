"""Where `ftr convert` writes: its own four files, into the output folder in place, each atomically.

The folder may be the user's own (`-o mydata`, beside the raw file), so nothing in it is removed or replaced but
ftr's outputs, a folder holding anything else is refused unless --force, and a folder holding the input file is
always refused. Split names count as ftr's outputs only beside an ftr manifest (or an interrupted run's temporary
files): a user's own train.jsonl is "anything else". Each file is written under a temporary name in the folder and
renamed over the old one (os.replace: atomic within a filesystem); the old manifest goes first and the new one
comes last, so a manifest present describes the splits beside it. A killed run's temporary files are recognised
by name and removed by the next run. (Five lines of os.replace do not need an atomic-write dependency.)
"""

import json
import os
import re
from pathlib import Path

from .errors import ERROR, DataError, Problem
from .splits import SPLITS

MANIFEST = "manifest.json"
SPLIT_FILES = tuple(f"{name}.jsonl" for name in SPLITS)
OUTPUTS = (*SPLIT_FILES, MANIFEST)
SCRATCH = "rows.jsonl"  # converted rows before they are dealt into splits
_TEMP = re.compile(r"\.(train\.jsonl|val\.jsonl|test\.jsonl|manifest\.json|rows\.jsonl)\.(\d+)\.tmp")
SHOW = 5  # other entries named in the refusal


class OutputFolder:
    """The output folder of one convert: check it (raising DataError before anything is written), then write."""

    def __init__(self, outdir, input_path, force: bool = False):
        self.path = Path(outdir)
        self._made: list[Path] = []
        _check(self.path, Path(input_path), force)

    def temp(self, name: str) -> Path:
        return self.path / f".{name}.{os.getpid()}.tmp"

    def open(self) -> None:
        """Create the folder (remembering what was made) and remove the temporary files of dead runs."""
        self._made = [p for p in (self.path, *self.path.parents) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(self.path, [Problem(ERROR, "output_unwritable", f"cannot create the output folder: "
                                                f"{exc.strerror or exc}")], fatal=True) from None
        for entry in os.scandir(self.path):
            found = _TEMP.fullmatch(entry.name)
            if found and entry.is_file(follow_symlinks=False) and not alive(int(found.group(2))):
                Path(entry.path).unlink(missing_ok=True)

    def commit(self) -> None:
        """Move the finished temporary files into place: manifest out, splits in, manifest in."""
        for name in OUTPUTS:
            _fsync(self.temp(name))
        (self.path / MANIFEST).unlink(missing_ok=True)
        for name in OUTPUTS:
            os.replace(self.temp(name), self.path / name)

    def abandon(self) -> None:
        """Remove this run's temporary files, and the folders it made when they are still empty."""
        for name in (*OUTPUTS, SCRATCH):
            self.temp(name).unlink(missing_ok=True)
        for folder in self._made:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break


def _check(path: Path, input_path: Path, force: bool) -> None:
    def refuse(code, message):
        raise DataError(path, [Problem(ERROR, code, message)], fatal=True)

    if path.exists() and not path.is_dir():
        refuse("output_not_a_folder", "the output path exists and is not a folder")
    folder = path.resolve()
    # Both the path as given and the file it links to: neither may be overwritten or sit beside ftr's outputs.
    for candidate in (Path(os.path.abspath(input_path)), input_path.resolve()):
        if folder in candidate.parents:
            refuse("output_holds_input", f"the output folder holds the input file {input_path}; choose another "
                   "folder (--force does not change this)")
    if not path.exists():
        return
    odd = [name for name in OUTPUTS if os.path.lexists(path / name)
           and ((path / name).is_symlink() or not (path / name).is_file())]
    if odd:
        refuse("output_not_ours", f"{', '.join(odd)} in the output folder is not a file ftr wrote (a folder or a "
               "link); move it away first")
    ours = _ftr_outputs(path)
    others = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(path)
                    if e.name not in ours and not _TEMP.fullmatch(e.name))
    if others and not force:
        shown = ", ".join(others[:SHOW]) + (f" and {len(others) - SHOW} more" if len(others) > SHOW else "")
        refuse("output_not_empty", f"the output folder holds files ftr did not write ({shown}); choose an empty "
               f"or new folder, or pass --force to write {', '.join(OUTPUTS)} beside them (nothing else is touched)")


def _ftr_outputs(path: Path) -> set[str]:
    """The entries of `path` that a previous convert wrote: its outputs, when its manifest (or a temporary file of
    an interrupted run) says a convert wrote there."""
    present = {name for name in OUTPUTS if os.path.lexists(path / name)}
    if not present:
        return set()
    interrupted = any(_TEMP.fullmatch(name) for name in os.listdir(path))
    return present if interrupted or _is_manifest(path / MANIFEST) else set()


def _is_manifest(path: Path) -> bool:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and {"input", "outputs", "rejected"} <= manifest.keys()


def alive(pid: int) -> bool:
    """Whether a process with this PID exists (another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process
    return True


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())
