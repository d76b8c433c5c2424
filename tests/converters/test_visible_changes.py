"""Changes to a user's data are visible (issue 13): empty rephrase target strings are kept, the system prompt is added
(or not, with data.system_prompt: null) with one count per file, a file of another format is one fatal line, and
template placeholders are counted or filled, each with a warning; kept + rejected == records read throughout."""

import json
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from converters_data import SYSTEM, rephrase
from ftr.converters.cli import convert as convert_command
from ftr.converters.convert import convert_file
from ftr.converters.errors import DataError
from ftr.converters.formats import check_record
from ftr.converters.lint import lint_file
from ftr.converters.pipeline import MISMATCH_WITHIN
from ftr.converters.recipe_options import recipe_scan_options


def codes(checked, severity=None):
    return [p.code for p in checked.problems if severity is None or p.severity == severity]


def rows_of(outdir) -> dict:
    return {row["id"]: row for name in ("train", "val", "test")
            for line in (outdir / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
            for row in [json.loads(line)]}


def accounted(manifest) -> bool:
    return manifest["kept"] + len(manifest["rejected"]) == manifest["input"]["records"]


def chat(*turns, **extra) -> dict:
    return {"messages": [{"role": role, "content": text} for role, text in turns], **extra}


@dataclass
class FakeRecipe:
    """What lint_file reads of a recipe, with a tokenizer-free default (lint measures approximately then)."""

    data_format: str = "rephrase"
    system_prompt: str | None = SYSTEM
    requires_alternating: bool = False
    sequence_len: int = 4096
    data: dict = field(default_factory=dict)

    def load_tokenizer(self):
        return None


# 1. Empty text fields are valid in a rephrase target.

@pytest.mark.parametrize("key", ["keyword", "reasoning", "message_banner", "message_no_result"])
def test_an_empty_target_string_is_kept(key):
    checked = check_record(rephrase(in_scope=False, **{key: ""}), "rephrase", SYSTEM)
    assert codes(checked, "error") == [] and checked.messages is not None
    assert json.loads(checked.messages[-1]["content"])[key] == ""


def test_an_in_scope_row_with_an_empty_keyword_is_kept_with_a_warning():
    checked = check_record(rephrase(in_scope=True, keyword=""), "rephrase", SYSTEM)
    assert codes(checked) == ["empty_keyword_in_scope"] and checked.messages is not None
    assert codes(check_record(rephrase(in_scope=False, keyword=""), "rephrase", SYSTEM)) == []


@pytest.mark.parametrize("query", ["", " \n"])
def test_an_empty_query_is_still_an_error(query):
    checked = check_record(rephrase(query), "rephrase", SYSTEM)
    assert codes(checked, "error") == ["empty_text"] and checked.messages is None


def test_out_of_scope_rows_with_empty_banners_all_convert(write, tmp_path):
    records = [rephrase(f"q{i}", in_scope=i % 2 == 0, **({} if i % 2 == 0 else {"message_banner": ""}))
               for i in range(10)]
    manifest = convert_file(write("r.jsonl", records), tmp_path / "out", system_prompt=SYSTEM)
    assert manifest["kept"] == 10 and manifest["rejected"] == [] and accounted(manifest)
    assert manifest["outputs"]["train"]["classes"]["is_in_scope=false"] > 0


# 2. System prompts: a row's own is kept; the added one is counted once per file; null adds none.

def test_own_system_messages_are_kept_in_every_format():
    own = "Own prompt."
    cases = [(chat(("system", own), ("user", "u"), ("assistant", "a")), "chat"),
             ({"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}], "system": own},
              "sharegpt"),
             ({"instruction": "u", "output": "a", "system": own}, "instruct")]
    for record, fmt in cases:
        checked = check_record(record, fmt, SYSTEM)
        assert checked.own_system is True and checked.messages[0] == {"role": "system", "content": own}, fmt
        assert [m["role"] for m in checked.messages].count("system") == 1


def test_the_added_system_prompt_is_one_warning_with_the_count(write, tmp_path):
    records = [chat(("user", f"u{i}"), ("assistant", "a")) for i in range(3)]
    records.append(chat(("system", "Own."), ("user", "u9"), ("assistant", "a")))
    report = lint_file(write("c.jsonl", records), system_prompt=SYSTEM)
    assert [p.code for p in report.warnings] == ["system_prompt_added"]
    added = report.warnings[0]
    assert added.index is None and "added to 3 of 4 rows that had none" in added.message and SYSTEM in added.message

    manifest = convert_file(write("c2.jsonl", records), tmp_path / "out", system_prompt=SYSTEM)
    assert manifest["warnings_by_class"] == {"system_prompt_added": 1} and accounted(manifest)
    rows = rows_of(tmp_path / "out")
    assert rows[0]["messages"][0] == {"role": "system", "content": SYSTEM}
    assert rows[3]["messages"][0] == {"role": "system", "content": "Own."}


def test_rephrase_rows_always_get_the_task_prompt_without_a_warning(write):
    report = lint_file(write("r.jsonl", [rephrase(f"q{i}") for i in range(3)]), system_prompt=SYSTEM)
    assert report.problems == []


@pytest.mark.parametrize("fmt, record", [
    ("chat", chat(("user", "u"), ("assistant", "a"))),
    ("instruct", {"prompt": "u", "response": "a"}),
    ("rephrase", rephrase("u")),
])
def test_no_system_prompt_adds_none_and_says_why_that_matters(write, tmp_path, fmt, record):
    manifest = convert_file(write("d.jsonl", [record]), tmp_path / "out", fmt=fmt, system_prompt=None,
                            split=(1, 0, 0))
    (row,) = rows_of(tmp_path / "out").values()
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert manifest["warnings_by_class"] == {"no_system_prompt": 1} and manifest["system_prompt"] is None
    (warning,) = lint_file(write("d2.jsonl", [record]), fmt=fmt).warnings
    assert warning.code == "no_system_prompt" and "1 of 1 rows" in warning.message
    assert "Qwen2.5's chat template writes its own default system prompt" in warning.message


def test_no_system_prompt_keeps_a_rows_own_and_warns_only_about_the_others(write):
    records = [chat(("system", "Own."), ("user", "u"), ("assistant", "a"))]
    assert lint_file(write("c.jsonl", records), system_prompt=None).problems == []


def test_a_recipe_may_set_the_system_prompt_to_null():
    from ftr.recipes import load_recipe, parse_sets

    assert parse_sets(["data.system_prompt=null"]) == {"data.system_prompt": None}
    assert parse_sets(["data.system_prompt=null please"]) == {"data.system_prompt": "null please"}
    assert load_recipe("chat-lora", sets={"data.system_prompt": None}).system_prompt is None


# 3. A file of another known format is one fatal line with the fix.

def prompt_response(n):
    return [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(n)]


def test_another_format_is_one_fatal_line_naming_the_fix(write):
    n = MISMATCH_WITHIN * 3
    report = lint_file(write("i.jsonl", prompt_response(n)), fmt="rephrase", system_prompt=SYSTEM)
    assert [p.code for p in report.problems] == ["format_mismatch"]
    assert report.errors[0].message == ("this file looks like `instruct` ({prompt, response}); --format says "
                                        "`rephrase`: pass `--format instruct`")
    assert report.summary["records"] == n and report.summary["fatal"] == "format_mismatch"


def test_a_recipes_format_mismatch_names_the_set_override(write):
    report = lint_file(write("i.jsonl", prompt_response(3)), recipe=FakeRecipe())
    assert [p.message for p in report.problems] == [
        "this file looks like `instruct` ({prompt, response}); the recipe expects `rephrase`: add "
        "`--set data.format=instruct`"]
    explicit = lint_file(write("j.jsonl", prompt_response(3)), fmt="chat", recipe=FakeRecipe())
    assert explicit.errors[0].message.endswith("pass `--format instruct`")


def test_one_record_of_the_expected_format_means_no_mismatch(write):
    report = lint_file(write("m.jsonl", [*prompt_response(3), rephrase("q")]), fmt="rephrase", system_prompt=SYSTEM)
    assert {p.code for p in report.errors} == {"missing_field"}
    assert report.summary["valid"] == 1


def test_convert_refuses_a_mismatched_file_with_one_line(write, tmp_path):
    path = write("i.jsonl", prompt_response(5))
    with pytest.raises(DataError) as caught:
        convert_file(path, tmp_path / "out", fmt="chat", system_prompt=SYSTEM, drop_invalid=True)
    assert caught.value.fatal and [p.code for p in caught.value.problems] == ["format_mismatch"]
    result = CliRunner().invoke(convert_command, [str(path), "--format", "sharegpt", "-o", str(tmp_path / "o2")])
    assert result.exit_code == 1 and result.output.count("[format_mismatch]") == 1
    assert "missing_conversations" not in result.output and not (tmp_path / "o2").exists()


# 4. Template placeholders: counted, or filled by data.placeholders, each in one file-level warning.

IDENTITY = [{"instruction": "hi", "output": "Hello! I am {{name}}, an AI assistant developed by {{author}}."},
            {"instruction": "who are you?", "output": "I am {{ name }}."},
            {"instruction": "2+2?", "output": "4"}]


def test_placeholders_left_in_targets_are_one_warning_with_the_count(write, tmp_path):
    report = lint_file(write("id.json", IDENTITY, layout="array"), system_prompt=SYSTEM)
    (warning,) = [p for p in report.warnings if p.code == "template_placeholder"]
    assert "2 rows" in warning.message and "{{name}} 2 times, {{author}} 1 times" in warning.message
    assert "data.placeholders: {name: ..., author: ...}" in warning.message
    convert_file(write("id2.json", IDENTITY, layout="array"), tmp_path / "out", system_prompt=SYSTEM)
    assert rows_of(tmp_path / "out")[1]["messages"][-1]["content"] == "I am {{ name }}."  # unchanged


def test_data_placeholders_fill_them_and_every_fill_is_counted(write, tmp_path):
    fill = {"name": "Mây", "author": 'Shop "A"'}
    manifest = convert_file(write("id.json", IDENTITY, layout="array"), tmp_path / "out", system_prompt=SYSTEM,
                            placeholders=fill)
    rows = rows_of(tmp_path / "out")
    assert rows[0]["messages"][-1]["content"] == 'Hello! I am Mây, an AI assistant developed by Shop "A".'
    assert rows[1]["messages"][-1]["content"] == "I am Mây."
    assert manifest["warnings_by_class"] == {"placeholders_filled": 1, "system_prompt_added": 1} and accounted(manifest)
    (filled,) = [p for p in lint_file(write("id2.json", IDENTITY, layout="array"), system_prompt=SYSTEM,
                                      placeholders=fill).warnings if p.code == "placeholders_filled"]
    assert "{{name}} 2 times, {{author}} 1 times in 2 rows" in filled.message


def test_a_filled_rephrase_target_stays_valid_json():
    checked = check_record(rephrase(message_banner='{{shop}} "sale"'), "rephrase", SYSTEM, placeholders={"shop": 'Shop "B"\\'})
    assert json.loads(checked.messages[-1]["content"])["message_banner"] == 'Shop "B"\\ "sale"'
    assert checked.filled == {"shop": 1} and not checked.unfilled


def test_the_recipe_key_is_checked_and_passed_on():
    from ftr.recipes import DATA_KEYS, RecipeError, load_recipe

    assert "data.placeholders" in DATA_KEYS
    recipe = load_recipe("chat-lora", sets={"data.placeholders": {"name": "Mây"}})
    assert recipe_scan_options(recipe)["placeholders"] == {"name": "Mây"}
    with pytest.raises(RecipeError, match="placeholders"):
        load_recipe("chat-lora", sets={"data.placeholders": {"not a name": "x"}})


def test_lint_with_a_recipe_fills_its_placeholders(write):
    recipe = FakeRecipe(data_format="instruct", data={"placeholders": {"name": "Mây", "author": "Shop"}})
    report = lint_file(write("id.json", IDENTITY, layout="array"), recipe=recipe)
    assert sorted(p.code for p in report.warnings) == ["placeholders_filled", "system_prompt_added"]


# The invariant, over a file that mixes every change.

def test_every_record_is_kept_or_rejected_and_every_change_is_a_warning(write, tmp_path):
    records = [*IDENTITY, chat(("user", "u"), ("assistant", "a")), rephrase("q")]
    manifest = convert_file(write("mix.jsonl", records), tmp_path / "out", fmt="instruct", system_prompt=SYSTEM,
                            drop_invalid=True, placeholders={"name": "Mây"})
    assert accounted(manifest) and manifest["input"]["records"] == 5 and manifest["kept"] == 3
    assert {"placeholders_filled", "template_placeholder", "system_prompt_added"} <= set(manifest["warnings_by_class"])
