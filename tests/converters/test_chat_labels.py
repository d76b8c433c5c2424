"""Real chat shapes end to end: a small file converted as a recipe converts it, then tokenised by Axolotl's own
chat_template strategy from the recipe's rendered config. Tool calls and weight-1 assistant turns carry labels;
weight-0 turns, user, system and tool-result tokens do not; a template that cannot render tools refuses them."""

import json

import pytest

from ftr.converters.convert import convert_file
from ftr.converters.errors import DataError
from ftr.converters.recipe_options import recipe_scan_options
from ftr.paths import TINY_MODELS_DIR, run_dir
from ftr.recipes import load_recipe, profile, render
from ftr.tiny_models import build

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}


def tool_record(i: int) -> dict:
    return {"tools": [WEATHER], "messages": [
        {"role": "user", "content": f"Thời tiết ở Huế hôm nay thế nào? ({i})"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": f"Huế {i}"})}}]},
        {"role": "tool", "tool_call_id": f"call_{i}", "content": f'{{"temp_c": {20 + i}}}'},
        {"role": "assistant", "content": f"SKIPPED draft {i}", "weight": 0},
        {"role": "user", "content": "Cảm ơn"},
        {"role": "assistant", "content": [{"type": "text", "text": f"Hôm nay Huế {20 + i} độ "},
                                          {"type": "text", "text": "C."}], "weight": 1},
    ]}


def sharegpt_record(i: int) -> dict:
    return {"system": "Bạn là trợ lý.", "conversations": [{"from": "human", "value": f"Câu hỏi {i}?"},
                                                          {"from": "gpt", "value": f"Câu trả lời {i}."}]}


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def tokenised(recipe_id, raw, tmp_path, sets=None, fmt=None):
    """(tokenizer, converted train rows, Axolotl's tokenisation of them) for `raw` converted as the recipe does."""
    from axolotl.cli.config import load_cfg
    from axolotl.loaders import load_tokenizer
    from axolotl.prompt_strategies import load as load_strategy

    recipe = load_recipe(recipe_id)
    stand_in = build(recipe.tokenizer_stand_in, TINY_MODELS_DIR)
    recipe = load_recipe(recipe_id, {**profile("cpu"), "base_model": str(stand_in), **(sets or {})})
    data = tmp_path / "data"
    convert_file(raw, data, fmt=fmt or recipe.data_format, system_prompt=recipe.system_prompt, split=(0.8, 0.1, 0.1),
                 seed=1, requires_alternating=recipe.requires_alternating, **recipe_scan_options(recipe))
    config = tmp_path / "axolotl.yaml"
    config.write_text(render(recipe).replace(str(run_dir(recipe_id) / "data"), str(data)))
    cfg = load_cfg(str(config))
    tokenizer = load_tokenizer(cfg)
    strategy = load_strategy("chat_template", tokenizer, cfg, cfg.datasets[0])
    rows = [json.loads(line) for line in open(data / "train.jsonl", encoding="utf-8")]
    return tokenizer, rows, [strategy.tokenize_prompt(row) for row in rows]


def trained_text(tokenizer, out) -> str:
    return tokenizer.decode([t for t, label in zip(out["input_ids"], out["labels"]) if label != -100])


def test_tool_calls_and_weighted_turns_are_labelled_as_their_weights_say(tmp_path):
    raw = write_jsonl(tmp_path / "tools.jsonl", [tool_record(i) for i in range(10)])
    tokenizer, rows, outs = tokenised("chat-lora", raw, tmp_path)
    for row, out in zip(rows, outs):
        i = int(row["messages"][1]["content"].rsplit("(", 1)[1].rstrip(")"))
        trained = trained_text(tokenizer, out)
        whole = tokenizer.decode(out["input_ids"])
        assert "get_weather" in whole.split("<|im_start|>user")[0], "the tool list is rendered in the system turn"
        assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Huế %d"}}\n</tool_call><|im_end|>' % i \
            in trained, "the tool call is trained"
        assert f"Hôm nay Huế {20 + i} độ C.<|im_end|>" in trained, "the weight-1 turn (two text parts) is trained"
        assert f"SKIPPED draft {i}" in whole and f"SKIPPED draft {i}" not in trained, "weight 0: no labels"
        assert "temp_c" in whole and "temp_c" not in trained, "the tool result is not trained"
        assert "Thời tiết" not in trained and "Cảm ơn" not in trained, "user turns are not trained"


def test_sharegpt_converts_with_its_system_and_trains_the_gpt_turns(tmp_path):
    raw = write_jsonl(tmp_path / "sharegpt.jsonl", [sharegpt_record(i) for i in range(10)])
    tokenizer, rows, outs = tokenised("chat-lora", raw, tmp_path, fmt="sharegpt")
    for row, out in zip(rows, outs):
        assert row["messages"][0] == {"role": "system", "content": "Bạn là trợ lý."}
        answer = row["messages"][-1]["content"]
        assert trained_text(tokenizer, out) == answer + "<|im_end|>"


def test_field_and_role_mapping_from_the_recipe(tmp_path):
    records = [{"dialog": [{"speaker": "customer", "text": f"Hỏi {i}"}, {"speaker": "agent", "text": f"Đáp {i}"}]}
               for i in range(10)]
    raw = write_jsonl(tmp_path / "cs.jsonl", records)
    sets = {"data.fields": {"messages": "dialog", "role": "speaker", "content": "text"},
            "data.roles": {"user": ["customer"], "assistant": ["agent"]}}
    tokenizer, rows, outs = tokenised("chat-lora", raw, tmp_path, sets=sets)
    for row, out in zip(rows, outs):
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert trained_text(tokenizer, out) == row["messages"][-1]["content"] + "<|im_end|>"


def test_a_template_without_tools_refuses_tool_records_naming_why(tmp_path):
    raw = write_jsonl(tmp_path / "tools.jsonl", [tool_record(i) for i in range(3)])
    recipe = load_recipe("mistral-stories")
    with pytest.raises(DataError) as caught:
        convert_file(raw, tmp_path / "out", fmt="chat", system_prompt="s", requires_alternating=True,
                     **recipe_scan_options(recipe))
    assert "[tools_unsupported]" in str(caught.value) and "cannot render" in str(caught.value)


def test_field_mapping_from_the_command_line_is_a_yaml_mapping_and_is_checked():
    from ftr.recipe_files import RecipeError
    from ftr.recipes import parse_sets, split_sets

    sets = parse_sets(split_sets("data.fields={messages: dialog, role: speaker} data.roles={user: [customer]}"))
    recipe = load_recipe("chat-lora", sets)
    assert recipe.data["fields"] == {"messages": "dialog", "role": "speaker"}
    assert recipe.data["roles"] == {"user": ["customer"]}
    for bad in ("data.fields=dialog", "data.fields={bogus: x}"):
        with pytest.raises(RecipeError):
            load_recipe("chat-lora", parse_sets([bad]))
