"""Repair the text of one field: CRLF, mojibake (via ftfy) and NFD, and say what is still damaged after that;
spot control characters (kept as they are: they may be meant, e.g. a tab-like \x0b, but are rarely wanted).

ftfy does the repair; this module only decides when to call it (ftfy costs ~25 us a string, far too slow to run
on every field of a 100k-row file) and how to spot damage that no repair can undo.
"""

import re
import unicodedata
from typing import NamedTuple

import ftfy

from .errors import printable

# UTF-8 read as Windows-1252/Latin-1 (or Turkish 1254, as in the seeds) turns a lead byte into one of Â..ô / ğ
# and each continuation byte into a C1 control, a Latin-1 symbol or a cp1252 punctuation sign. Correct
# Vietnamese and Chinese text almost never has that pair, so it is the cue to ask ftfy.
_CONTINUATION = "\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
MOJIBAKE_CUE = re.compile(f"[\u00c2-\u00f4\u011f][{_CONTINUATION}]")
# After repair, a Latin-1 lead letter still followed by a C1 control or Latin-1 symbol (not NBSP) is mojibake
# ftfy could not undo, typically because a byte was lost ("vá»" for "về": 0x81 has no cp1252 character). So is
# "Ã" before a lower-case letter: "í" is C3 AD, and the soft hyphen AD vanishes ("TÃch" for "Tích").
LEFTOVER_MOJIBAKE = re.compile("[\u00c2-\u00f4\u011f][\u0080-\u009f\u00a1-\u00bf]|\u00c3[a-z]")
LOST_CHARACTER = re.compile("[\ufffd\ud800-\udfff]")
SUSPECT = re.compile(f"{LOST_CHARACTER.pattern}|{MOJIBAKE_CUE.pattern}")
# C0 and C1 controls and DEL, except tab and line feed; CR is normalised to LF before this check.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Repair(NamedTuple):
    """`text` after repair; `fixes` names what was fixed (crlf, mojibake, nfd); `damage` what is still broken."""

    text: str
    fixes: tuple[str, ...] = ()
    damage: str | None = None


def repair_text(text: str) -> Repair:
    """Normalise line breaks, undo mojibake, compose to NFC; report what cannot be repaired."""
    fixes = []
    if "\r" in text:
        text = _lf(text)
        fixes.append("crlf")
    if text.isascii():
        return Repair(text, tuple(fixes))
    # One search on the fast path: nearly all real text has neither mojibake cues nor lost characters.
    if not SUSPECT.search(text):
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
            fixes.append("nfd")
        return Repair(text, tuple(fixes))
    if lost := LOST_CHARACTER.search(text):
        return Repair(text, tuple(fixes), _describe_lost(lost.group(), text, lost.start()))
    if MOJIBAKE_CUE.search(text):
        repaired = ftfy.fix_encoding(text)
        if repaired != text:
            text = repaired
            fixes.append("mojibake")
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
        fixes.append("nfd")
    damage = None
    if lost := LOST_CHARACTER.search(text):
        damage = _describe_lost(lost.group(), text, lost.start())
    elif (left := LEFTOVER_MOJIBAKE.search(text)) or ("mojibake" in fixes and ftfy.badness.is_bad(text)):
        at = left.start() if left else 0
        damage = f"mojibake that ftfy cannot repair near {snippet(text, at)}"
    return Repair(text, tuple(fixes), damage)


def control_characters(text: str) -> str | None:
    """Which control characters `text` holds, how many and where (e.g. ANSI colour codes), or None."""
    if text.isprintable():  # the common case, decided in C: no controls (and no line breaks)
        return None
    found = CONTROL.search(text)
    if found is None:
        return None
    count = len(text) - len(CONTROL.sub("", text))  # in C: a huge text of controls must not build a list
    more = f" and {count - 1:,} more" if count > 1 else ""
    return f"control character U+{ord(found.group()):04X}{more} near {snippet(text, found.start())}"


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _describe_lost(char: str, text: str, at: int) -> str:
    if char == "\ufffd":
        return f"U+FFFD replacement character (a character was lost before this file was written) near {snippet(text, at)}"
    if "\udc80" <= char <= "\udcff":
        return f"invalid UTF-8 byte 0x{ord(char) - 0xDC00:02X} near {snippet(text, at)}"
    return f"lone surrogate U+{ord(char):04X} near {snippet(text, at)}"


def snippet(text: str, at: int = 0, width: int = 24) -> str:
    """A short quoted excerpt around `at`, safe to print (no raw surrogates or line breaks)."""
    start = max(0, at - width // 2)
    part = text[start : start + width]
    return ascii_safe(repr(part))


def ascii_safe(text: str) -> str:
    """`text` printable on any UTF-8 terminal: undecodable bytes shown as \\xNN, other lone surrogates escaped."""
    return printable(text)
