"""The chat shapes users bring, as pure functions: ShareGPT, renamed fields and roles, content parts, tool calls
(and the legacy function_call), per-message weights."""

import json

import pytest

from ftr.converters.chatshapes import (rename, sharegpt_to_chat, text_of_parts, tool_calls_of, tools_of,
                                       training_flag)

WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}


def codes(problems):
    return [(p.severity, p.code) for p in problems]


def test_sharegpt_roles_system_and_tools():
    record = {"system": "Be brief.", "tools": json.dumps([WEATHER_TOOL["function"]]), "conversations": [
        {"from": "human", "value": "Weather in Hanoi?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Hanoi"}})},
        {"from": "observation", "value": '{"temp": 31}'},
        {"from": "gpt", "value": "31 degrees."},
    ]}
    chat, problems = sharegpt_to_chat(record)
    assert problems == []
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    assert chat["messages"][2] == {"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Hanoi"}}}]}
    assert chat["tools"] == record["tools"]


def test_sharegpt_unknown_speaker_and_bad_function_call_are_errors():
    chat, problems = sharegpt_to_chat({"conversations": [{"from": "bot", "value": "x"},
                                                         {"from": "function_call", "value": "not json"}]})
    assert codes(problems) == [("error", "unrecognized_role"), ("error", "invalid_tool_call")]


def test_sharegpt_without_conversations_is_an_error():
    _, problems = sharegpt_to_chat({"messages": []})
    assert codes(problems) == [("error", "missing_conversations")]


def test_rename_maps_record_fields_message_fields_and_roles():
    record = {"dialog": [{"speaker": "customer", "text": "hi", "loss_weight": 0},
                         {"speaker": "agent", "text": "hello"}], "sys": "S"}
    out = rename(record, {"messages": "dialog", "role": "speaker", "content": "text", "system": "sys",
                          "weight": "loss_weight"}, {"user": ["customer"], "assistant": ["agent"]})
    assert out == {"messages": [{"role": "user", "content": "hi", "weight": 0},
                                {"role": "assistant", "content": "hello"}], "system": "S"}


def test_rename_question_answer_as_instruct_fields():
    assert rename({"question": "q", "answer": "a"}, {"prompt": "question", "response": "answer"}, None) == \
        {"prompt": "q", "response": "a"}


def test_rename_without_a_mapping_returns_the_record_itself():
    record = {"messages": []}
    assert rename(record, None, None) is record and rename([1], {"messages": "x"}, None) == [1]


def test_text_parts_are_joined_with_a_warning_and_other_parts_refused():
    text, problems = text_of_parts([{"type": "text", "text": "Xin "}, {"type": "text", "text": "chào"}], "message 1")
    assert text == "Xin chào" and codes(problems) == [("warning", "content_parts_joined")]
    text, problems = text_of_parts([{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}], "m")
    assert text is None and codes(problems) == [("error", "unsupported_content_part")]
    assert '"image_url"' in problems[0].message


def test_one_text_part_is_taken_silently():
    assert text_of_parts([{"type": "text", "text": "a"}], "m") == ("a", [])


def test_tool_calls_get_json_text_arguments_and_keep_their_id():
    calls, problems = tool_calls_of({"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Huế"}'}}]}, "m")
    assert problems == []
    assert calls == [{"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Huế"}'},
                      "id": "call_1"}]


def test_legacy_function_call_becomes_a_tool_call_with_a_warning():
    calls, problems = tool_calls_of({"role": "assistant", "function_call": {"name": "f", "arguments": {"a": 1}}}, "m")
    assert calls == [{"type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    assert codes(problems) == [("warning", "legacy_function_call")]


@pytest.mark.parametrize("calls", [[], [{"function": {"arguments": "{}"}}],
                                   [{"function": {"name": "f", "arguments": "{oops"}}],
                                   [{"function": {"name": "f", "arguments": "[1]"}}]])
def test_malformed_tool_calls_are_errors(calls):
    out, problems = tool_calls_of({"role": "assistant", "tool_calls": calls}, "m")
    assert ("error", "invalid_tool_call") in codes(problems)


def test_tools_as_list_as_text_and_legacy_functions():
    assert json.loads(tools_of({"tools": [WEATHER_TOOL]})[0]) == [WEATHER_TOOL]
    assert json.loads(tools_of({"tools": json.dumps([WEATHER_TOOL["function"]])})[0]) == [WEATHER_TOOL]
    assert json.loads(tools_of({"functions": [WEATHER_TOOL["function"]]})[0]) == [WEATHER_TOOL]
    assert tools_of({}) == (None, [])
    assert codes(tools_of({"tools": "{nope"})[1]) == [("error", "invalid_tools")]
    assert codes(tools_of({"tools": [{"type": "function", "function": {}}]})[1]) == [("error", "invalid_tools")]


@pytest.mark.parametrize("weight, flag", [(0, False), (1, True), (1.0, True)])
def test_weight_becomes_the_training_flag(weight, flag):
    assert training_flag({"role": "assistant", "content": "x", "weight": weight}, "m") == (flag, [])


@pytest.mark.parametrize("message", [{"role": "assistant", "weight": 0.5}, {"role": "assistant", "weight": True},
                                     {"role": "user", "weight": 1}])
def test_bad_weights_are_errors(message):
    assert codes(training_flag(message, "m")[1]) == [("error", "invalid_weight")]


def test_no_weight_no_flag():
    assert training_flag({"role": "assistant"}, "m") == (None, [])
