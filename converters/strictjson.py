"""JSON parsing that turns the limits of Python's parser into findings the reader can place by record and line.

The stdlib parser fails without saying where on what it cannot hold: nesting deeper than the recursion limit
(RecursionError) and integers longer than sys.get_int_max_str_digits() (a bare ValueError). It also accepts what
JSON (RFC 8259) does not: NaN and Infinity, and numbers beyond a double (1e999 becomes inf), which the converters
would write back out as invalid JSON. Each of these raises `Refused` here, with a problem code and message.
"""

import json
import math
import sys


class Refused(ValueError):
    """Text that cannot be taken as a JSON value; `end` is where the value ends when the parser got that far."""

    def __init__(self, code: str, message: str, end: int | None = None):
        super().__init__(message)
        self.code, self.message, self.end = code, message, end


class StrictDecoder:
    """json.JSONDecoder's decode and raw_decode (same values, same JSONDecodeError) that raise `Refused` too.

    The number hooks only note the first bad number and let parsing finish, so that `end` is known and a JSON
    array reader can go on with the next record. Not thread-safe (one note per decoder).
    """

    def __init__(self):
        self._refusal: tuple[str, str] | None = None
        self._decoder = json.JSONDecoder(parse_int=self._int, parse_float=self._float, parse_constant=self._constant)

    def decode(self, text: str):
        return self._run(self._decoder.decode, text)

    def raw_decode(self, text: str, pos: int = 0):
        return self._run(self._decoder.raw_decode, text, pos)

    def _run(self, parse, *args):
        self._refusal = None
        try:
            result = parse(*args)
        except RecursionError:
            raise Refused("too_deep", "arrays or objects nested too deeply to parse") from None
        if self._refusal is not None:
            end = result[1] if isinstance(result, tuple) else None
            raise Refused(*self._refusal, end=end)
        return result

    def _note(self, message: str) -> None:
        if self._refusal is None:
            self._refusal = ("invalid_number", message)

    def _int(self, digits: str):
        try:
            return int(digits)
        except ValueError:  # over the int_max_str_digits limit
            self._note(f"an integer of {len(digits)} digits ({digits[:12]}...); at most "
                       f"{sys.get_int_max_str_digits()} digits are read")
            return None

    def _float(self, text: str):
        value = float(text)
        if math.isinf(value):
            shown = text if len(text) <= 24 else f"{text[:12]}... ({len(text)} characters)"
            self._note(f"the number {shown} is too large for a double (it would be read as infinity)")
        return value

    def _constant(self, name: str):
        self._note(f"{name} is not valid JSON (a JavaScript literal)")
        return None
