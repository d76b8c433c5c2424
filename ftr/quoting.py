"""Quoting for what ftr writes: one-line YAML values (the templates' `y` and `q` filters), one-line header comments
and shell words that run back to the same argument. No value, whatever it holds, can add a key to a rendered YAML
or a line to its header."""

import shlex

import yaml


class _OneLineDumper(yaml.SafeDumper):
    """safe_dump that double-quotes (with escapes) a string it would otherwise spread over several lines."""

    def choose_scalar_style(self):
        style = super().choose_scalar_style()
        return '"' if self.analysis.multiline else style


def yaml_value(value) -> str:
    """A value as a one-line YAML scalar or flow collection: the `y` filter of the templates."""
    text = yaml.dump(value, Dumper=_OneLineDumper, default_flow_style=True, allow_unicode=True, width=10**9)
    return text.removesuffix("\n").removesuffix("\n...")  # the document-end marker PyYAML adds after a plain scalar


def yaml_quoted(value) -> str:
    """yaml_value with every string double-quoted (`"<|im_end|>"`): the `q` filter, for special tokens."""
    text = yaml.dump(value, Dumper=_OneLineDumper, default_style='"', default_flow_style=True, allow_unicode=True,
                     width=10**9)
    return text.removesuffix("\n").removesuffix("\n...")


def _unsafe(char: str) -> bool:
    """True for what would end a YAML comment line early or what YAML refuses in a file: control characters,
    line and paragraph separators (U+0085, U+2028, U+2029), lone surrogates, U+FFFE/U+FFFF."""
    return not (" " <= char <= "~" or "\xa0" <= char <= "\ud7ff" or "\ue000" <= char <= "\ufffd"
                or char >= "\U00010000") or char in "\u2028\u2029"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\", "'": "\\'"}


def _escape(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 argument, as Python decodes argv (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def one_line(text) -> str:
    """text with every character that could break a one-line YAML comment escaped (\\n, \\x1b, \\u2028, ...)."""
    return "".join(_escape(char) if _unsafe(char) else char for char in str(text))


def shell_quote(arg: str) -> str:
    """shlex.quote, or bash's $'...' for an argument holding control or line-separator characters: the command
    stays on one line and still runs as typed."""
    if not any(_unsafe(char) for char in arg):
        return shlex.quote(arg)
    return "$'" + "".join(_escape(char) if _unsafe(char) or char in "\\'" else char for char in arg) + "'"
