"""Text repair: CRLF, NFD, mojibake (ftfy) and damage that cannot be repaired."""

import unicodedata

import pytest

from converters_data import SEEDS
from ftr.converters.text import repair_text


def test_clean_text_is_untouched():
    for text in ("plain ASCII", "Tổng số mẫu: 24", "识别并解释给定列表中的两个科学理论。", "“trích dẫn” – gạch nối"):
        assert repair_text(text) == (text, (), None)


def test_crlf_becomes_lf():
    assert repair_text("một\r\nhai\rba") == ("một\nhai\nba", ("crlf",), None)


def test_nfd_vietnamese_is_composed():
    nfd = unicodedata.normalize("NFD", "Thủ đô của Pháp là gì?")
    repair = repair_text(nfd)
    assert repair.text == "Thủ đô của Pháp là gì?"
    assert repair.fixes == ("nfd",)
    assert repair.damage is None


@pytest.mark.parametrize("broken, fixed", [
    ("Tá»•ng sá»‘ máº«u", "Tổng số mẫu"),
    ("Cáº¥u trÃºc", "Cấu trúc"),
    ("è¯„ä¼°", "评估"),
])
def test_mojibake_is_repaired(broken, fixed):
    repair = repair_text(broken)
    assert repair.text == fixed
    assert "mojibake" in repair.fixes
    assert repair.damage is None


@pytest.mark.parametrize("damaged, what", [
    ("mô hình � hỏng", "U+FFFD"),
    ("byte \udce1 lạ", "invalid UTF-8 byte 0xE1"),
    ("vá» bảo vệ", "mojibake that ftfy cannot repair"),  # the byte after "á»" was lost: no repair can restore it
])
def test_unrepairable_text_is_damage(damaged, what):
    assert what in repair_text(damaged).damage


def test_seed_mojibake_lines():
    """The seed's own document: ftfy repairs whole lines; lines that lost bytes are reported, never passed on."""
    seed = SEEDS / "001_5323021728f7ea31.txt"
    if not seed.exists():
        pytest.skip(f"{seed} is absent")
    lines = seed.read_text(encoding="utf-8").splitlines()
    stats = next(line for line in lines if "Tá»•ng sá»‘ máº«u" in line)
    assert repair_text(stats) == ("- **Tổng số mẫu**: 24", ("mojibake",), None)
    repairs = [repair_text(line) for line in lines if line.strip()]
    repaired = [r for r in repairs if "mojibake" in r.fixes and r.damage is None]
    damaged = [r for r in repairs if r.damage]
    assert len(repaired) > 50 and damaged
    # Whatever is passed on as repaired holds no mojibake pair any more.
    assert not any("á»" in r.text or "Ã" in r.text for r in repaired)
