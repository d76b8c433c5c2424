"""One streaming pass over a data file, shared by lint and convert: read, detect the format, check, convert, dedupe.

Memory stays flat in the size of the rows: each record is read, checked and handed on; only a hash pair, index and
line per valid row are kept (for the duplicate checks, ~120 bytes a row), never the rows themselves.
"""

from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterator

from ftr import tasks

from .chatshapes import rename
from .errors import ERROR, WARNING, Problem
from .formats import FORMATS, check_record, detect_format, format_keys, to_json
from .limits import char_bound, check_too_long, limit_row
from .reading import RawRecord, RecordFile, Unreadable

CONFLICTS = ("keep", "error")
# How many records may precede the first one whose format can be recognised.
DETECT_WITHIN = 1000
# A given format is checked against the first records: all of them clearly another format is one fatal error.
MISMATCH_WITHIN = 50
# Why ftr writes the recipe's system prompt into rows that have none (and what null gives up).
QWEN_DEFAULT = ("Qwen2.5's chat template writes its own default system prompt (\"You are Qwen, created by Alibaba "
                "Cloud. You are a helpful assistant.\") into a row that has none")


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
    dropped, truncated or errors as `too_long` says (see limits). `system_prompt` starts every row that has no system
    message of its own; None adds none. A given `format` that the first records clearly are not is one fatal
    `format_mismatch` naming the fix (`format_from`: "recipe" or "--format", where the format came from).
    File-level warnings count what changed in many rows: the system prompt added, placeholders filled or left.
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
    placeholders: dict | None = None  # data.placeholders: {{name}} in a text -> this text
    format_from: str = "--format"  # where a given format came from, for the mismatch's fix: "recipe" or "--format"
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
        self.rows = 0  # rows written
        self.without_system = 0  # rows written that brought no system message (in formats that can have one)
        self.filled, self.unfilled = Counter(), Counter()  # placeholder name -> times, over the rows written
        self.filled_rows, self.unfilled_rows = _Rows(), _Rows()  # the rows with fills / with placeholders left

    def __iter__(self) -> Iterator[Outcome]:
        source = RecordFile(self.path, self.encoding)
        items = iter(source)  # one pass: a mismatch counts the rest of the same pass
        seen = FirstSeen(self.conflicts)
        waiting: list[RawRecord] = []  # records read before the format is known (or checked against it)
        probing = self.format is not None
        try:
            for item in items:
                self.layout = source.layout
                if isinstance(item, Problem):
                    self.file_problems.append(item)
                    continue
                self.records += 1
                if item.value is not None and (self.fields or self.roles):
                    item.value = rename(item.value, self.fields, self.roles)
                if probing:
                    waiting.append(item)
                    if len(waiting) < MISMATCH_WITHIN:
                        continue
                    probing = False
                    if self._mismatch(waiting):
                        self.records += sum(not isinstance(rest, Problem) for rest in items)
                        return
                    for record in waiting:
                        yield self._outcome(record, seen)
                    waiting.clear()
                elif self.format is None:
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
        if probing:  # fewer records than MISMATCH_WITHIN
            if self._mismatch(waiting):
                return
            for record in waiting:
                yield self._outcome(record, seen)
        if self.format is None and self.records:
            for record in waiting:  # lines that are not JSON are errors whatever the format
                if record.problem is not None:
                    yield Outcome(record.line, record.index, None, [record.problem])
            self.fatal = Problem(ERROR, "unknown_format", 'cannot tell the format: no record has "messages", "query", '
                                 '"instruction" or "prompt"; pass --format '
                                 + "|".join(FORMATS), line=1)
            self.file_problems.append(self.fatal)
        elif self.records == 0:
            self.fatal = Problem(ERROR, "no_records", "the file holds no records", line=1)
            self.file_problems.append(self.fatal)
        self.file_problems += self._changes()

    def _outcome(self, record: RawRecord, seen: "FirstSeen") -> Outcome:
        if record.problem is not None:
            return Outcome(record.line, record.index, None, [record.problem])
        checked = check_record(record.value, self.format, self.system_prompt, self.requires_alternating,
                               self.supports_tools, self.placeholders)
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
        self._count(checked, record)
        return outcome

    def _count(self, checked, record: RawRecord) -> None:
        """Tally what the check changed in a row that is written, for the file-level warnings of _changes."""
        self.rows += 1
        if checked.own_system is False or (checked.own_system is None and self.system_prompt is None):
            self.without_system += 1
        if checked.filled:
            self.filled.update(checked.filled)
            self.filled_rows.add(record)
        if checked.unfilled:
            self.unfilled.update(checked.unfilled)
            self.unfilled_rows.add(record)

    def _changes(self) -> list[Problem]:
        """One warning per kind of change made to many rows (or that many rows need): the system prompt added or
        absent, placeholders filled, placeholders left in the text."""
        problems = []
        if self.without_system and self.system_prompt is not None:
            problems.append(Problem(WARNING, "system_prompt_added", f"the system prompt was added to "
                                    f"{self.without_system} of {self.rows} rows that had none: "
                                    f"{_quoted(self.system_prompt)} (rows with their own keep it; data.system_prompt: "
                                    "null adds none)", line=1))
        elif self.without_system:
            problems.append(Problem(WARNING, "no_system_prompt", f"{self.without_system} of {self.rows} rows have no "
                                    "system message and no system prompt is given (data.system_prompt: null, or no "
                                    f"--system-prompt / --recipe): they are kept without one, but {QWEN_DEFAULT}, "
                                    "which is why ftr adds the recipe's by default", line=1))
        if self.filled:
            problems.append(Problem(WARNING, "placeholders_filled", f"data.placeholders filled "
                                    f"{_counts(self.filled)} in {self.filled_rows}", line=1))
        if self.unfilled:
            names = ", ".join(f"{name}: ..." for name in self.unfilled)
            problems.append(Problem(WARNING, "template_placeholder", f"template placeholders left in {self.unfilled_rows}: "
                                    f"{_counts(self.unfilled)}; they "
                                    f"would be trained literally; fill them with data.placeholders: {{{names}}}",
                                    line=1))
        return problems

    def _mismatch(self, records: list[RawRecord]) -> bool:
        """Whether every parsed record among `records` is clearly another known format than the given one (detected
        as it, and invalid as the given one); if so, `fatal` is the one line that says so and how to fix it."""
        values = [record.value for record in records if record.value is not None]
        found = {detect_format(value) for value in values}
        if len(found) != 1 or (other := found.pop()) in (None, self.format):
            return False
        if any(not check_record(value, self.format, "").has_error for value in values):
            return False
        if self.format_from == "recipe":
            expects, fix = "the recipe expects", f"add `--set data.format={other}`"
        else:
            expects, fix = "--format says", f"pass `--format {other}`"
        self.fatal = Problem(ERROR, "format_mismatch", f"this file looks like `{other}` "
                             f"({format_keys(values[0], other)}); {expects} `{self.format}`: {fix}", line=1)
        self.file_problems.append(self.fatal)
        return True


def _quoted(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")


def _counts(counter: Counter) -> str:
    return ", ".join(f"{{{{{name}}}}} {count} times" for name, count in counter.most_common())


class _Rows:
    """How many rows, and the first few by record and line (memory stays flat in the size of the file)."""

    SHOWN = 3

    def __init__(self):
        self.count, self.first = 0, []

    def add(self, record: RawRecord) -> None:
        self.count += 1
        if len(self.first) < self.SHOWN:
            self.first.append(f"record {record.index} (line {record.line})")

    def __str__(self) -> str:
        more = f" and {self.count - len(self.first)} more" if self.count > len(self.first) else ""
        return f"{self.count} rows ({', '.join(self.first)}{more})"


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
