"""One streaming pass over a data file, shared by lint and convert: read, detect the format, check, convert, dedupe.

Memory stays flat in the size of the rows: each record is read, checked and handed on; only a hash pair, index and
line per valid row are kept (for the duplicate checks, ~120 bytes a row), never the rows themselves.
"""

from array import array
from dataclasses import dataclass, field, replace
from typing import Iterator

from ftr import tasks

from .chatshapes import rename
from .errors import ERROR, WARNING, Problem
from .formats import FORMATS, check_record, detect_format, to_json
from .limits import char_bound, check_too_long, limit_row
from .reading import RawRecord, RecordFile, Unreadable

CONFLICTS = ("keep", "error")
# How many records may precede the first one whose format can be recognised.
DETECT_WITHIN = 1000


@dataclass
class Outcome:
    """One input record after the pass: the row to write (None when it is dropped) and what was found."""

    line: int
    index: int
    row: dict | None
    problems: list[Problem]
    label: str = "all"
    drop: Problem | None = None  # the warning that dropped a row without errors (a duplicate, a too_long row)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def reject_reason(self) -> str:
        """Why the record is not written: its errors, else the warning that dropped it."""
        chosen = self.errors or ([self.drop] if self.drop else [])
        return "; ".join(f"{p.message} [{p.code}]" for p in chosen)


@dataclass
class Scan:
    """Iterate to get one Outcome per record; afterwards `format`, `layout`, `records`, `file_problems` are set.

    `fatal` is set when the file could not be read to its end (or has no recognisable format): then the record
    count is unknown and nothing may be converted from it. Rows over the character bound of `sequence_len` are
    dropped, truncated or errors as `too_long` says (see limits).
    """

    path: str
    format: str | None = None
    system_prompt: str | None = None
    requires_alternating: bool = False
    sequence_len: int | None = None
    too_long: str = "drop"
    encoding: str | None = None  # a legacy encoding to read the file in (None: UTF-8, or a BOM's)
    fields: dict | None = None  # data.fields: ftr's field name -> the file's key (see chatshapes.rename)
    roles: dict | None = None  # data.roles: ftr's role -> the file's names for it
    supports_tools: bool = True  # the recipe's chat template renders tools and tool calls
    conflicts: str = "keep"  # same prompt, another answer: keep both with a warning, or "error"
    layout: str | None = None
    records: int = 0
    file_problems: list[Problem] = field(default_factory=list)
    fatal: Problem | None = None

    def __post_init__(self):
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; expected one of {', '.join(FORMATS)}")
        check_too_long(self.too_long)
        if self.conflicts not in CONFLICTS:
            raise ValueError(f"conflicts must be one of {', '.join(CONFLICTS)}, got {self.conflicts!r}")
        self.max_chars = char_bound(self.sequence_len)

    def __iter__(self) -> Iterator[Outcome]:
        source = RecordFile(self.path, self.encoding)
        seen = FirstSeen(self.conflicts)
        waiting: list[RawRecord] = []  # records read before the format is known
        try:
            for item in source:
                self.layout = source.layout
                if isinstance(item, Problem):
                    self.file_problems.append(item)
                    continue
                self.records += 1
                if item.value is not None and (self.fields or self.roles):
                    item.value = rename(item.value, self.fields, self.roles)
                if self.format is None:
                    waiting.append(item)
                    if item.value is None or (found := detect_format(item.value)) is None:
                        if len(waiting) >= DETECT_WITHIN:
                            break
                        continue
                    self.format = found
                    for record in waiting:
                        yield self._outcome(record, seen)
                    waiting.clear()
                else:
                    yield self._outcome(item, seen)
        except Unreadable as exc:
            self.fatal = exc.problem
            self.file_problems.append(self.fatal)
            return
        if self.format is None and self.records:
            for record in waiting:  # lines that are not JSON are errors whatever the format
                if record.problem is not None:
                    yield Outcome(record.line, record.index, None, [record.problem])
            self.fatal = Problem(ERROR, "unknown_format", 'cannot tell the format: no record has "messages", "query", '
                                 '"instruction" or "prompt"; pass --format rephrase|chat|instruct', line=1)
            self.file_problems.append(self.fatal)
        elif self.records == 0:
            self.fatal = Problem(ERROR, "no_records", "the file holds no records", line=1)
            self.file_problems.append(self.fatal)

    def _outcome(self, record: RawRecord, seen: "FirstSeen") -> Outcome:
        if record.problem is not None:
            return Outcome(record.line, record.index, None, [record.problem])
        checked = check_record(record.value, self.format, self._system_prompt(), self.requires_alternating,
                               self.supports_tools)
        problems = [replace(p, line=record.line, index=record.index) for p in checked.problems]
        outcome = Outcome(record.line, record.index, None, problems, checked.label)
        if checked.has_error:
            return outcome
        messages, too_long = limit_row(checked.messages, self.max_chars, self.too_long,
                                       keep_target=tasks.of_format(self.format).WHOLE_TARGET)
        if too_long is not None:
            problems.append(replace(too_long, line=record.line, index=record.index))
            if messages is None:
                outcome.drop = problems[-1]
                return outcome
        duplicate = seen.duplicate_problem(messages, record)
        if duplicate is not None:
            problems.append(duplicate)
            if duplicate.code == "exact_duplicate" or duplicate.severity == ERROR:
                outcome.drop = duplicate
                return outcome
        outcome.row = {"id": record.index, "messages": messages}
        if checked.tools is not None:
            outcome.row["tools"] = checked.tools
        return outcome

    def _system_prompt(self) -> str:
        if self.system_prompt is None:
            self.system_prompt = ""
            self.file_problems.append(Problem(WARNING, "no_system_prompt", "no system prompt given (--system-prompt "
                                              "or --recipe): rows without one get an empty system message"))
        return self.system_prompt


class FirstSeen:
    """The first valid row of each prompt, as compact as Python allows: a dict of ints plus three int arrays
    (~120 bytes a row, whatever the row's size)."""

    def __init__(self, conflicts: str = "keep"):
        self.conflicts = conflicts
        self.slot_of_prompt: dict[int, int] = {}
        self.targets, self.indexes, self.lines = array("q"), array("q"), array("q")

    def duplicate_problem(self, messages: list[dict], record: RawRecord) -> Problem | None:
        """Same prompt and same answer as an earlier row: a warning, and only the first is kept. Same prompt,
        another answer (normal in paraphrase and identity data): a warning and both kept, or an error when
        `conflicts` is "error". Tool calls and weights are part of a message."""
        prompt = hash(tuple([to_json(m) for m in messages[:-1]]))
        target = hash(to_json(messages[-1]))
        slot = self.slot_of_prompt.get(prompt)
        if slot is None:
            self.slot_of_prompt[prompt] = len(self.targets)
            self.targets.append(target)
            self.indexes.append(record.index)
            self.lines.append(record.line)
            return None
        first = f"record {self.indexes[slot]} (line {self.lines[slot]})"
        if self.targets[slot] == target:
            return Problem(WARNING, "exact_duplicate", f"exact duplicate of {first}; only the first is kept",
                           line=record.line, index=record.index)
        if self.conflicts == "error":
            return Problem(ERROR, "conflicting_duplicate", f"same input as {first} but a different target "
                           "(data.conflicts: error)", line=record.line, index=record.index)
        return Problem(WARNING, "conflicting_duplicate", f"same input as {first} but a different target; both kept "
                       "(data.conflicts: error refuses them)", line=record.line, index=record.index)


def approx_tokens(messages: list[dict]) -> int:
    """A cheap token estimate: UTF-8 bytes / 4 (about right for English, Vietnamese and Chinese with BPE
    tokenizers) plus 4 template tokens per message. Not a substitute for the recipe's tokenizer."""
    size = sum(len(m["content"].encode()) for m in messages if isinstance(m.get("content"), str))
    return size // 4 + 4 * len(messages)
