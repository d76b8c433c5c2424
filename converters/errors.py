"""Problems found in a data file, the exception convert raises when they include errors, and a capped printer."""

from collections import Counter
from dataclasses import dataclass

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Problem:
    """One finding: `severity` is "error" or "warning"; `code` is its class (e.g. `missing_content`)."""

    severity: str
    code: str
    message: str
    line: int | None = None  # 1-based line the record starts on
    index: int | None = None  # 0-based record index; None for file-level problems

    def format(self, path) -> str:
        where = f"{path}:{self.line}" if self.line is not None else f"{path}"
        record = f"record {self.index}: " if self.index is not None else ""
        line = f"{where}: {self.severity}: {record}{self.message} [{self.code}]"
        return printable(line)


def printable(text: str) -> str:
    """Text safe to print: undecodable input bytes (lone surrogates U+DC80-U+DCFF from surrogateescape) shown as
    the bytes they were, \\xE0, and any other lone surrogate as \\udXXX, so that printing never fails."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate outside the escape range, e.g. from a JSON "\\ud800"
        return text.encode("utf-8", "backslashreplace").decode("utf-8")



class DataError(ValueError):
    """A data file has errors; the message is one formatted `PATH:LINE: error: ...` line per error.

    `fatal` means that dropping the invalid records cannot help: the file itself is unusable.
    """

    def __init__(self, path, problems: list[Problem], limit: int = 50, fatal: bool = False):
        self.path = str(path)
        self.problems = problems
        self.fatal = fatal
        lines = [p.format(path) for p in problems[:limit]]
        if len(problems) > limit:
            lines.append(f"{path}: ... and {len(problems) - limit} more errors (run `ftr lint {path}` for all)")
        super().__init__("\n".join(lines))


class ProblemLog:
    """Call with each Problem to emit its line through `emit`, at most `per_class` of each class; `close()` then
    emits one note per class with how many were left out."""

    def __init__(self, path, emit, per_class: int = 20, lint_command: str | None = None):
        self.path, self.emit, self.per_class = str(path), emit, per_class
        self.lint_command = lint_command or f"ftr lint {path}"  # the command that lists them all
        self.shown, self.left_out = Counter(), Counter()

    def __call__(self, problem: Problem) -> None:
        key = (problem.severity, problem.code)
        if self.shown[key] >= self.per_class:
            self.left_out[key] += 1
            return
        self.shown[key] += 1
        self.emit(problem.format(self.path))

    def close(self) -> None:
        for (severity, code), count in sorted(self.left_out.items()):
            self.emit(f"{self.path}: note: {count} more {severity}s of class {code} not shown "
                      f"(`{self.lint_command}` lists all)")
        self.left_out.clear()
