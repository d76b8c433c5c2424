"""Every problem code the converters can emit is listed, with its severity, in converters/codes.py (and so in
`ftr lint --help`): found by reading the converters' source for the calls that make problems."""

import ast
from pathlib import Path

from ftr.converters.codes import CODES
from ftr.converters.lint import lint_file

CONVERTERS = Path(__file__).resolve().parents[2] / "converters"
# Calls whose first string argument is a problem code (after a severity where they take one).
MAKERS = {"Problem": 1, "_add": 2, "Refused": 0, "refuse": 0}


def emitted() -> dict[str, set[str]]:
    """code -> the severities the source gives it ("?" where the severity is a variable)."""
    found: dict[str, set[str]] = {}
    for path in CONVERTERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name not in MAKERS or len(node.args) <= MAKERS[name]:
                continue
            code = node.args[MAKERS[name]]
            if not (isinstance(code, ast.Constant) and isinstance(code.value, str)):
                continue
            severity = node.args[MAKERS[name] - 1] if MAKERS[name] else None
            level = {"ERROR": "error", "WARNING": "warning"}.get(getattr(severity, "id", None), "?")
            found.setdefault(code.value, set()).add("error" if name in ("Refused", "refuse") else level)
    # text repairs are (code, message) pairs in formats._FIX_MESSAGES
    found.update({"crlf": {"warning"}, "mojibake": {"warning"}, "not_nfc": {"warning"}})
    return found


def test_every_emitted_code_is_listed_with_its_severity():
    missing = {code: levels for code, levels in emitted().items() if code not in CODES}
    assert not missing, f"add to converters/codes.py: {missing}"
    for code, levels in emitted().items():
        listed = set(CODES[code][0].split("|"))
        assert levels - {"?"} <= listed, f"{code}: emitted as {levels}, listed as {CODES[code][0]}"


def test_the_scan_finds_the_codes_it_should():
    found = emitted()
    assert {"missing_field", "not_utf8", "too_deep", "output_holds_input", "tools_unsupported"} <= set(found)


def test_lint_help_lists_every_code():
    from click.testing import CliRunner

    from ftr.cli import main

    result = CliRunner().invoke(main, ["lint", "--help"])
    assert result.exit_code == 0
    for code, (severity, _) in CODES.items():
        assert any(line.split()[:2] == [code, severity] for line in result.output.splitlines()), code


def test_codes_lint_reports_are_listed(write):
    rows = [{"query": "q"}, "not an object", {"query": "x", "keyword": 1}]
    report = lint_file(write("r.jsonl", rows), fmt="rephrase", system_prompt="s")
    assert report.problems and all(p.code in CODES for p in report.problems)
