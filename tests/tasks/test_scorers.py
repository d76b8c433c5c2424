"""The tasks' scorers on a few in-memory lines each: every number checked is worked out by hand."""

import json

import pytest

from ftr.tasks import chat, get, of_format, rephrase, score
from ftr.tasks.rephrase import field_completeness
from ftr.tasks.rephrase import score as score_rephrase
from ftr.tasks.text_metrics import extract_first_object, parse_strict

score_text = chat.score


def target(keyword="bình sữa", in_scope=True, reasoning="Khách tìm bình sữa", banner="Bình sữa chính hãng",
           no_result="Không tìm thấy bình sữa"):
    return json.dumps({"keyword": keyword, "is_in_scope": in_scope, "reasoning": reasoning,
                       "message_banner": banner, "message_no_result": no_result}, ensure_ascii=False)


REF_TRUE = target()
REF_FALSE = target(keyword="", in_scope=False, reasoning="Điện thoại không phải sản phẩm mẹ và bé",
                   banner="Cửa hàng chỉ bán đồ mẹ và bé", no_result="Không có sản phẩm")


def test_parse_strict_accepts_only_a_whole_object():
    assert parse_strict('  {"a": 1}\n') == {"a": 1}
    assert parse_strict('```json\n{"a": 1}\n```') is None
    assert parse_strict('Here it is: {"a": 1}') is None
    assert parse_strict('[{"a": 1}]') is None
    assert parse_strict('{"a": 1') is None


def test_extract_first_object_finds_json_inside_prose_and_fences():
    assert extract_first_object('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_first_object('sure: {broken {"b": 2} and {"c": 3}') == {"b": 2}
    assert extract_first_object("no braces") is None


def test_field_completeness_counts_typed_fields():
    assert field_completeness(REF_TRUE) == 1.0
    # is_in_scope as the string "true" and a missing banner: 3 of 5 fields right
    partial = json.dumps({"keyword": "x", "is_in_scope": "true", "reasoning": "r", "message_no_result": "n"})
    assert field_completeness(partial) == pytest.approx(3 / 5)
    # a number where a string belongs does not count, and neither does 1 for a boolean
    assert field_completeness(json.dumps({"keyword": 5, "is_in_scope": 1, "reasoning": "r",
                                          "message_banner": "b", "message_no_result": "n"})) == pytest.approx(3 / 5)
    assert field_completeness("```json\n" + REF_TRUE + "\n```") == 0.0


def test_json_rates_strict_vs_extractable():
    preds = [REF_TRUE, "```json\n" + REF_TRUE + "\n```", "Kết quả: " + REF_TRUE, "not json"]
    result = score_rephrase([REF_TRUE] * 4, preds)
    assert result["n"] == 4
    assert result["json_valid_rate"] == 0.25
    assert result["json_extractable_rate"] == 0.75
    assert result["field_completeness"] == 0.25


def test_is_in_scope_per_class_and_confusion():
    refs = [REF_TRUE, REF_TRUE, REF_TRUE, REF_FALSE, REF_FALSE]
    preds = [REF_TRUE,                      # true  -> true
             target(in_scope=False),        # true  -> false
             "garbage",                     # true  -> invalid (wrong for its class, no false positive)
             REF_FALSE,                     # false -> false
             target(in_scope="false")]      # false -> invalid: a string is not a JSON boolean
    result = score_rephrase(refs, preds)
    assert result["is_in_scope_accuracy"] == pytest.approx(2 / 5)
    assert result["per_class"]["true"] == {"precision": 1.0, "recall": pytest.approx(1 / 3),
                                           "f1": pytest.approx(0.5), "support": 3}
    assert result["per_class"]["false"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert result["confusion"] == {"true": {"true": 1, "false": 1, "invalid": 1},
                                   "false": {"true": 0, "false": 1, "invalid": 1}}


def test_keyword_exact_match_uses_nfc_and_strip():
    decomposed = "bình sữa".replace("ì", "i\u0300")  # the same text in NFD form
    assert decomposed != "bình sữa"
    preds = [target(keyword=f"  {decomposed} "), target(keyword="binh sua"), "```" + REF_TRUE + "```"]
    assert score_rephrase([REF_TRUE] * 3, preds)["keyword_exact_match"] == pytest.approx(1 / 3)


def test_text_field_bleu_and_chrf():
    perfect = score_rephrase([REF_TRUE, REF_FALSE], [REF_TRUE, REF_FALSE])
    assert perfect["bleu"]["reasoning"] == pytest.approx(100.0)
    assert perfect["chrf"]["message_banner"] == pytest.approx(100.0)
    # an unparseable prediction contributes an empty hypothesis
    broken = score_rephrase([REF_TRUE, REF_FALSE], [REF_TRUE, "oops"])
    assert 0 < broken["chrf"]["reasoning"] < 100
    assert broken["bleu"]["message_no_result"] < perfect["bleu"]["message_no_result"]


def test_rephrase_rejects_bad_references_and_length_mismatch():
    with pytest.raises(ValueError, match="reference 0"):
        score_rephrase(["not json"], [REF_TRUE])
    with pytest.raises(ValueError, match="2 references but 1 predictions"):
        score_rephrase([REF_TRUE, REF_TRUE], [REF_TRUE])
    with pytest.raises(ValueError, match="no references"):
        score_rephrase([], [])


def test_score_text():
    refs = ["Bé Na trồng cây xanh.", "Con rùa bơi về biển lớn."]
    preds = ["  Bé Na trồng cây xanh. ", "Con rùa bơi."]
    result = score_text(refs, preds)
    assert result["n"] == 2
    assert result["exact_match"] == 0.5
    assert result["length_ratio"] == pytest.approx((21 + 12) / (21 + 24))
    assert 0 < result["bleu"] < 100 and 0 < result["chrf"] < 100
    assert result["bleu_tokenize"] == "13a"
    assert score_text(refs, refs)["bleu"] == pytest.approx(100.0)


def test_score_text_tokenizes_chinese_by_character():
    refs = ["市盈率是股价除以每股收益。"]
    # one wrong character out of 12: BLEU on "13a" tokens would be 0 (the sentence is one token)
    assert score_text(refs, ["市盈率是股价除以每股利益。"])["bleu"] > 50


def test_score_dispatch():
    assert score("chat", ["a b"], ["a b"])["task"] == "chat"
    assert score("text", ["a b"], ["a b"])["task"] == "chat"  # `ftr score --task text`, the old name
    assert get("text") is chat and get("rephrase") is rephrase
    assert of_format("rephrase") is rephrase and of_format("chat") is chat and of_format("instruct") is chat
    with pytest.raises(ValueError, match="unknown task 'nope'; expected one of rephrase, chat"):
        score("nope", ["a"], ["a"])
