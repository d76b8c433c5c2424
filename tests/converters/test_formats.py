"""Per-record checks and conversion for the rephrase, instruct and chat formats (in memory, no files)."""

import json
import unicodedata

import pytest

from converters_data import SYSTEM, rephrase
from ftr.converters.formats import check_record, detect_format


def codes(checked, severity=None):
    return [p.code for p in checked.problems if severity is None or p.severity == severity]


def test_detect_format_from_keys():
    assert detect_format({"messages": []}) == "chat"
    assert detect_format(rephrase()) == "rephrase"
    assert detect_format({"instruction": "a", "input": "", "output": "b"}) == "instruct"
    assert detect_format({"prompt": "a", "response": "b"}) == "instruct"
    assert detect_format({"text": "a"}) is None
    assert detect_format([1, 2]) is None


# --- rephrase ---------------------------------------------------------------

def test_rephrase_converts_to_system_user_and_compact_json_target():
    checked = check_record(rephrase(), "rephrase", SYSTEM)
    assert checked.problems == []
    assert checked.label == "is_in_scope=true"
    system, user, assistant = checked.messages
    assert system == {"role": "system", "content": SYSTEM}
    assert user == {"role": "user", "content": "sữa bột cho bé 6 tháng"}
    assert assistant["role"] == "assistant"
    # A JSON string, not an object (LLaMA-Factory #4249 drops object outputs), keys in a fixed order, no \u escapes.
    assert assistant["content"] == (
        '{"keyword": "sữa bột cho bé 6 tháng", "is_in_scope": true, "reasoning": "Người dùng cần sữa bột cho bé.", '
        '"message_banner": "Sữa bột chính hãng", "message_no_result": "Chưa tìm thấy, mẹ thử bỉm nhé!"}')


def test_rephrase_target_key_order_does_not_depend_on_input_order():
    shuffled = dict(reversed(list(rephrase().items())))
    assert check_record(shuffled, "rephrase", SYSTEM).messages == check_record(rephrase(), "rephrase", SYSTEM).messages


def test_rephrase_missing_field_is_an_error():
    row = rephrase()
    del row["keyword"]
    checked = check_record(row, "rephrase", SYSTEM)
    assert checked.messages is None
    assert [p.message for p in checked.problems] == ['missing field "keyword"']


@pytest.mark.parametrize("value", ["true", 1, 0, None, "false"])
def test_is_in_scope_must_be_a_json_boolean(value):
    checked = check_record(rephrase(is_in_scope=value), "rephrase", SYSTEM)
    assert checked.messages is None
    assert codes(checked) == ["wrong_type"]
    assert "must be a JSON boolean" in checked.problems[0].message


def test_text_field_of_wrong_type_is_an_error():
    checked = check_record(rephrase(reasoning=["a", "b"]), "rephrase", SYSTEM)
    assert codes(checked, "error") == ["wrong_type"]


@pytest.mark.parametrize("field, value", [("query", ""), ("query", "  \n")])
def test_empty_or_whitespace_query_is_an_error(field, value):
    checked = check_record(rephrase(**{field: value}), "rephrase", SYSTEM)
    assert codes(checked, "error") == ["empty_text"]


def test_out_of_scope_rows_may_have_an_empty_keyword():
    checked = check_record(rephrase(in_scope=False), "rephrase", SYSTEM)
    assert checked.problems == []
    assert checked.label == "is_in_scope=false"


def test_unknown_field_is_a_warning_and_left_out():
    checked = check_record(rephrase(id=7), "rephrase", SYSTEM)
    assert codes(checked) == ["unknown_field"]
    assert '"id"' not in checked.messages[2]["content"]


def test_non_object_record_is_a_data_type_error():
    for fmt in ("rephrase", "chat", "instruct"):
        assert codes(check_record([1], fmt, SYSTEM)) == ["data_type"]


def test_repairs_are_warnings_and_the_row_holds_repaired_text():
    row = rephrase(query=unicodedata.normalize("NFD", "sữa bột"), reasoning="Tá»•ng sá»‘ máº«u",
                   message_banner="một\r\nhai")
    checked = check_record(row, "rephrase", SYSTEM)
    assert sorted(codes(checked, "warning")) == ["crlf", "mojibake", "not_nfc"]
    assert codes(checked, "error") == []
    assert checked.messages[1]["content"] == "sữa bột"
    target = json.loads(checked.messages[2]["content"])
    assert target["reasoning"] == "Tổng số mẫu"
    assert target["message_banner"] == "một\nhai"


def test_damaged_text_is_an_error():
    checked = check_record(rephrase(reasoning="mô hình � hỏng"), "rephrase", SYSTEM)
    assert codes(checked, "error") == ["damaged_text"]
    assert checked.messages is None


# --- instruct ---------------------------------------------------------------

def test_instruct_joins_instruction_and_input_with_a_blank_line():
    checked = check_record({"instruction": "Dịch câu sau.", "input": "Hello", "output": "Xin chào"}, "instruct", SYSTEM)
    assert checked.messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Dịch câu sau.\n\nHello"},
        {"role": "assistant", "content": "Xin chào"},
    ]


@pytest.mark.parametrize("extra", [{"input": ""}, {"input": None}, {}])
def test_instruct_without_input_uses_the_instruction_alone(extra):
    checked = check_record({"instruction": "Kể chuyện.", "output": "Ngày xưa...", **extra}, "instruct", SYSTEM)
    assert checked.problems == []
    assert checked.messages[1]["content"] == "Kể chuyện."


def test_prompt_response_rows_map_to_instruction_and_output():
    checked = check_record({"prompt": "Ba màu chính là gì?", "response": "Đỏ, xanh và vàng."}, "instruct", SYSTEM)
    assert checked.problems == []
    assert [m["content"] for m in checked.messages] == [SYSTEM, "Ba màu chính là gì?", "Đỏ, xanh và vàng."]


def test_instruct_missing_output_and_wrong_input_type_are_errors():
    checked = check_record({"instruction": "a", "input": 3}, "instruct", SYSTEM)
    assert sorted(codes(checked, "error")) == ["missing_field", "wrong_type"]


def test_instruct_row_system_overrides_the_default():
    checked = check_record({"instruction": "a", "output": "b", "system": "Riêng"}, "instruct", SYSTEM)
    assert checked.messages[0] == {"role": "system", "content": "Riêng"}


# --- chat: the OpenAI cookbook's classes ---------------------------------------

def chat(*messages, **extra):
    return {"messages": [dict(zip(("role", "content"), m)) if isinstance(m, tuple) else m for m in messages], **extra}


GOOD = chat(("system", "Hệ thống"), ("user", "Xin chào"), ("assistant", "Chào bạn"))


def test_valid_chat_row_keeps_its_own_system_message():
    checked = check_record(GOOD, "chat", SYSTEM)
    assert checked.problems == []
    assert checked.messages == GOOD["messages"]


def test_chat_row_without_system_gets_the_system_prompt_prepended():
    checked = check_record(chat(("user", "Hi"), ("assistant", "Hello")), "chat", SYSTEM)
    assert codes(checked) == [] and checked.own_system is False  # the pipeline counts it: system_prompt_added
    assert checked.messages[0] == {"role": "system", "content": SYSTEM}
    assert len(checked.messages) == 3


@pytest.mark.parametrize("record, code", [
    ({"messages": []}, "missing_messages_list"),
    ({"text": "x"}, "missing_messages_list"),
    ({"messages": "hi"}, "missing_messages_list"),
    (chat({"role": "user"}, ("assistant", "a")), "message_missing_key"),
    (chat({"role": "user", "content": "q", "tool": 1}, ("assistant", "a")), "message_unrecognized_key"),
    (chat(("robot", "q"), ("assistant", "a")), "unrecognized_role"),
    (chat(("user", ""), ("assistant", "a")), "missing_content"),
    (chat(("user", 5), ("assistant", "a")), "missing_content"),
    (chat(("user", "q")), "example_missing_assistant_message"),
    (chat("just text", ("assistant", "a")), "data_type"),
])
def test_cookbook_error_classes(record, code):
    checked = check_record(record, "chat", SYSTEM)
    assert code in codes(checked, "error")
    assert checked.messages is None


def test_cookbook_class_name_is_in_the_problem():
    checked = check_record(chat(("robot", "q"), ("assistant", "a")), "chat", SYSTEM)
    error = next(p for p in checked.problems if p.code == "unrecognized_role")
    assert "[unrecognized_role]" in error.format("f.jsonl")


def test_missing_user_message_is_a_warning():
    checked = check_record(chat(("system", "s"), ("assistant", "a")), "chat", SYSTEM)
    assert "missing_user_message" in codes(checked, "warning")


def test_allowed_extra_message_keys_are_accepted():
    record = chat({"role": "user", "content": "q", "name": "an"}, {"role": "assistant", "content": "a", "weight": 1})
    assert codes(check_record(record, "chat", SYSTEM), "error") == []


def test_a_row_whose_every_assistant_turn_has_weight_0_trains_nothing_and_is_refused():
    record = chat({"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0})
    assert codes(check_record(record, "chat", SYSTEM), "error") == ["nothing_to_train"]


def test_non_alternating_roles_error_only_for_mistral_recipes():
    record = chat(("system", "s"), ("user", "a"), ("user", "b"), ("assistant", "c"))
    relaxed = check_record(record, "chat", SYSTEM, requires_alternating=False)
    strict = check_record(record, "chat", SYSTEM, requires_alternating=True)
    assert codes(relaxed) == ["non_alternating_roles"] and relaxed.problems[0].severity == "warning"
    assert relaxed.messages is not None
    assert codes(strict) == ["non_alternating_roles"] and strict.problems[0].severity == "error"
    assert strict.messages is None
    assert "message 2" in strict.problems[0].message


def test_chat_starting_with_assistant_does_not_alternate():
    checked = check_record(chat(("assistant", "a"), ("user", "b"), ("assistant", "c")), "chat", SYSTEM, True)
    assert "non_alternating_roles" in codes(checked, "error")
