"""--recipe: the recipe's format, system prompt, alternation rule, tokenizer and sequence_len."""

from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from converters_data import rephrase_rows
from ftr.converters.cli import lint as lint_command
from ftr.converters.lint import lint_file


class WordTokenizer:
    """Stands in for a transformers tokenizer: one token per whitespace-separated word of the rendered chat."""

    name_or_path = "word-tokenizer"

    def apply_chat_template(self, messages, tokenize=False):
        if any(m["role"] == "assistant" and m["content"] == "boom" for m in messages):
            raise ValueError("template says no")
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages)

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [text.split() for text in texts]}


@dataclass
class FakeRecipe:
    data_format: str = "rephrase"
    system_prompt: str = "hệ thống"
    requires_alternating: bool = False
    sequence_len: int = 40

    def load_tokenizer(self):
        return WordTokenizer()


def test_recipe_supplies_format_and_system_prompt_and_measures_real_tokens(write):
    rows = rephrase_rows(12)
    rows[5]["reasoning"] = "rất dài " * 15  # over 40 tokens, under the 400-character bound
    report = lint_file(write("r.jsonl", rows), recipe=FakeRecipe())
    assert report.summary["format"] == "rephrase"
    assert [(p.index, p.code, p.severity) for p in report.problems] == [(5, "too_long", "warning")]
    tokens = report.summary["tokens"]
    assert tokens["max"] > 40 >= tokens["p50"]
    assert "word-tokenizer" in tokens["counted_with"] and "sequence_len 40" in tokens["counted_with"]


def test_template_that_raises_is_an_error_not_a_crash(write):
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "boom"}]}]
    report = lint_file(write("c.jsonl", rows), recipe=FakeRecipe(data_format="chat"))
    assert [p.code for p in report.errors] == ["template_error"]


def test_recipe_alternation_rule(write):
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                          {"role": "assistant", "content": "c"}]}]
    report = lint_file(write("c.jsonl", rows), recipe=FakeRecipe(data_format="chat", requires_alternating=True))
    assert [p.code for p in report.errors] == ["non_alternating_roles"]


def _real_recipe(recipe_id):
    try:
        from ftr.recipes import load_recipe

        recipe = load_recipe(recipe_id)
        recipe.load_tokenizer()
    except Exception as exc:  # ftr.recipes or the offline tokenizer not available here
        pytest.skip(f"recipe {recipe_id} cannot load its tokenizer: {exc}")
    return recipe


def test_cli_lint_with_a_real_recipe(write):
    recipe = _real_recipe("tiny-rephrase")
    path = write("r.json", rephrase_rows(10), layout="array")
    result = CliRunner().invoke(lint_command, [str(path), "--recipe", recipe.id])
    assert result.exit_code == 0, result.output
    assert "apply_chat_template of the recipe's tokenizer" in result.output
    assert "no system prompt" not in result.output


def test_cli_lint_with_an_unknown_recipe_is_one_clear_line(write):
    pytest.importorskip("ftr.recipes")
    result = CliRunner().invoke(lint_command, [str(write("r.jsonl", rephrase_rows(2))), "--recipe", "no-such-recipe"])
    assert result.exit_code == 1
    assert "Error:" in result.output and "no-such-recipe" in result.output and "Traceback" not in result.output
