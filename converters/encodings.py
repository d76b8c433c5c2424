"""Which text encoding a data file is in: UTF-8 (with or without a BOM), UTF-16 with a BOM, or, for a file that
is not UTF-8, the legacy encoding it most likely is, so that the one error it gets can name the fix.

A file with a few bad bytes is UTF-8 with damaged records (each one is an error of its own); a file whose
non-ASCII lines are mostly not UTF-8 was saved in another encoding, and reading it as UTF-8 would reject every
record that has an accent. charset-normalizer guesses the encoding, except for Vietnamese: it reads Windows-1258
as Windows-1250 "Spanish", so cp1258 is checked first by the letters only Vietnamese uses.
"""

import codecs
import unicodedata

from .errors import ERROR, WARNING, Problem

# Letters of Vietnamese that no other Latin-script language uses (after NFC, as cp1258 writes tones as marks).
_VIETNAMESE = set("ăâđêôơưĂÂĐÊÔƠƯ") | {chr(c) for c in range(0x1EA0, 0x1EFA)}
_SAMPLE_BYTES = 1 << 16


def sniff_bom(head: bytes) -> tuple[str, Problem | None]:
    """The codec to read a file with, from its first bytes, and a warning when it starts with a byte-order mark."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", Problem(WARNING, "bom", "file starts with a UTF-8 byte-order mark; removed", line=1)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", Problem(WARNING, "bom", "file is UTF-16 (byte-order mark); read as UTF-16, written as UTF-8", line=1)
    return "utf-8", None


def not_utf8(path) -> Problem | None:
    """One file-level error when most non-ASCII lines of `path` are not UTF-8 (the file is in another encoding),
    naming the likely encoding and the fix; None for a UTF-8 file, even one with a few damaged lines."""
    non_ascii = bad = 0
    first_bad, sample = None, bytearray()
    with open(path, "rb") as raw:
        for line_no, line in enumerate(raw, start=1):
            if line.isascii():
                continue
            non_ascii += 1
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad += 1
                if first_bad is None:
                    first_bad = (line_no, line[exc.start])
                if len(sample) < _SAMPLE_BYTES:
                    sample += line[:_SAMPLE_BYTES]
    if not bad or bad * 2 < non_ascii:
        return None
    line_no, byte = first_bad
    guess = likely_encoding(bytes(sample))
    named = f"it looks like {guess}" if guess else "its encoding could not be guessed"
    fix = guess or "ENCODING"
    return Problem(ERROR, "not_utf8",
                   f"the file is not UTF-8 ({bad} of {non_ascii} lines with non-ASCII bytes are not; the first bad "
                   f"byte is 0x{byte:02X} on line {line_no}); {named}: pass --encoding {fix} (recipe: data.encoding: "
                   f"{fix}), or convert the file: iconv -f {fix} -t UTF-8 FILE > FILE.utf8", line=line_no)


def likely_encoding(sample: bytes) -> str | None:
    """The legacy encoding `sample` most likely is: cp1258 for Vietnamese, else charset-normalizer's best guess."""
    try:
        text = unicodedata.normalize("NFC", sample.decode("cp1258"))
    except UnicodeDecodeError:
        text = ""
    letters = [ch for ch in text if not ch.isascii() and ch.isalpha()]
    if letters and sum(ch in _VIETNAMESE for ch in letters) * 2 >= len(letters):
        return "cp1258"
    from charset_normalizer import from_bytes  # imported here: only a file that is not UTF-8 needs it

    best = from_bytes(sample).best()
    return best.encoding if best is not None and best.encoding not in ("utf_8", "ascii") else None
