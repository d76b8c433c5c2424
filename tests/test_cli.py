"""The `ftr` group: verbs import lazily, and an import error inside a verb's module surfaces as what it is."""

from click.testing import CliRunner

import ftr.cli as cli


def test_help_lists_every_verb_without_importing_them():
    result = CliRunner().invoke(cli.main, ["--help"])
    assert result.exit_code == 0
    assert all(verb in result.output for verb in cli.VERBS)


def test_a_broken_import_inside_a_verb_is_not_reported_as_a_missing_verb(monkeypatch):
    monkeypatch.setitem(cli.VERBS, "broken", "ftr.no_such_module_here:command")
    result = CliRunner().invoke(cli.main, ["broken"])
    assert isinstance(result.exception, ModuleNotFoundError)
    assert "not written yet" not in result.output
