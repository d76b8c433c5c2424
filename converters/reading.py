"""Read a data file as a stream of records, each with the 1-based line it starts on.

Accepts JSONL (one value per line) and a JSON array (also pretty-printed), in UTF-8 with or without a BOM,
UTF-16 with a BOM, or the encoding the caller names (`encoding`); a file in another encoding is one error that
names it (see encodings). The array is parsed incrementally from chunks, so memory stays flat however large the
file is; a value longer than a chunk grows the buffer geometrically, so even a 200 MB record costs linear time.
Undecodable bytes are kept as lone surrogates (errors="surrogateescape") so that the text checks can name them
instead of the reader crashing. File-level findings (BOM, CRLF, blank lines, a trailing comma before the closing
]) are yielded as Problems between the records; a JSON array that stops parsing raises `Unreadable` after the
records read so far, and so does a file that is one pretty-printed JSON object, or several (not JSONL, not an
array: one error with the fix, never one per line). Values the parser cannot hold (too deep, numbers out of
range; see strictjson) are per-record errors, except deep nesting in an array: its end is unknown, so the rest
of that file is unreadable.
"""

import codecs
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .encodings import not_utf8, sniff_bom
from .errors import ERROR, WARNING, Problem
from .strictjson import Refused, StrictDecoder

CHUNK_CHARS = 1 << 20
SNIFF_LINE_CHARS = 1 << 20
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = StrictDecoder()
_NUMBER_TAIL = re.compile(r"[-+0-9.eE]*")


@dataclass
class RawRecord:
    """One record as read: its parsed JSON `value`, or `problem` when the text is not JSON."""

    line: int
    index: int
    value: Any = None
    problem: Problem | None = None


class Unreadable(Exception):
    """The file cannot be read (further); `problem` says where and why."""

    def __init__(self, problem: Problem):
        super().__init__(problem.message)
        self.problem = problem


class RecordFile:
    """A data file's records in order, interleaved with file-level Problems; `layout` is set once iteration starts.
    `encoding` (a Python codec name) reads a file saved in a legacy encoding; None: UTF-8 or a BOM's."""

    def __init__(self, path, encoding: str | None = None):
        self.path = Path(path)
        self.encoding = encoding
        self.layout: str | None = None  # "jsonl" or "json_array"

    def __iter__(self) -> Iterator[RawRecord | Problem]:
        try:
            with open(self.path, "rb") as raw:
                head = raw.read(4096)
            encoding, bom_warning = sniff_bom(head)
            if self.encoding is not None:
                encoding, bom_warning = self.encoding, None
                codecs_lookup(encoding)
            elif encoding == "utf-8" and (problem := not_utf8(self.path)) is not None:
                raise Unreadable(problem)
        except OSError as exc:
            raise Unreadable(Problem(ERROR, "unreadable", f"cannot read file: {exc.strerror or exc}")) from None
        if bom_warning:
            yield bom_warning
        with open(self.path, encoding=encoding, errors="surrogateescape", newline="") as text:
            self.layout = _sniff_layout(text)
            text.seek(0)
            if self.layout == "jsonl":
                _refuse_multiline_objects(text)
                text.seek(0)
            yield from (_read_array(text) if self.layout == "json_array" else _read_jsonl(text))


def codecs_lookup(encoding: str) -> None:
    """Refuse an encoding name Python does not know, naming it (instead of a LookupError traceback)."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise Unreadable(Problem(ERROR, "unknown_encoding", f"unknown encoding {encoding!r} (a Python codec "
                                 "name, e.g. cp1258, cp1252, gb18030, shift_jis, latin-1)")) from None


def _sniff_layout(text) -> str:
    """ "json_array" when the file is one JSON array (pretty-printed or on one line), else "jsonl". A file of
    JSONL lines that happen to be arrays is JSONL: its first line is a whole value and more values follow."""
    line = text.readline(SNIFF_LINE_CHARS)
    while line and not line.strip():
        line = text.readline(SNIFF_LINE_CHARS)
    if not line.lstrip().startswith("["):
        return "jsonl"
    if not line.endswith("\n"):
        return "json_array"  # the whole file is one line, or its first line is too long to be a JSONL record
    try:
        _DECODER.decode(line)
    except json.JSONDecodeError:
        return "json_array"
    except Refused:
        pass  # a whole line that is a (bad) value: the file is JSONL when more lines follow
    rest = text.read(4096)
    return "jsonl" if rest.strip() else "json_array"


# A pretty-printed object is read whole to tell one object from several; past this size only its start is named.
MULTILINE_SNIFF_CHARS = 64 << 20


def _refuse_multiline_objects(text) -> None:
    """Raise Unreadable when the file's first record is a JSON object spread over several lines: the whole file is
    one object (not a list of records), or pretty-printed objects one after another (not JSONL)."""
    line_no, line = 0, ""
    for line_no, line in enumerate(text, start=1):
        if line.strip():
            break
    stripped = line.strip()
    if not stripped.startswith("{"):
        return
    try:
        _DECODER.decode(line)
        return  # a whole record on its line: JSONL
    except Refused:
        return
    except json.JSONDecodeError as exc:
        if exc.pos < len(line.rstrip()):
            return  # broken inside the line: a per-line error, as for any JSONL line
    text.seek(0)
    whole = text.read(MULTILINE_SNIFF_CHARS)
    start = len(whole) - len(whole.lstrip())
    try:
        value, end = _DECODER.raw_decode(whole, start)
    except (json.JSONDecodeError, Refused):
        if len(whole) == MULTILINE_SNIFF_CHARS:
            raise Unreadable(_multiline(line_no, "its first record spans several lines (JSONL needs one record "
                                        "per line)")) from None
        return  # not even one object: the per-line errors say where
    last = line_no + whole.count("\n", start, end)
    rest = _WHITESPACE.match(whole, end).end()
    if rest >= len(whole) and len(whole) < MULTILINE_SNIFF_CHARS:
        raise Unreadable(_multiline(line_no, f"the file is one JSON object (lines {line_no}-{last}), not records"
                                    f"{_list_key_hint(value)}"))
    next_line = last + whole.count("\n", end, rest)
    raise Unreadable(_multiline(line_no, f"record 0 spans lines {line_no}-{last} and the next value starts on line "
                                f"{next_line}: pretty-printed objects one after another are not JSONL"))


def _list_key_hint(value) -> str:
    lists = [key for key, item in value.items() if isinstance(item, list) and item and isinstance(item[0], dict)]
    if len(lists) == 1:
        key = lists[0]
        return (f"; its key {json.dumps(key, ensure_ascii=False)} holds a list of {len(value[key])} objects: if those "
                f"are the records, extract them (jq '.{key}' FILE > records.json)")
    return ""


def _multiline(line_no: int, what: str) -> Problem:
    return Problem(ERROR, "not_records", f"{what}; wrap the records in [ ] (a JSON array) or write one record per "
                   "line (jq -c '.[]' for an array, jq -c . for objects one after another)", line=line_no)


def _read_jsonl(text) -> Iterator[RawRecord | Problem]:
    index = 0
    crlf_seen = False
    for line_no, line in enumerate(text, start=1):
        if not crlf_seen and line.endswith("\r\n"):
            crlf_seen = True
            yield Problem(WARNING, "crlf", "Windows (CRLF) line endings from this line on; written as LF", line=line_no)
        if not line or line.isspace():  # not strip(): that would copy a huge line
            yield Problem(WARNING, "blank_line", "blank line skipped", line=line_no)
            continue
        try:
            record = RawRecord(line_no, index, value=_DECODER.decode(line))
        except json.JSONDecodeError as exc:
            hint = " (the line is not valid UTF-8)" if _has_surrogates(line) else ""
            problem = Problem(ERROR, "invalid_json", f"not valid JSON: {exc.msg} at column {exc.colno}{hint}",
                              line=line_no, index=index)
            record = RawRecord(line_no, index, problem=problem)
        except Refused as exc:
            record = RawRecord(line_no, index, problem=Problem(ERROR, exc.code, exc.message, line=line_no, index=index))
        line = None  # a huge line need not stay in memory beside its parsed value while the record is checked
        yield record
        index += 1


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def _may_be_cut_off(exc: json.JSONDecodeError, size: int) -> bool:
    """Whether a decode error could just mean the value goes on in the next chunk (else it is a real error)."""
    # 12: the longest token a chunk end can cut, a surrogate pair "\\ud83d\\ude00" (longer than "-Infinity").
    return exc.msg.startswith("Unterminated string") or exc.pos >= size - 12


def _read_array(text) -> Iterator[RawRecord | Problem]:
    """Parse `[v, v, ...]` value by value from chunks, tracking the line each value starts on."""
    buf, pos, line, eof = "", 0, 1, False
    crlf_seen = False

    def refill(grow=False):
        """Read the next chunk; `grow` (a value goes on past the buffer) reads as much as is buffered, so that a
        long value is re-parsed O(log n) times, not once per chunk."""
        nonlocal buf, pos, eof, crlf_seen
        chunk = text.read(max(CHUNK_CHARS, len(buf) - pos) if grow else CHUNK_CHARS)
        if not chunk:
            eof = True
            return None
        warning = None
        if not crlf_seen and "\r\n" in chunk:
            crlf_seen = True
            at = line + buf.count("\n", pos) + chunk.count("\n", 0, chunk.index("\r\n"))
            warning = Problem(WARNING, "crlf", "Windows (CRLF) line endings from this line on; written as LF", line=at)
        buf = buf[pos:] + chunk
        pos = 0
        return warning

    def skip_whitespace():
        """Advance past whitespace, reading more as needed; True when a non-whitespace character is at pos."""
        nonlocal pos, line
        while True:
            end = _WHITESPACE.match(buf, pos).end()
            line += buf.count("\n", pos, end)
            pos = end
            if pos < len(buf):
                return True
            if eof:
                return False
            if (w := refill()) is not None:
                pending.append(w)

    def syntax_error(message):
        return Unreadable(Problem(ERROR, "invalid_json", f"not valid JSON: {message}; the rest of the file is not read",
                                  line=line))

    pending: list[Problem] = []
    if (w := refill()) is not None:
        pending.append(w)
    skip_whitespace()
    pos += 1  # the "[" that read_records saw
    index = 0
    expect_value = True
    comma_line = last_record_line = line
    while True:
        more = skip_whitespace()
        yield from pending
        pending.clear()
        if not more:
            raise syntax_error("the array is not closed with ]")
        ch = buf[pos]
        if ch == "]" and (index == 0 or not expect_value):
            pos += 1
            break
        if ch == "]":  # "[a, b,]": JavaScript and Python allow it, and no record is lost by reading on
            yield Problem(WARNING, "trailing_comma", f"a comma after the last record ({index - 1}, line "
                          f"{last_record_line}) before the closing ] on line {line}; ignored", line=comma_line)
            pos += 1
            break
        if not expect_value:
            if ch != ",":
                raise syntax_error(f"expected , or ] after record {index - 1}, found {ch!r}")
            comma_line = line
            pos += 1
            expect_value = True
            continue
        while True:
            refused = None
            try:
                value, end = _DECODER.raw_decode(buf, pos)
            except Refused as exc:
                if exc.end is None:  # too deep: where this record ends is unknown, so is where the next starts
                    raise Unreadable(Problem(ERROR, exc.code, f"{exc.message}; the rest of the file is not read",
                                             line=line, index=index)) from None
                value, end, refused = None, exc.end, exc
            except json.JSONDecodeError as exc:
                if eof or not _may_be_cut_off(exc, len(buf)):
                    at_line = line + buf.count("\n", pos, exc.pos)
                    at_column = exc.pos - buf.rfind("\n", 0, exc.pos)
                    raise Unreadable(Problem(ERROR, "invalid_json", f"not valid JSON: {exc.msg} at line {at_line} "
                                             f"column {at_column}; the rest of the file is not read",
                                             line=line, index=index)) from None
                if (w := refill(grow=True)) is not None:
                    pending.append(w)
                continue
            if not eof and _NUMBER_TAIL.match(buf, end).end() == len(buf):  # a number may go on in the next chunk
                if (w := refill(grow=True)) is not None:
                    pending.append(w)
                continue
            break
        if refused is not None:
            yield RawRecord(line, index, problem=Problem(ERROR, refused.code, refused.message, line=line, index=index))
        else:
            yield RawRecord(line, index, value=value)
        last_record_line = line
        line += buf.count("\n", pos, end)
        pos = end
        index += 1
        expect_value = False
    if skip_whitespace():
        raise syntax_error(f"unexpected {buf[pos]!r} after the closing ]")
    yield from pending
