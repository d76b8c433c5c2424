#!/usr/bin/env python3
"""Generate the example datasets shipped in ``data/examples/``.

This script is the single source of truth for the small, realistic example
datasets used by the ``ftr`` docs, smoke tests and benchmarks.  It uses only
the Python standard library and a fixed seed, so running it again rewrites the
shipped files byte for byte:

* ``rephrase_vi.json``   - a JSON array of search-query rewrite rows for a
  Vietnamese mother-and-baby e-commerce shop (600 rows, ~4% out of scope).
  Keys, in order: ``query``, ``keyword``, ``is_in_scope``, ``reasoning``,
  ``message_banner``, ``message_no_result``.
* ``gon_stories_vi.jsonl`` - 24 chat-format rows (system/user/assistant) that
  turn an environmental card-game card into a short story for children.
* ``domain_zh.jsonl`` - Chinese financial-analyst instruction data
  (``instruction``/``input``/``output``).

Usage::

    python data/examples/make_examples.py                  # rewrite the 3 shipped files
    python data/examples/make_examples.py --outdir DIR     # write the 3 files into DIR
    python data/examples/make_examples.py --rephrase-rows 100000 --seed 7 -o big.json

The rephrase generator is synthetic but consistent: each row samples a
product (category, brand, size, age, ...), builds the clean keyword from it and
then derives a noisy query (diacritics dropped, brand typos, abbreviations,
filler words, price filters, mixed word order); the reasoning lists exactly
the corrections that were applied.  Every query is unique (case- and
whitespace-insensitively; duplicates are re-drawn), so no query ever appears
with two different targets, and over-long rows are re-drawn so each row stays
under ~200 tokens.  Everything is driven by one ``random.Random(seed)``.
Large rephrase files are written in a streaming fashion (only the set of
queries already used is kept in memory); 100,000 rows take a few seconds.
All text is NFC-normalised UTF-8 without BOM, with LF line endings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from functools import lru_cache
from random import Random
from typing import IO, Iterator

DEFAULT_SEED = 20240607
DEFAULT_REPHRASE_ROWS = 600
OUT_OF_SCOPE_SHARE = 0.04
MAX_TRIES_PER_ROW = 500
# Rows whose text fields together are longer than this are re-drawn.  With the
# JSON keys and punctuation this keeps every row under 200 tokens for common
# BPE tokenizers (about 2.5-3 characters per token for Vietnamese).
MAX_ROW_TEXT_CHARS = 380

REPHRASE_FILE = "rephrase_vi.json"
STORIES_FILE = "gon_stories_vi.jsonl"
DOMAIN_ZH_FILE = "domain_zh.jsonl"

REPHRASE_KEYS = (
    "query",
    "keyword",
    "is_in_scope",
    "reasoning",
    "message_banner",
    "message_no_result",
)


# ---------------------------------------------------------------------------
# Text helpers
# ---------------------------------------------------------------------------


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


@lru_cache(maxsize=None)
def strip_diacritics(text: str) -> str:
    """'sữa bột đồ' -> 'sua bot do' (what users type on a phone without VNI/Telex)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    decomposed = unicodedata.normalize("NFD", text)
    return nfc("".join(ch for ch in decomposed if not unicodedata.combining(ch)))


def cap_first(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def query_key(query: str) -> str:
    """Key used for de-duplication: case- and whitespace-insensitive."""
    return " ".join(query.casefold().split())


def row_text_chars(row: dict) -> int:
    return sum(len(v) for v in row.values() if isinstance(v, str))


def join_vi(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " và " + items[-1]


def q(text: str) -> str:
    return f"“{text}”"


# ---------------------------------------------------------------------------
# Rephrase data: vocabulary
# ---------------------------------------------------------------------------

# Misspellings users actually type for brand names (ASCII, lower case).
BRAND_TYPOS: dict[str, list[str]] = {
    "Meiji": ["meji", "meij", "mejji"],
    "Aptamil": ["aptamin", "aptamill", "aptamyl"],
    "Similac": ["similak", "simillac", "similat"],
    "Friso": ["frisso", "frico"],
    "Enfamil": ["enfamin", "efamil"],
    "Morinaga": ["morigana", "morinaka"],
    "Glico": ["gilco", "glicco"],
    "Vinamilk": ["vinamil", "vinamik"],
    "Nutifood": ["nutifod", "nutyfood"],
    "Abbott Grow": ["abbot grow", "abott grow"],
    "HiPP": ["hip", "hiip"],
    "Enfamama": ["enfamam", "enfa mama"],
    "Similac Mom": ["similac mum", "similak mom"],
    "Frisomum": ["friso mum", "frisomom"],
    "Anmum": ["amnum", "anmun"],
    "Huggies": ["hugies", "huggie", "hugggies"],
    "Merries": ["meries", "merris", "merie"],
    "Bobby": ["boby", "bobbi"],
    "Moony": ["mony", "moonie"],
    "Pampers": ["pamper", "pampes"],
    "Molfix": ["molfic", "mofix"],
    "Mamamy": ["mamami", "mamamyy"],
    "Pigeon": ["pigion", "pegion", "pigeo"],
    "Comotomo": ["comotono", "commotomo", "comomoto"],
    "Hegen": ["hegan", "heghen"],
    "Philips Avent": ["philip avent", "phillips avent"],
    "Moyuum": ["moyum", "mayuum"],
    "Tommee Tippee": ["tomee tippee", "tommy tippee"],
    "Chicco": ["chico", "chicoo"],
    "Joie": ["joei", "jioe"],
    "Combi": ["conbi", "combbi"],
    "Aprica": ["aprika", "apica"],
    "Seebaby": ["seebay", "sebaby"],
    "Zaracos": ["zaracoss", "zaraco"],
    "Mastela": ["mastella", "masterla"],
    "Hanbei": ["hanbey", "hambei"],
    "Umoo": ["umo", "umooo"],
    "Nous": ["nou", "nouse"],
    "Lullaby": ["lulaby", "lullabi"],
    "Hrnee": ["hrne", "hrnee"],
    "Fisher-Price": ["fiser price", "fisher prize"],
    "Lego Duplo": ["lego dupplo", "lego dublo"],
    "Winfat": ["winphat", "winfatt"],
    "Munchkin": ["munkin", "munchkim"],
    "Medela": ["medala", "medella"],
    "Spectra": ["spetra", "spectre"],
    "Unimom": ["unimon", "unimum"],
    "Fatzbaby": ["fatbaby", "fazbaby"],
    "Cimilre": ["cimire", "cimilee"],
    "Lansinoh": ["lansino", "lanisoh"],
    "Ostelin": ["ostelim", "osteline"],
    "BioGaia": ["biogaya", "bio gaja"],
    "Pediakid": ["pediakids", "pedikid"],
    "Elevit": ["elevid", "elavit"],
    "Blackmores": ["blackmore", "blacmores"],
    "Obimin": ["obimim", "obimine"],
    "Pregnacare": ["pregnancare", "pregnacar"],
    "Mamaway": ["mamawey", "mamway"],
    "Lactacyd": ["lactacid", "lactasyd"],
    "Mustela": ["mustella", "mutela"],
    "Bepanthen": ["bepanthel", "bepantene"],
    "Sudocrem": ["sudocream", "sudocrim"],
    "Heinz": ["hein", "heinzs"],
    "Ridielac": ["ridilac", "ridielak"],
    "Wakodo": ["wakado", "wakodoo"],
    "Ergobaby": ["ergobay", "egrobaby"],
}

# Aliases / shorthand that should be normalised to the official brand name.
BRAND_ALIASES: dict[str, list[str]] = {
    "Philips Avent": ["avent"],
    "Dr. Brown's": ["dr brown", "dr browns"],
    "Goo.n": ["goon", "goo n"],
    "Carter's": ["carter", "carters"],
    "Fisher-Price": ["fisher price"],
    "Fatzbaby": ["fatz baby", "fatz"],
    "Real Bubee": ["realbubee", "real bubee"],
    "Bio Island": ["bioisland"],
    "Nature's Way": ["natures way", "nature way"],
    "ChildLife": ["child life"],
    "Bio-Oil": ["bio oil", "biooil"],
    "Palmer's": ["palmers", "palmer"],
    "Mama's Choice": ["mamas choice", "mama choice"],
    "Johnson's Baby": ["johnson baby", "johnsons baby"],
    "Moaz BéBé": ["moaz bebe", "moaz"],
    "Nestlé": ["nestle"],
    "VTech": ["v tech"],
    "Seebaby": ["see baby"],
    "Arau Baby": ["arau"],
}

# Tone / spelling mistakes on Vietnamese syllables (only used when the user
# typed with diacritics, otherwise the mistake would be invisible).
TONE_TYPOS: dict[str, str] = {
    "bỉm": "bĩm",
    "sữa": "sửa",
    "tã": "tả",
    "dặm": "giặm",
    "đẩy": "đẫy",
    "tuổi": "tuỗi",
    "sơ": "xơ",
    "chơi": "trơi",
    "gỗ": "gổ",
    "ngủ": "ngũ",
    "rạn": "dạn",
    "bầu": "bàu",
    "vắt": "vắc",
    "nướu": "nứu",
}

PREFIX_FILLERS = ["mua", "tìm", "cần mua", "cho mình hỏi", "có bán", "tư vấn"]
SUFFIX_FILLERS = [
    "giá rẻ",
    "chính hãng",
    "loại nào tốt",
    "tốt nhất",
    "hàng auth",
    "giá bao nhiêu",
    "khuyến mãi",
    "sale",
    "freeship",
    "loại tốt",
    "mới nhất",
    "review",
    "hàng xịn",
    "ship nhanh",
]

# price tiers: (display used in banner, query surfaces)
PRICES: dict[str, list[tuple[str, list[str]]]] = {
    "low": [
        ("dưới 100k", ["dưới 100k", "<100k", "dưới 100 nghìn"]),
        ("dưới 200k", ["dưới 200k", "dưới 200 nghìn", "<200k"]),
        ("khoảng 150k", ["tầm 150k", "khoảng 150k"]),
    ],
    "mid": [
        ("dưới 300k", ["dưới 300k", "<300k", "dưới 300 nghìn"]),
        ("dưới 500k", ["dưới 500k", "<500k", "dưới 500 nghìn"]),
        ("khoảng 400k", ["tầm 400k", "khoảng 400k", "tầm 400 nghìn"]),
        ("dưới 1 triệu", ["dưới 1tr", "dưới 1 triệu"]),
    ],
    "high": [
        ("dưới 1 triệu", ["dưới 1tr", "dưới 1 triệu", "<1tr"]),
        ("từ 1-2 triệu", ["1-2tr", "từ 1 đến 2 triệu", "tầm 1-2 triệu"]),
        ("dưới 3 triệu", ["dưới 3tr", "dưới 3 triệu"]),
        ("khoảng 5 triệu", ["tầm 5tr", "khoảng 5 triệu"]),
    ],
}

DIAPER_SIZES = [
    ("NB", "dưới 5kg"),
    ("S", "4-8kg"),
    ("M", "6-11kg"),
    ("L", "9-14kg"),
    ("XL", "12-17kg"),
    ("XXL", "15-25kg"),
]


def diaper_size_for(kg: int) -> str:
    for limit, size in ((5, "NB"), (7, "S"), (10, "M"), (13, "L"), (16, "XL")):
        if kg < limit:
            return size
    return "XXL"


# --- age / target phrases --------------------------------------------------
# Each option: (canonical keyword phrase, [(query surface, note template|None)], description)


def age_months(n: int):
    canon = f"cho bé {n} tháng"
    return (
        canon,
        [
            (canon, None),
            (f"bé {n} tháng", None),
            (f"{n} tháng", None),
            (f"cho con {n} tháng", None),
            (f"trẻ {n} tháng", None),
            (f"{n}th", "hiểu {s} là " + f"{n} tháng tuổi"),
            (f"{n}m", "hiểu {s} là " + f"{n} tháng tuổi"),
        ],
        f"bé {n} tháng tuổi",
    )


def age_years(n: int):
    canon = f"cho bé {n} tuổi"
    return (
        canon,
        [
            (canon, None),
            (f"bé {n} tuổi", None),
            (f"{n} tuổi", None),
            (f"cho con {n} tuổi", None),
            (f"trẻ {n} tuổi", None),
            (f"{n}t", "hiểu {s} là " + f"{n} tuổi"),
            (f"{n}y", "hiểu {s} là " + f"{n} tuổi"),
        ],
        f"bé {n} tuổi",
    )


def age_range(a: int, b: int, unit: str):
    canon = f"cho bé {a}-{b} {unit}"
    short = "t" if unit == "tuổi" else "th"
    return (
        canon,
        [
            (canon, None),
            (f"{a}-{b} {unit}", None),
            (f"bé {a} đến {b} {unit}", "chuẩn hóa {s} thành " + q(f"{a}-{b} {unit}")),
            (f"{a}-{b}{short}", "hiểu {s} là " + f"{a}-{b} {unit}"),
        ],
        f"bé {a}-{b} {unit}",
    )


def age_newborn():
    canon = "cho bé sơ sinh"
    return (
        canon,
        [
            (canon, None),
            ("sơ sinh", None),
            ("cho trẻ sơ sinh", None),
            ("newborn", "hiểu {s} là trẻ sơ sinh"),
            ("cho bé mới sinh", "chuẩn hóa {s} thành “sơ sinh”"),
        ],
        "trẻ sơ sinh",
    )


def age_over(n: int):
    canon = f"cho bé trên {n} tuổi"
    return (
        canon,
        [(canon, None), (f"trên {n} tuổi", None), (f"{n}+", "hiểu {s} là " + f"trên {n} tuổi")],
        f"bé trên {n} tuổi",
    )


def target(canon: str, surfaces: list[str], desc: str):
    return (canon, [(s, None if s == canon else "chuẩn hóa {s} thành " + q(canon)) for s in surfaces], desc)


KID_TARGET = target("cho bé", ["cho bé", "cho trẻ", "trẻ em", "cho con"], "trẻ nhỏ")
PREGNANT = target("cho mẹ bầu", ["cho mẹ bầu", "bà bầu", "cho bà bầu", "mẹ bầu"], "mẹ bầu")
POSTPARTUM = target("cho mẹ sau sinh", ["cho mẹ sau sinh", "sau sinh", "mẹ sau sinh"], "mẹ sau sinh")
NURSING = target("cho con bú", ["cho con bú", "mẹ cho con bú", "mẹ đang cho con bú"], "mẹ đang cho con bú")

AGES_MILK = [age_newborn(), age_range(0, 6, "tháng"), age_range(6, 12, "tháng"), age_months(6),
             age_months(9), age_years(1), age_years(2), age_years(3), age_range(1, 3, "tuổi"), age_over(3)]
AGES_BOTTLE = [age_newborn(), age_range(0, 3, "tháng"), age_months(3), age_months(6), age_years(1)]
AGES_STROLLER = [age_newborn(), age_months(6), age_range(0, 3, "tuổi"), age_years(1)]
AGES_FEEDING = [age_months(6), age_months(7), age_years(1), age_range(1, 3, "tuổi")]
AGES_CLOTHES = [age_newborn(), age_range(0, 3, "tháng"), age_range(3, 6, "tháng"),
                age_range(6, 12, "tháng"), age_years(1)]
AGES_TOYS = [age_months(3), age_months(6), age_years(1), age_years(2), age_years(3), age_range(1, 3, "tuổi")]
AGES_BABY_TOYS = [age_newborn(), age_months(3), age_months(6)]
AGES_TODDLER_TOYS = [age_years(1), age_years(2), age_years(3), age_range(1, 3, "tuổi")]
AGES_SUPPLEMENT = [age_newborn(), age_months(6), age_years(1), age_years(2), age_over(3)]
AGES_CARE = [age_newborn(), age_months(6), age_years(1)]


def P(noun: str, brands: list[str] | None = None, *, attrs: list[str] | None = None,
      size: str | None = None, ages=None, targets=None, lines: dict | None = None) -> dict:
    """One product type inside a category (category defaults fill the Nones)."""
    return {"noun": noun, "brands": brands, "attrs": attrs, "size": size, "ages": ages,
            "targets": targets, "lines": lines}


CATEGORIES: list[dict] = [
    {
        "name": "sữa bột",
        "group": "Sữa & dinh dưỡng cho bé",
        "weight": 15,
        "brands": ["Meiji", "Aptamil", "Similac", "Friso", "Enfamil", "Nan", "Morinaga", "Glico",
                   "Vinamilk", "Nutifood", "Abbott Grow", "HiPP"],
        "lines": {
            "Meiji": ["thanh", "Infant Formula", "Growing Up Formula"],
            "Aptamil": ["Úc", "Đức", "Profutura"],
            "Similac": ["IQ Plus", "HMO"],
            "Friso": ["Gold", "Gold Pro"],
            "Enfamil": ["A+ NeuroPro"],
            "Nan": ["Optipro", "Supreme Pro"],
            "Morinaga": ["Hagukumi", "Chilmil", "Kodomil"],
            "Glico": ["Icreo"],
            "Vinamilk": ["Optimum Gold", "Dielac Grow Plus"],
            "HiPP": ["Organic Combiotic"],
        },
        "products": [P("sữa bột"), P("sữa công thức"), P("sữa")],
        "attrs": ["tăng cân", "nội địa Nhật", "hàng Úc", "dễ tiêu hóa", "hữu cơ", "cho bé táo bón"],
        "sizes": "milk",
        "stages": True,
        "ages": AGES_MILK,
        "price": "mid",
        "related": ["sữa pha sẵn", "bột ăn dặm", "bình sữa", "sữa bột của thương hiệu khác"],
    },
    {
        "name": "sữa bầu",
        "group": "Dinh dưỡng cho mẹ",
        "weight": 3,
        "brands": ["Enfamama", "Similac Mom", "Frisomum", "Anmum", "Morinaga", "Vinamilk"],
        "products": [P("sữa bầu"), P("sữa cho mẹ bầu"), P("sữa cho mẹ sau sinh")],
        "attrs": ["hương vani", "hương socola", "ít béo", "không đường", "hộp 400g", "hộp 900g"],
        "price": "mid",
        "related": ["vitamin tổng hợp cho mẹ bầu", "DHA cho mẹ bầu", "sữa hạt cho mẹ"],
    },
    {
        "name": "tã bỉm",
        "group": "Tã bỉm & vệ sinh",
        "weight": 16,
        "brands": ["Huggies", "Merries", "Bobby", "Moony", "Pampers", "Goo.n", "Molfix", "Mamamy"],
        "lines": {
            "Huggies": ["Platinum Nature Made", "Dry"],
            "Bobby": ["Extra Soft Dry"],
            "Moony": ["Natural"],
            "Goo.n": ["Premium"],
        },
        "products": [P("tã dán"), P("tã quần"), P("bỉm dán"), P("bỉm quần"), P("bỉm"), P("tã"),
                     P("miếng lót sơ sinh", size="none"),
                     P("tã bơi", size="none", attrs=["chống tràn", "gói 3 miếng", "dùng 1 lần"])],
        "attrs": ["siêu thấm", "mỏng nhẹ", "nội địa Nhật", "cộng miếng", "ban đêm"],
        "sizes": "diaper",
        "packs": [44, 52, 54, 56, 60, 62, 64, 76, 84, 96],
        "price": "mid",
        "related": ["tã quần cùng size", "khăn ướt cho bé", "kem chống hăm"],
    },
    {
        "name": "bình sữa",
        "group": "Bình sữa & phụ kiện",
        "weight": 8,
        "brands": ["Pigeon", "Comotomo", "Hegen", "Philips Avent", "Dr. Brown's", "Moyuum",
                   "Tommee Tippee", "Chicco"],
        "lines": {"Pigeon": ["cổ rộng", "PPSU Plus"], "Philips Avent": ["Natural"], "Hegen": ["PCTO"]},
        "products": [P("bình sữa"), P("bình ti"),
                     P("núm ti", size="none", attrs=["silicone", "size S", "size M", "chống sặc", "siêu mềm"]),
                     P("bình tập uống nước", ages=AGES_FEEDING, attrs=["có ống hút", "có tay cầm", "chống đổ"])],
        "attrs": ["cổ rộng", "nhựa PPSU", "thủy tinh", "silicone", "chống sặc", "chống đầy hơi"],
        "sizes": "capacity",
        "ages": AGES_BOTTLE,
        "price": "mid",
        "related": ["núm ti thay thế", "máy tiệt trùng bình sữa", "máy hâm sữa"],
    },
    {
        "name": "xe đẩy",
        "group": "Xe đẩy & ghế ô tô",
        "weight": 5,
        "brands": ["Joie", "Combi", "Aprica", "Chicco", "Seebaby", "Zaracos"],
        "products": [P("xe đẩy"), P("xe đẩy em bé"), P("xe đẩy du lịch"),
                     P("ghế ngồi ô tô", brands=["Joie", "Zaracos", "Chicco", "Combi"],
                       attrs=["xoay 360 độ", "có Isofix", "cho bé sơ sinh đến 4 tuổi"])],
        "attrs": ["gấp gọn", "2 chiều", "siêu nhẹ", "có mái che", "cho sinh đôi", "nằm ngả"],
        "ages": AGES_STROLLER,
        "price": "high",
        "related": ["ghế ngồi ô tô cho bé", "địu em bé", "xe đẩy gấp gọn"],
    },
    {
        "name": "ghế ăn dặm",
        "group": "Đồ dùng ăn dặm",
        "weight": 4,
        "brands": ["Mastela", "Hanbei", "Joie", "Umoo", "Chicco"],
        "products": [P("ghế ăn dặm"), P("ghế ăn bột")],
        "attrs": ["gấp gọn", "có bánh xe", "điều chỉnh độ cao", "bằng gỗ", "có đệm", "đa năng"],
        "ages": AGES_FEEDING,
        "price": "high",
        "related": ["yếm ăn dặm", "bát ăn dặm chống đổ", "bộ thìa ăn dặm"],
    },
    {
        "name": "ăn dặm",
        "group": "Đồ dùng ăn dặm",
        "weight": 4,
        "brands": ["HiPP", "Heinz", "Ridielac", "Nestlé", "Wakodo"],
        "products": [
            P("bột ăn dặm"), P("cháo ăn dặm", brands=["Cây Thị", "Sài Gòn Food"]), P("bánh ăn dặm", brands=["Wakodo", "Heinz", "Pigeon", "Gerber"]),
            P("máy xay ăn dặm", brands=["Philips Avent", "Fatzbaby", "Moaz BéBé"], attrs=["đa năng", "mini", "hấp và xay"]),
            P("bộ chén ăn dặm", brands=["Munchkin", "Pigeon", "Umoo"], attrs=["chống đổ", "có nắp", "silicone"]),
            P("yếm ăn dặm", brands=["Munchkin", "Umoo"], attrs=["silicone", "có máng hứng", "chống thấm"]),
        ],
        "attrs": ["vị ngọt", "vị mặn", "rau củ", "gạo sữa", "hữu cơ"],
        "ages": AGES_FEEDING,
        "price": "low",
        "related": ["ghế ăn dặm", "bát ăn dặm", "sữa chua cho bé"],
    },
    {
        "name": "quần áo sơ sinh",
        "group": "Thời trang sơ sinh",
        "weight": 7,
        "brands": ["Nous", "Lullaby", "Carter's", "Hrnee", "Bu"],
        "products": [P("bộ body"), P("body chip"), P("bodysuit"), P("áo sơ sinh"), P("quần sơ sinh"),
                     P("bộ quần áo sơ sinh"), P("bao tay bao chân", size="none", attrs=["cotton", "mùa đông"]),
                     P("mũ sơ sinh", size="none", attrs=["cotton", "len", "mùa đông"]),
                     P("khăn sữa", size="none", attrs=["cotton", "sợi tre", "hộp 10 chiếc"]), P("nhộng chũn"),
                     P("túi ngủ", attrs=["cotton", "trần bông", "mùa đông"]),
                     P("váy cho bé gái", attrs=["cotton", "công chúa", "cộc tay", "mùa hè", "màu hồng"])],
        "attrs": ["cotton", "sợi tre", "dài tay", "cộc tay", "màu trắng", "bé trai", "bé gái", "mùa đông"],
        "sizes": "clothes",
        "ages": AGES_CLOTHES,
        "price": "low",
        "related": ["khăn sữa", "bao tay bao chân", "bộ body cotton"],
    },
    {
        "name": "đồ chơi",
        "group": "Đồ chơi trẻ em",
        "weight": 7,
        "brands": ["Fisher-Price", "Lego Duplo", "VTech", "Winfat", "Hape", "Munchkin"],
        "products": [
            P("đồ chơi"),
            P("xúc xắc", brands=["Fisher-Price", "Munchkin", "Winfat"], attrs=["có đèn", "phát nhạc", "an toàn"],
              ages=AGES_BABY_TOYS),
            P("gặm nướu", brands=["Munchkin", "Pigeon", "Comotomo"], attrs=["silicone", "hình trái cây"],
              ages=[age_months(3), age_months(4), age_months(6)]),
            P("thảm chơi", brands=["Fisher-Price", "Winfat"], attrs=["phát nhạc", "gấp gọn", "chống thấm"],
              ages=AGES_BABY_TOYS),
            P("đồ chơi xếp hình", brands=["Lego Duplo", "Hape", "Winfat"], attrs=["bằng gỗ", "Montessori", "thông minh"],
              ages=AGES_TODDLER_TOYS),
            P("kệ chữ A", brands=["Fisher-Price", "Winfat"], attrs=["phát nhạc", "bằng gỗ", "Montessori"],
              ages=AGES_BABY_TOYS),
            P("đồ chơi nhà tắm", brands=["Munchkin", "Winfat"], attrs=["phun nước", "an toàn"],
              ages=[age_months(6), age_years(1), age_years(2)]),
            P("xe chòi chân", brands=["Winfat"], attrs=["phát nhạc", "có đèn"], ages=AGES_TODDLER_TOYS),
            P("búp bê", brands=[], attrs=["biết nói", "vải mềm"], ages=[age_years(2), age_years(3)]),
            P("đồ chơi gỗ", brands=["Hape"], attrs=["Montessori", "thông minh"]),
        ],
        "attrs": ["phát nhạc", "bằng gỗ", "thông minh", "Montessori", "có đèn", "an toàn"],
        "ages": AGES_TOYS,
        "price": "mid",
        "related": ["đồ chơi phát triển trí tuệ", "sách vải", "thảm chơi cho bé"],
    },
    {
        "name": "máy hút sữa",
        "group": "Máy hút sữa & đồ cho con bú",
        "weight": 5,
        "brands": ["Medela", "Spectra", "Unimom", "Fatzbaby", "Real Bubee", "Cimilre", "Philips Avent"],
        "lines": {"Medela": ["Pump In Style", "Swing Maxi"], "Spectra": ["9 Plus", "S1", "M1"], "Cimilre": ["S6+"]},
        "products": [P("máy hút sữa"), P("máy vắt sữa"),
                     P("túi trữ sữa", brands=["Lansinoh", "Unimom", "Pigeon", "Sunmum"], attrs=["250ml", "200ml", "hộp 50 túi", "có vạch chia"],
                       targets=[]),
                     P("phễu hút sữa", brands=["Spectra", "Medela", "Cimilre"], attrs=["size 24mm", "size 28mm", "silicone"],
                       targets=[])],
        "attrs": ["điện đôi", "điện đơn", "bằng tay", "không dây", "rảnh tay", "pin sạc"],
        "targets": [NURSING, POSTPARTUM],
        "price": "high",
        "related": ["túi trữ sữa", "miếng lót thấm sữa", "áo ngực cho con bú"],
    },
    {
        "name": "vitamin cho bé",
        "group": "Vitamin & thực phẩm bổ sung cho bé",
        "weight": 6,
        "brands": ["Bio Island", "Ostelin", "Nature's Way", "Dimao", "BioGaia", "Pediakid", "ChildLife"],
        "products": [P("vitamin D3"), P("vitamin D3K2"), P("DHA"), P("men vi sinh"), P("siro ăn ngon"),
                     P("kẽm"), P("canxi"), P("sắt"), P("vitamin tổng hợp")],
        "attrs": ["dạng giọt", "dạng siro", "viên nhai", "hàng Úc", "hàng Pháp"],
        "ages": AGES_SUPPLEMENT,
        "targets": [KID_TARGET],
        "price": "mid",
        "related": ["vitamin tổng hợp cho bé", "men vi sinh cho bé", "DHA cho bé"],
    },
    {
        "name": "vitamin cho mẹ",
        "group": "Dinh dưỡng cho mẹ",
        "weight": 4,
        "brands": ["Elevit", "Blackmores", "Obimin", "Pregnacare", "Bio Island"],
        "products": [P("vitamin tổng hợp"), P("viên sắt"), P("DHA"), P("canxi"), P("axit folic"),
                     P("viên uống lợi sữa", targets=[NURSING, POSTPARTUM])],
        "attrs": ["hàng Úc", "hộp 100 viên", "hộp 60 viên", "dạng viên nang"],
        "targets": [PREGNANT, POSTPARTUM, NURSING],
        "price": "mid",
        "related": ["sữa bầu", "DHA cho mẹ bầu", "canxi cho mẹ bầu"],
    },
    {
        "name": "đồ dùng cho mẹ bầu",
        "group": "Đồ dùng cho mẹ bầu & sau sinh",
        "weight": 5,
        "brands": ["Mamaway", "Lansinoh", "Sunmum", "Mama's Choice"],
        "products": [
            P("gối bầu", brands=["Mamaway", "Babymoov"], attrs=["chữ U", "chữ C", "đa năng"], size="none", targets=[]),
            P("đai nịt bụng", brands=["Mamaway", "Sunmum"], attrs=["thông hơi", "co giãn"], size="adult",
              targets=[POSTPARTUM]),
            P("váy bầu", attrs=["công sở", "mùa hè", "dáng suông"], size="adult", targets=[]),
            P("áo ngực cho con bú", brands=["Mamaway", "Sunmum"], attrs=["không gọng", "cotton"], size="adult",
              targets=[]),
            P("miếng lót thấm sữa", brands=["Lansinoh", "Sunmum", "Pigeon"], attrs=["hộp 60 miếng", "siêu mỏng"],
              size="none", targets=[POSTPARTUM]),
            P("kem chống rạn da", brands=["Bio-Oil", "Palmer's", "Mama's Choice", "Mustela"], attrs=["dạng dầu", "không mùi"], size="none"),
            P("quần lót bầu", attrs=["cạp chéo", "cotton"], size="adult", targets=[]),
            P("băng vệ sinh sau sinh", brands=["Diana", "Sunmum"], attrs=["siêu thấm", "gói 10 miếng"], size="none",
              targets=[]),
        ],
        "targets": [PREGNANT, POSTPARTUM],
        "price": "low",
        "related": ["đồ sau sinh", "quần áo bầu", "đồ cho con bú"],
    },
    {
        "name": "tắm gội & chăm sóc da",
        "group": "Tắm gội & chăm sóc da cho bé",
        "weight": 5,
        "brands": ["Lactacyd", "Johnson's Baby", "Cetaphil Baby", "Arau Baby", "Mustela"],
        "products": [
            P("sữa tắm gội"), P("dầu gội"),
            P("kem chống hăm", brands=["Bepanthen", "Sudocrem", "Mustela"], attrs=["tuýp 30g", "cho da nhạy cảm"]),
            P("khăn ướt", brands=["Bobby", "Mamamy", "Huggies", "Moony"], attrs=["không mùi", "gói 100 tờ", "combo 3 gói"]),
            P("nước giặt đồ sơ sinh", brands=["Arau Baby", "Dnee", "Kodomo"], attrs=["túi 2 lít", "dịu nhẹ"]),
            P("kem chống muỗi", brands=["Soffell", "Remos"], attrs=["hương cam", "dạng xịt"]),
        ],
        "attrs": ["dịu nhẹ", "không cay mắt", "chai 500ml", "chiết xuất thiên nhiên", "cho da nhạy cảm"],
        "ages": AGES_CARE,
        "targets": [KID_TARGET],
        "price": "low",
        "related": ["khăn tắm cho bé", "kem dưỡng ẩm cho bé", "chậu tắm em bé"],
    },
    {
        "name": "nôi cũi & địu",
        "group": "Nôi cũi & địu em bé",
        "weight": 3,
        "brands": ["Mastela", "Chicco", "Fisher-Price", "Joie"],
        "products": [P("nôi em bé"), P("cũi gỗ"),
                     P("ghế rung", brands=["Fisher-Price", "Mastela"], attrs=["phát nhạc", "có đồ chơi treo"]),
                     P("địu em bé", brands=["Aixintu", "Ergobaby", "Mimi"], attrs=["trợ lực", "4 tư thế", "thoáng khí"]),
                     P("nôi điện", brands=["Mastela", "Autoru"], attrs=["có remote", "phát nhạc", "có màn"])],
        "attrs": ["gấp gọn", "đa năng", "có màn", "kèm nệm", "có bánh xe"],
        "ages": AGES_STROLLER,
        "price": "high",
        "related": ["nệm cho bé", "xe đẩy", "địu em bé"],
    },
    {
        "name": "máy hâm & tiệt trùng",
        "group": "Bình sữa & phụ kiện",
        "weight": 3,
        "brands": ["Fatzbaby", "Moaz BéBé", "Philips Avent", "Haenim", "Upang"],
        "products": [P("máy hâm sữa"), P("máy tiệt trùng bình sữa"), P("máy tiệt trùng sấy khô"),
                     P("máy đun nước pha sữa")],
        "attrs": ["đa năng", "sấy khô UV", "hâm 2 bình", "mini", "điện tử"],
        "price": "high",
        "related": ["bình sữa", "máy hâm sữa", "nước rửa bình sữa"],
    },
]
for _cat in CATEGORIES:
    for _prod in _cat["products"]:
        for _key in ("brands", "attrs", "ages", "targets"):
            if _prod[_key] is None:
                _prod[_key] = _cat.get(_key) or []
        if _prod["lines"] is None:
            _prod["lines"] = _cat.get("lines", {})
        if _prod["size"] is None:
            _prod["size"] = _cat.get("sizes", "none")
CAT_WEIGHTS = [c["weight"] for c in CATEGORIES]

MILK_STAGES = {1: "0-6 tháng", 2: "6-12 tháng", 3: "1-2 tuổi", 4: "trên 2 tuổi"}
MILK_WEIGHTS = ["400g", "800g", "850g", "900g", "1,7kg"]
CAPACITIES = ["120ml", "150ml", "160ml", "240ml", "250ml", "260ml", "330ml"]
CLOTHES_SIZES = [59, 66, 73, 80, 90]
ADULT_SIZES = ["M", "L", "XL", "freesize"]

OPENERS = ["Khách tìm", "Khách cần", "Khách muốn mua", "Người dùng tìm"]
BANNER_SUBJECT_MAX = 32
BANNERS = [
    "{Kw} – chính hãng, giá tốt",
    "{Kw} chính hãng cho mẹ",
    "Gợi ý {kw} mẹ tin dùng",
    "{Kw} – giao nhanh, đổi trả dễ",
    "{Kw} đang có tại shop",
]
BANNERS_PRICE = [
    "{Kw} {price} – chính hãng, giá tốt",
    "Gợi ý {kw} {price} cho mẹ",
    "{Kw} giá {price} – mẹ chọn ngay",
]
NO_RESULT_BRAND = [
    "Chưa có hàng khớp, mẹ xem thử {noun} {alt1} hoặc {alt2} nhé!",
    "Chưa có sản phẩm phù hợp, mẹ xem thử {noun} {alt1}, {alt2} nhé!",
    "Không có kết quả – mẹ tham khảo {noun} {alt1} hoặc {alt2} nhé!",
]
NO_RESULT_GENERIC = [
    "Chưa có {kw}, mẹ xem thêm {rel1} hoặc {rel2} nhé!",
    "Chưa có sản phẩm phù hợp. Gợi ý: {rel1}, {rel2}.",
    "Không tìm thấy kết quả – mẹ thử tìm {rel1} nhé!",
]

# --- out-of-scope vocabulary -----------------------------------------------
# (category, [(display name, extras, why-hint)]); the hint explains look-alikes.
_PET = ", dù có chữ “{w}” nhưng là đồ cho thú cưng"
_CART = ", đây là xe chở hàng chứ không phải xe đẩy em bé"
OUT_OF_SCOPE: list[tuple[str, list[tuple[str, list[str], str]]]] = [
    ("điện thoại", [
        ("iPhone 15 Pro Max", ["256GB", "cũ", "màu titan"], ""), ("iPhone 13", ["128GB", "cũ", "like new"], ""),
        ("Samsung Galaxy A55", ["5G", "chính hãng"], ""), ("Xiaomi Redmi Note 13", ["8GB/256GB", "bản quốc tế"], ""),
        ("OPPO Reno 11", ["5G", "trả góp"], ""), ("điện thoại Nokia", ["cục gạch", "2 sim"], "")]),
    ("phụ kiện điện thoại", [
        ("ốp lưng iPhone 15", ["trong suốt", "chống sốc"], ""), ("sạc nhanh Samsung 25W", ["chính hãng", "kèm cáp"], ""),
        ("cáp sạc Type-C", ["dài 2m", "bọc dù"], ""), ("kính cường lực iPhone", ["chống nhìn trộm", "full màn"], ""),
        ("sạc dự phòng Anker", ["20000mAh", "sạc nhanh"], "")]),
    ("máy tính xách tay", [
        ("laptop Dell Inspiron", ["core i5", "RAM 16GB"], ""), ("laptop gaming Asus", ["RTX 4050", "cũ"], ""),
        ("MacBook Air M2", ["8GB", "cũ"], ""), ("laptop Lenovo ThinkPad", ["cho sinh viên", "cũ"], ""),
        ("laptop HP", ["core i5", "văn phòng"], "")]),
    ("phụ kiện máy tính", [
        ("chuột không dây Logitech", ["pin sạc", "im lặng"], ""), ("bàn phím cơ", ["switch red", "có led"], ""),
        ("màn hình máy tính 27 inch", ["2K", "144Hz"], ""), ("tai nghe gaming", ["có mic", "7.1"], "")]),
    ("phụ tùng xe máy", [
        ("nhông xích Wave Alpha", ["DID", "chính hãng"], ""), ("lốp xe máy Michelin", ["90/90-14", "không săm"], ""),
        ("bugi xe Exciter", ["NGK", "iridium"], ""), ("má phanh Sirius", ["trước", "sau"], ""),
        ("gương xe Vision", ["gù", "zin"], ""), ("dầu nhớt Castrol xe số", ["1 lít", "10W40"], ""),
        ("ắc quy xe máy GS", ["12V", "khô"], "")]),
    ("mỹ phẩm nam", [
        ("sữa rửa mặt nam", ["da dầu", "trị mụn"], ", dù có chữ “sữa” nhưng là mỹ phẩm cho nam giới"),
        ("sáp vuốt tóc nam", ["giữ nếp lâu", "không bết"], ""),
        ("nước hoa nam", ["lưu hương lâu", "chiết 10ml"], ""), ("lăn khử mùi nam", ["khô thoáng", "48h"], ""),
        ("dao cạo râu Gillette", ["5 lưỡi", "kèm lưỡi thay"], "")]),
    ("đồ gia dụng", [
        ("máy hút bụi Xiaomi", ["cầm tay", "không dây"], ", không phải máy hút sữa"),
        ("nồi chiên không dầu", ["6 lít", "điện tử"], ""),
        ("máy khoan pin Bosch", ["18V", "2 pin"], ""), ("quạt điều hòa", ["40 lít", "có remote"], "")]),
    ("nội thất văn phòng", [
        ("ghế gaming", ["có gác chân", "ngả 180 độ"], ", không phải ghế ăn dặm"),
        ("bàn làm việc chữ L", ["1m4", "gỗ"], ""),
        ("ghế công thái học", ["lưới", "tựa đầu"], "")]),
    ("dụng cụ chở hàng", [
        ("xe đẩy hàng 4 bánh", ["tải 300kg", "gấp gọn"], _CART),
        ("xe đẩy hàng gấp gọn", ["2 bánh", "đi chợ"], _CART),
        ("xe rùa", ["bánh hơi", "thùng tôn"], "")]),
    ("đồ dùng cho thú cưng", [
        ("sữa cho mèo con", ["dạng bột", "hộp 200g"], _PET.format(w="sữa")),
        ("thức ăn cho chó con", ["túi 1kg", "hạt mềm"], ", “con” ở đây là chó con chứ không phải em bé"),
        ("cát vệ sinh cho mèo", ["túi 10 lít", "khử mùi"], ""), ("pate cho mèo", ["lon 400g", "vị cá ngừ"], ""),
        ("bình sữa cho chó con", ["kèm núm", "50ml"], _PET.format(w="bình sữa"))]),
    ("thời trang nam", [
        ("áo bóng đá nam", ["clb", "thun lạnh"], ""), ("giày chạy bộ Nike nam", ["size 42", "chính hãng"], ""),
        ("quần jean nam", ["ống suông", "size 32"], "")]),
    ("đồ uống có cồn", [
        ("bia Heineken", ["thùng 24 lon", "lon cao"], ""), ("rượu vang đỏ", ["Chile", "hộp quà"], "")]),
    ("đồ thể thao & câu cá", [
        ("cần câu cá Shimano", ["2m7", "máy câu"], ""), ("vợt cầu lông Yonex", ["chính hãng", "căng sẵn"], "")]),
]
OOS_PRICES = ["dưới 5tr", "tầm 10 triệu", "dưới 500k", "giá rẻ", "dưới 1 triệu", "trả góp 0%"]
OOS_BANNERS = [
    "Shop chuyên đồ mẹ và bé nên chưa bán {cat} – mời bạn xem sữa, bỉm và đồ sơ sinh nhé!",
    "Rất tiếc, shop chỉ kinh doanh sản phẩm cho mẹ và bé, chưa có {cat} bạn nhé.",
    "Chúng mình chuyên sữa, tã bỉm, đồ sơ sinh và đồ cho mẹ bầu – chưa có {cat} ạ.",
]
OOS_NO_RESULT = [
    "Không tìm thấy sản phẩm phù hợp. Bạn thử tìm sữa bột, tã bỉm, bình sữa hoặc xe đẩy cho bé nhé!",
    "Shop chưa có mặt hàng này. Gợi ý: sữa cho bé, tã bỉm, đồ chơi, vitamin cho mẹ và bé.",
    "Không có kết quả phù hợp – khám phá ngay đồ sơ sinh, đồ ăn dặm và đồ dùng cho mẹ bầu nhé!",
]


# ---------------------------------------------------------------------------
# Rephrase data: row generation
# ---------------------------------------------------------------------------


class Piece:
    """One chunk of a query. ``canon`` is its share of the keyword (None for
    fillers / price, which are dropped from the keyword)."""

    __slots__ = ("role", "canon", "surface", "note")

    def __init__(self, role: str, canon: str | None, surface: str, note: str | None = None):
        self.role = role
        self.canon = canon
        self.surface = surface
        self.note = note  # template with "{s}" = final quoted surface


def _pick_phrase(rng: Random, option, role: str) -> tuple[Piece, str]:
    canon, surfaces, desc = option
    surface, note = rng.choice(surfaces)
    return Piece(role, canon, surface, note), desc


def _brand_piece(rng: Random, brand: str, line: str) -> Piece:
    canon = f"{brand} {line}" if line else brand
    line_surface = (" " + line.lower()) if line else ""
    r = rng.random()
    typos, aliases = BRAND_TYPOS.get(brand), BRAND_ALIASES.get(brand)
    if r < 0.12 and typos:
        bad = rng.choice(typos)
        return Piece("brand", canon, bad + line_surface, f"sửa lỗi chính tả {q(bad)} thành {q(brand)}")
    if r < 0.20 and aliases:
        alias = rng.choice(aliases)
        return Piece("brand", canon, alias + line_surface, f"chuẩn hóa {q(alias)} thành {q(brand)}")
    surface = canon if rng.random() < 0.15 else brand.lower() + line_surface
    return Piece("brand", canon, surface)


def _size_pieces(rng: Random, kind: str, hints: list[str]) -> list[Piece]:
    if kind == "diaper":
        r = rng.random()
        if r < 0.55:
            size, rng_kg = rng.choice(DIAPER_SIZES)
            canon = f"size {size}"
            options = [
                (canon, None), (f"size {size.lower()}", None), (f"sz {size.lower()}", "chuẩn hóa {s} thành " + q(canon)),
                (size.lower(), "hiểu {s} là " + q(canon)), (f"{size} {rng_kg}", "chuẩn hóa {s} thành " + q(canon)),
                (f"size {size} {rng_kg}", "chuẩn hóa {s} thành " + q(canon)),
            ]
            if size == "NB":
                options.append(("newborn", "hiểu {s} là " + q("size NB")))
            surface, note = rng.choice(options)
            hints.append(f"size {size} hợp với bé {rng_kg}")
            return [Piece("size", canon, surface, note)]
        if r < 0.72:
            kg = rng.randint(3, 20)
            canon = f"cho bé {kg}kg"
            surface, note = rng.choice([
                (canon, None), (f"bé {kg}kg", None), (f"{kg}kg", None), (f"{kg} kg", None),
                (f"cho bé {kg} ký", "hiểu {s} là " + q(f"{kg}kg")),
            ])
            hints.append(f"bé {kg}kg thường dùng size {diaper_size_for(kg)}")
            return [Piece("size", canon, surface, note)]
        return []
    if kind == "milk" and rng.random() < 0.3:
        w = rng.choice(MILK_WEIGHTS)
        alts = [w, w.replace("g", "gr") if w.endswith("0g") else w.replace(",", ".")]
        return [Piece("size", w, rng.choice(alts))]
    if kind == "capacity" and rng.random() < 0.45:
        ml = rng.choice(CAPACITIES)
        return [Piece("size", ml, rng.choice([ml, ml.replace("ml", " ml")]))]
    if kind == "clothes" and rng.random() < 0.35:
        cm = rng.choice(CLOTHES_SIZES)
        canon = f"size {cm}"
        surface, note = rng.choice([(canon, None), (f"sz {cm}", "chuẩn hóa {s} thành " + q(canon))])
        hints.append(f"size {cm} tương ứng bé cao khoảng {cm} cm")
        return [Piece("size", canon, surface, note)]
    if kind == "adult" and rng.random() < 0.4:
        s = rng.choice(ADULT_SIZES)
        canon = s if s == "freesize" else f"size {s}"
        return [Piece("size", canon, rng.choice([canon, canon.lower()]))]
    return []


def _apply_diacritics(rng: Random, pieces: list[Piece]) -> str:
    """Returns the diacritics mode actually applied: 'keep', 'strip' or 'partial'."""
    r = rng.random()
    if r < 0.48:
        return "keep"
    changed = False
    if r < 0.88:
        for p in pieces:
            new = strip_diacritics(p.surface)
            changed |= (new != p.surface) and p.canon is not None
            p.surface = new
        return "strip" if changed else "keep"
    for p in pieces:
        words = p.surface.split(" ")
        out = []
        for w in words:
            nw = strip_diacritics(w) if rng.random() < 0.5 else w
            changed |= (nw != w) and p.canon is not None
            out.append(nw)
        p.surface = " ".join(out)
    return "partial" if changed else "keep"


def _tone_typo(rng: Random, pieces: list[Piece]) -> None:
    cands = []
    for i, p in enumerate(pieces):
        if p.role in ("noun", "attr", "age") and p.note is None:
            for j, w in enumerate(p.surface.split(" ")):
                if w in TONE_TYPOS:
                    cands.append((i, j, w))
    if not cands:
        return
    i, j, w = rng.choice(cands)
    words = pieces[i].surface.split(" ")
    words[j] = TONE_TYPOS[w]
    pieces[i].surface = " ".join(words)
    pieces[i].note = f"sửa lỗi chính tả {q(TONE_TYPOS[w])} thành {q(w)}"


def _reorder(rng: Random, units: list[list[Piece]]) -> bool:
    """Mixed word order as users type it. Returns True when the order changed."""
    r = rng.random()
    movable = [i for i, u in enumerate(units) if u[0].role in ("brand", "size")]
    if r < 0.18 and movable:
        i = rng.choice(movable)
        if i != 0:
            units.insert(0, units.pop(i))
            return True
    elif r < 0.26 and len(units) >= 3:
        i = rng.randrange(1, len(units) - 1)
        units[i], units[i + 1] = units[i + 1], units[i]
        return True
    return False


def _notes_from(pieces) -> list[str]:
    return [p.note.format(s=q(p.surface)) for p in pieces if p.note]


def make_in_scope(rng: Random) -> dict:
    cat = rng.choices(CATEGORIES, weights=CAT_WEIGHTS)[0]
    prod = rng.choice(cat["products"])
    noun = prod["noun"]
    hints: list[str] = []

    units: list[list[Piece]] = [[Piece("noun", noun, noun.lower() if rng.random() < 0.85 else noun)]]
    brand = ""
    if prod["brands"] and rng.random() < 0.72:
        brand = rng.choice(prod["brands"])
        lines = prod["lines"].get(brand, [])
        line = rng.choice(lines) if lines and rng.random() < 0.25 else ""
        units.append([_brand_piece(rng, brand, line)])

    age_desc = ""
    stage_used = False
    if cat.get("stages") and brand != "Meiji" and rng.random() < 0.18:  # Meiji has no "số 1-4" line
        n = rng.randint(1, 4)
        canon = f"số {n}"
        units.append([Piece("stage", canon, rng.choice([canon, f"số{n}"]))])
        hints.append(f"số {n} thường dành cho bé {MILK_STAGES[n]}")
        stage_used = True

    size_pieces = _size_pieces(rng, prod["size"], hints)
    if size_pieces:
        units.append(size_pieces)
    if cat.get("packs") and prod["size"] == "diaper" and rng.random() < 0.2:
        n = rng.choice(cat["packs"])
        surface, note = rng.choice([(f"{n} miếng", None), (f"bịch {n}", "chuẩn hóa {s} thành " + q(f"{n} miếng"))])
        units.append([Piece("pack", f"{n} miếng", surface, note)])
    if prod["attrs"] and rng.random() < 0.3:
        attr = rng.choice(prod["attrs"])
        units.append([Piece("attr", attr, attr.lower() if rng.random() < 0.8 else attr)])

    # a milk stage or a clothes size already implies the age, so skip it then
    if prod["ages"] and not stage_used and not (size_pieces and prod["size"] == "clothes") \
            and rng.random() < 0.55:
        piece, age_desc = _pick_phrase(rng, rng.choice(prod["ages"]), "age")
        units.append([piece])
    elif prod["targets"] and rng.random() < 0.5:
        piece, age_desc = _pick_phrase(rng, rng.choice(prod["targets"]), "age")
        units.append([piece])

    keyword = " ".join(p.canon for u in units for p in u)

    # ----- build the query from the keyword pieces -----
    reordered = _reorder(rng, units)
    pieces = [p for u in units for p in u]

    if rng.random() < 0.12:
        f = rng.choice(PREFIX_FILLERS)
        pieces.insert(0, Piece("filler", None, f))
    price_display = ""
    if rng.random() < 0.1:
        price_display, surfaces = rng.choice(PRICES[cat["price"]])
        pieces.append(Piece("price", None, rng.choice(surfaces), "tách {s} thành điều kiện lọc giá"))
    if rng.random() < 0.25:
        pieces.append(Piece("filler", None, rng.choice(SUFFIX_FILLERS)))

    mode = _apply_diacritics(rng, pieces)
    if mode == "keep" and rng.random() < 0.15:
        _tone_typo(rng, pieces)
    if rng.random() < 0.08:
        pieces[0].surface = cap_first(pieces[0].surface)

    query = " ".join(p.surface for p in pieces)

    notes: list[str] = []
    if mode == "strip":
        notes.append("thêm dấu tiếng Việt")
    elif mode == "partial":
        notes.append("bổ sung dấu còn thiếu")
    fillers = [q(p.surface) for p in pieces if p.role == "filler"]
    if fillers:
        notes.append("bỏ từ thừa " + ", ".join(fillers))
    notes.extend(_notes_from(p for p in pieces if p.role != "filler"))
    if reordered:
        notes.append("sắp xếp lại thứ tự từ")

    desc = noun + (f" hãng {brand}" if brand else "") + (f" cho {age_desc}" if age_desc else "")
    if hints:
        desc += " (" + "; ".join(hints) + ")"
    opener = rng.choice(OPENERS)
    tail = ("đã " + join_vi(notes)) if notes else "truy vấn đã rõ nên giữ nguyên làm từ khóa"
    reasoning = f"{opener} {desc}, thuộc nhóm {cat['group']} nên trong phạm vi; {tail}."

    # banners are short: long keywords are cut back to "product + brand"
    subject = keyword if len(keyword) <= BANNER_SUBJECT_MAX else noun + (f" {brand}" if brand else "")
    if price_display:
        banner = rng.choice(BANNERS_PRICE).format(Kw=cap_first(subject), kw=subject, price=price_display)
    else:
        banner = rng.choice(BANNERS).format(Kw=cap_first(subject), kw=subject)

    alts = [b for b in prod["brands"] if b != brand]
    if brand and len(alts) >= 2:
        alt1, alt2 = rng.sample(alts, 2)
        no_result = rng.choice(NO_RESULT_BRAND).format(kw=keyword, noun=noun, alt1=alt1, alt2=alt2)
    else:
        rel1, rel2 = rng.sample(cat["related"], 2)
        no_result = rng.choice(NO_RESULT_GENERIC).format(kw=keyword, rel1=rel1, rel2=rel2)

    return {
        "query": query,
        "keyword": keyword,
        "is_in_scope": True,
        "reasoning": reasoning,
        "message_banner": banner,
        "message_no_result": no_result,
    }


def make_out_of_scope(rng: Random) -> dict:
    oos_cat, items = rng.choice(OUT_OF_SCOPE)
    display, extras, why = rng.choice(items)
    pieces = [Piece("item", display, display.lower())]
    extra = ""
    if rng.random() < 0.45:
        extra = rng.choice(extras)
        pieces.append(Piece("extra", extra, extra.lower()))
    if rng.random() < 0.15:
        pieces.insert(0, Piece("filler", None, rng.choice(PREFIX_FILLERS)))
    if rng.random() < 0.25:
        pieces.append(Piece("price", None, rng.choice(OOS_PRICES)))
    elif rng.random() < 0.25:
        pieces.append(Piece("filler", None, rng.choice(SUFFIX_FILLERS)))
    _apply_diacritics(rng, pieces)
    query = " ".join(p.surface for p in pieces)
    what = display + (f" {extra}" if extra else "")
    reasoning = (f"{rng.choice(OPENERS)} {what} (nhóm {oos_cat}){why}, không phải sản phẩm mẹ và bé "
                 f"nên ngoài phạm vi, không tạo từ khóa.")
    return {
        "query": query,
        "keyword": "",
        "is_in_scope": False,
        "reasoning": reasoning,
        "message_banner": rng.choice(OOS_BANNERS).format(cat=oos_cat),
        "message_no_result": rng.choice(OOS_NO_RESULT),
    }


def iter_rephrase_rows(n_rows: int, seed: int = DEFAULT_SEED) -> Iterator[dict]:
    """Yield ``n_rows`` rephrase rows with unique queries, deterministically."""
    rng = Random(seed)
    n_oos = round(n_rows * OUT_OF_SCOPE_SHARE)
    oos_positions = set(rng.sample(range(n_rows), n_oos)) if n_rows else set()
    seen: set[str] = set()
    for i in range(n_rows):
        maker = make_out_of_scope if i in oos_positions else make_in_scope
        for _ in range(MAX_TRIES_PER_ROW):
            row = maker(rng)
            key = query_key(row["query"])
            if key not in seen and row_text_chars(row) <= MAX_ROW_TEXT_CHARS:
                seen.add(key)
                break
        else:  # pragma: no cover - only reachable for absurdly large n_rows
            raise RuntimeError(f"could not find a new unique query for row {i}; query space exhausted")
        yield {k: nfc(v) if isinstance(v, str) else v for k, v in row.items()}


def write_rephrase(rows: Iterator[dict], fh: IO[str]) -> int:
    """Stream rows as a JSON array, byte-identical to
    ``json.dumps(list(rows), indent=2, ensure_ascii=False) + "\\n"``."""
    count = 0
    for row in rows:
        fh.write("[\n" if count == 0 else ",\n")
        fields = ",\n".join(
            f"    {json.dumps(k)}: {json.dumps(row[k], ensure_ascii=False)}" for k in REPHRASE_KEYS
        )
        fh.write("  {\n" + fields + "\n  }")
        count += 1
    fh.write("[]\n" if count == 0 else "\n]\n")
    return count


# ---------------------------------------------------------------------------
# GON environmental card stories (hand-written)
# ---------------------------------------------------------------------------

GON_SYSTEM = (
    "Bạn là một AI chuyên tạo câu chuyện về bảo vệ môi trường dựa trên thẻ bài.\n"
    "Hãy tạo câu chuyện:\n"
    "- Ngắn gọn (1-2 câu)\n"
    "- Sinh động với chi tiết cụ thể\n"
    "- Có ý nghĩa giáo dục về môi trường\n"
    "- Tích hợp hiệu ứng game một cách tự nhiên\n"
    "- Sử dụng ngôn ngữ phù hợp với trẻ em"
)

# (card name, card type, effect, story)
GON_CARDS: list[tuple[str, str, str, str]] = [
    # --- Bảo Vệ ---
    ("Trồng Rừng Đầu Nguồn", "Bảo Vệ", "+2 điểm cho Rừng.",
     "Cả lớp của Na cùng các chú kiểm lâm trồng hàng trăm cây con trên sườn đồi đầu nguồn, rễ cây bám chặt "
     "đất để giữ nước cho dòng suối luôn trong mát. Khu rừng xanh thêm một mảng lớn, bạn nhận ngay +2 điểm cho Rừng!"),
    ("Thả Rùa Về Biển", "Bảo Vệ", "+2 điểm cho Biển.",
     "Đêm trăng sáng, Bin và các bạn nhẹ nhàng mở lồng cho chú rùa biển nhỏ bò về phía những con sóng rì rào. "
     "Biển cả vui mừng đón bạn cũ trở về, bạn được +2 điểm cho Biển!"),
    ("Lắp Pin Mặt Trời", "Bảo Vệ", "+2 điểm cho Không Khí.",
     "Những tấm pin mặt trời lấp lánh trên mái trường hứng nắng để thắp sáng lớp học mà không cần đốt than nhả khói đen. "
     "Bầu trời trong xanh hơn hẳn, bạn nhận +2 điểm cho Không Khí!"),
    ("Vớt Rác Trên Sông", "Bảo Vệ", "+2 điểm cho Sông.",
     "Chiếc thuyền nhỏ của đội Măng Non lướt dọc bờ sông, vớt lên từng chai nhựa và túi ni lông đang trôi lềnh bềnh. "
     "Đàn cá tung tăng bơi lội trở lại, dòng sông được +2 điểm!"),
    ("Khu Bảo Tồn Voọc", "Bảo Vệ", "+3 điểm cho Động Vật.",
     "Nhờ khu bảo tồn trên bán đảo Sơn Trà, gia đình voọc chà vá chân nâu thỏa thích đu cành hái lá mà không sợ thợ săn. "
     "Muông thú được che chở an toàn, bạn nhận +3 điểm cho Động Vật!"),
    ("Trồng Rừng Ngập Mặn", "Bảo Vệ", "+1 điểm cho Rừng, +1 điểm cho Biển.",
     "Những cây đước non cắm xuống bãi bùn ven biển sẽ lớn thành bức tường xanh chắn sóng và làm nhà cho tôm cua. "
     "Một việc tốt, hai phần thưởng: +1 điểm cho Rừng và +1 điểm cho Biển!"),
    ("Ủ Phân Hữu Cơ", "Bảo Vệ", "+2 điểm cho Đất.",
     "Vỏ rau, lá khô và bã trà được bé Mít ủ vào thùng, vài tuần sau hóa thành phân hữu cơ tơi xốp nuôi luống cải xanh mướt. "
     "Đất vườn khỏe mạnh trở lại, bạn được +2 điểm cho Đất!"),
    ("Tuần Tra Bảo Vệ Rừng", "Bảo Vệ", "+1 điểm cho Rừng, chặn thẻ Cháy Rừng tiếp theo.",
     "Chú kiểm lâm và chú chó Mực đi tuần khắp cánh rừng, kịp dập tắt đống lửa trại mà ai đó bỏ quên. "
     "Rừng được +1 điểm và thẻ Cháy Rừng tiếp theo sẽ bị chặn lại!"),
    # --- Cộng Đồng ---
    ("Ngày Chủ Nhật Xanh", "Cộng Đồng", "Mọi người chơi +1 điểm cho Đất.",
     "Sáng Chủ Nhật, cả xóm đeo găng tay, cầm chổi nhặt sạch rác quanh con ngõ nhỏ, vừa làm vừa hát vang. "
     "Ngõ xóm sạch tinh tươm nên mọi người chơi đều được +1 điểm cho Đất!"),
    ("Đổi Rác Lấy Cây", "Cộng Đồng", "+1 điểm cho Rừng, +1 điểm cho Đất.",
     "Bé Na mang chồng giấy báo cũ và vỏ lon đến điểm đổi rác, rồi vui sướng ôm về một chậu cây sấu non. "
     "Rác được tái chế, cây được trồng thêm, bạn nhận +1 điểm cho Rừng và +1 điểm cho Đất!"),
    ("Chợ Không Túi Ni Lông", "Cộng Đồng", "+1 điểm cho Biển, +1 điểm cho Sông.",
     "Các cô bán hàng ở chợ quê gói rau bằng lá chuối, còn mẹ xách giỏ mây đi chợ thay cho túi ni lông. "
     "Ít rác nhựa trôi xuống dòng sông và ra biển lớn, bạn được +1 điểm cho Biển và +1 điểm cho Sông!"),
    ("Đạp Xe Đến Trường", "Cộng Đồng", "+3 điểm cho Không Khí.",
     "Cả lớp rủ nhau đạp xe đến trường, tiếng chuông kính coong vang khắp phố mà chẳng có làn khói xe nào bay lên. "
     "Không khí mát lành hẳn, bạn nhận +3 điểm cho Không Khí!"),
    ("Lớp Học Phân Loại Rác", "Cộng Đồng", "+1 điểm cho Đất, rút thêm 1 thẻ.",
     "Cô giáo dạy cả lớp bỏ vỏ chuối vào thùng xanh, chai nhựa vào thùng vàng để rác được tái chế đúng cách. "
     "Các bạn học được bí quyết mới: +1 điểm cho Đất và rút thêm 1 thẻ!"),
    ("Giờ Trái Đất", "Cộng Đồng", "Mọi người chơi +1 điểm cho Không Khí.",
     "Đúng 8 giờ 30 tối, cả thành phố cùng tắt đèn một giờ, các bạn nhỏ thắp nến kể chuyện và ngắm sao lấp lánh. "
     "Tiết kiệm điện giúp bầu trời sạch hơn, mọi người chơi đều được +1 điểm cho Không Khí!"),
    ("Vườn Rau Trường Em", "Cộng Đồng", "+1 điểm cho Đất, +1 điểm cho Không Khí.",
     "Góc sân trường biến thành vườn rau nhỏ, nơi các bạn tự tay gieo hạt, tưới nước và đón những chú ong đến thăm. "
     "Đất thêm màu mỡ, lá xanh thêm oxy, bạn nhận +1 điểm cho Đất và +1 điểm cho Không Khí!"),
    ("Đội Tình Nguyện Nhí", "Cộng Đồng", "Chọn 1 người chơi, cả hai cùng +1 điểm cho Sông.",
     "Đội tình nguyện nhí mặc áo xanh cùng nhau nhặt rác dọc bờ kênh, ai cũng hăng hái rủ thêm bạn mới tham gia. "
     "Hãy chọn 1 người chơi làm đồng đội, cả hai cùng được +1 điểm cho Sông!"),
    # --- Thiên Tai ---
    ("Cháy Rừng", "Thiên Tai", "-2 điểm Rừng.",
     "Một mẩu tàn lửa bị vứt bừa giữa mùa khô hanh đã bùng thành đám cháy, khiến sóc và chim hốt hoảng bỏ tổ. "
     "Khu rừng bị trừ 2 điểm, nhớ đừng bao giờ đốt lửa trong rừng nhé!"),
    ("Lũ Quét", "Thiên Tai", "-2 điểm Sông, -1 điểm Đất.",
     "Mưa như trút nước trên những ngọn đồi trọc khiến dòng lũ quét cuồn cuộn cuốn bùn đất và cây đổ xuống sông. "
     "Sông bị trừ 2 điểm, Đất bị trừ 1 điểm – trồng thêm cây để giữ đất nhé!"),
    ("Hạn Hán", "Thiên Tai", "-2 điểm Đất.",
     "Nắng gắt kéo dài mấy tháng liền làm ruộng lúa nứt nẻ như mai rùa, các bác nông dân phải gánh từng thùng nước cứu cây. "
     "Đất bị trừ 2 điểm, hãy nhớ tiết kiệm từng giọt nước nhé!"),
    ("Bão Lớn", "Thiên Tai", "-1 điểm Rừng, -1 điểm Biển.",
     "Cơn bão gầm rú quật đổ nhiều hàng cây và cuốn rác trôi ra khắp bãi biển. "
     "Rừng và Biển đều bị trừ 1 điểm, mau cùng nhau dọn dẹp sau bão nào!"),
    ("Xâm Nhập Mặn", "Thiên Tai", "-1 điểm Sông, -1 điểm Đất.",
     "Nước biển mặn chát theo con nước len sâu vào kênh rạch miền Tây, làm vườn dừa héo lá và ruộng lúa úa vàng. "
     "Sông và Đất mỗi nơi bị trừ 1 điểm, cần giữ rừng ngập mặn để chặn nước mặn đấy!"),
    ("Sạt Lở Đất", "Thiên Tai", "-1 điểm Rừng, -2 điểm Đất.",
     "Sau những trận mưa dầm, sườn núi trơ trụi vì bị chặt cây đã sạt xuống, cuốn theo cả những gốc cây cuối cùng. "
     "Rừng bị trừ 1 điểm và Đất bị trừ 2 điểm, rừng xanh chính là tấm áo giáp của núi đồi!"),
    ("Khói Bụi Mịt Mù", "Thiên Tai", "-2 điểm Không Khí.",
     "Khói từ ống xả xe và những đống rơm bị đốt ngoài đồng khiến bầu trời xám xịt, các bạn nhỏ phải đeo khẩu trang khi đến lớp. "
     "Không Khí bị trừ 2 điểm, hãy đi bộ hoặc đạp xe nhiều hơn nhé!"),
    ("Tràn Dầu Trên Biển", "Thiên Tai", "-2 điểm Biển, -1 điểm Động Vật.",
     "Một con tàu bị thủng làm dầu đen loang khắp mặt biển, dính bết vào lông những chú chim biển tội nghiệp. "
     "Biển bị trừ 2 điểm và Động Vật bị trừ 1 điểm, cả đội hãy chung tay làm sạch biển!"),
]


def gon_rows() -> list[dict]:
    rows = []
    for name, kind, effect, story in GON_CARDS:
        card = f"Tên thẻ: {name}. Loại: {kind}. Hiệu ứng: {effect}"
        rows.append({"messages": [
            {"role": "system", "content": GON_SYSTEM},
            {"role": "user", "content": card},
            {"role": "assistant", "content": story},
        ]})
    return rows


# ---------------------------------------------------------------------------
# Chinese financial-analyst Q&A (hand-written)
# ---------------------------------------------------------------------------

ZH_SYSTEM_CONTEXT = "你是一个专业的金融分析助手，提供准确、专业的金融咨询服务。"

DOMAIN_ZH: list[tuple[str, str, str]] = [
    ("什么是市盈率（PE）？", "",
     "市盈率是股价与每股收益之比（也可用总市值除以净利润），反映投资者愿为每1元利润支付的价格。常见口径有静态、滚动（TTM）和动态市盈率。"
     "市盈率适合盈利稳定的公司，需与同行业及历史水平比较；亏损或强周期企业的市盈率参考意义有限。"),
    ("市净率适合用来评估哪些类型的公司？", "",
     "市净率（PB）= 股价 ÷ 每股净资产，适合资产以金融资产或有形资产为主、账面价值较可靠的行业，如银行、保险、券商以及钢铁、化工等重资产周期行业。"
     "对于轻资产的科技、服务类公司，核心价值来自品牌、技术和人才，账面净资产难以体现，PB参考意义较弱。"),
    ("什么是ROE？如何用杜邦分析拆解？", "",
     "ROE（净资产收益率）= 净利润 ÷ 平均净资产，衡量股东投入资本的盈利能力。杜邦分析将其拆为：ROE = 销售净利率 × 总资产周转率 × 权益乘数，"
     "分别对应盈利能力、营运效率和财务杠杆。依靠高杠杆推高的ROE，风险通常高于依靠高利润率或高周转带来的ROE。"),
    ("现金流量表由哪几部分组成？", "",
     "现金流量表分为三部分：经营活动现金流，反映主营业务带来的现金收支；投资活动现金流，反映购建或处置长期资产、对外投资等；"
     "筹资活动现金流，反映借款、还款、发行股票和分红等。健康的企业通常经营现金流持续为正，并能覆盖资本开支。"),
    ("什么是可转债？", "",
     "可转债是可在约定期限内按约定转股价格转换为发行公司股票的公司债券。它兼具债性和股性：股价低迷时可持有到期获得本息，提供一定下行保护；"
     "股价上涨时可转股分享收益。投资时需关注转股溢价率、纯债价值、到期收益率以及下修、赎回和回售条款。"),
    ("债券的久期是什么意思？", "",
     "久期是以现金流现值为权重计算的债券平均回收期限。常用的修正久期衡量债券价格对利率变动的敏感度：收益率变动1个百分点，"
     "债券价格约反向变动“修正久期”个百分点。一般来说，期限越长、票面利率越低，久期越大，利率风险也越高。"),
    ("什么是对冲？请举例说明。", "",
     "对冲是通过建立与现有头寸风险方向相反的头寸来降低潜在损失的策略。例如，持有股票组合的投资者担心短期下跌，可卖出股指期货："
     "若市场下跌，期货空头的盈利可抵消部分现货损失。对冲能降低风险，但也会牺牲部分上涨收益，并产生保证金、基差等成本。"),
    ("什么是夏普比率？", "",
     "夏普比率 =（组合收益率 − 无风险利率）÷ 组合收益率的标准差，衡量每承担一单位总风险所获得的超额收益，数值越高说明风险调整后收益越好。"
     "比较时应使用相同区间和频率的数据；它假设收益近似正态分布，对尾部风险反映不足。"),
    ("贝塔系数代表什么？", "",
     "贝塔系数衡量证券或组合相对市场整体的系统性风险。β=1表示与市场同步波动；β>1表示波动大于市场，如β=1.5时市场涨跌1%，"
     "该证券理论上涨跌约1.5%；β<1则相对防御。贝塔只反映系统性风险，不反映公司特有风险，且会随时间变化。"),
    ("EBITDA是什么？有什么局限？", "",
     "EBITDA是息税折旧摊销前利润，剔除了利息、所得税、折旧和摊销的影响，常用于比较资本结构和折旧政策不同的企业的经营盈利能力，也用于EV/EBITDA估值。"
     "其局限在于忽略了资本开支和营运资本变化，并不等于可用现金，对重资产行业可能高估真实盈利能力。"),
    ("流动比率和速动比率有什么区别？", "",
     "流动比率 = 流动资产 ÷ 流动负债；速动比率 =（流动资产 − 存货）÷ 流动负债，有时还会扣除预付款项等。速动比率剔除了变现能力较弱的存货，"
     "更严格地反映短期偿债能力。一般认为流动比率约2、速动比率约1较为稳健，但需结合行业特点判断。"),
    ("什么是市销率（PS）？适用于什么情况？", "",
     "市销率 = 总市值 ÷ 营业收入（或股价 ÷ 每股销售额）。由于营业收入通常为正且波动较小，PS适合评估尚未盈利或利润波动大的成长型企业，"
     "如部分互联网和生物科技公司。缺点是不反映成本和利润率，需结合毛利率和行业特征使用。"),
    ("什么是自由现金流？", "",
     "自由现金流是企业在满足维持和扩张经营所需的资本开支之后，可自由支配的现金。常见简化算法为：经营活动现金流净额 − 资本性支出。"
     "它可用于分红、回购、还债或并购，也是DCF估值的核心输入。持续为正且增长的自由现金流通常代表较高的盈利质量。"),
    ("债券的凸性有什么作用？", "",
     "凸性衡量债券价格与收益率关系的弯曲程度，是对久期线性估算的二阶修正。普通债券的凸性为正：利率下降时价格涨幅大于久期估算，"
     "利率上升时跌幅小于估算。在久期相同的情况下，凸性较大的债券在利率大幅波动时表现更好。"),
    ("什么是信用利差？", "",
     "信用利差是信用债收益率与相同期限无风险债券（如国债）收益率之差，反映投资者对违约风险和流动性风险要求的补偿。"
     "利差扩大通常意味着风险偏好下降或发行人信用恶化；利差收窄则反映信用环境改善或资金追逐收益。"),
    ("什么是国债逆回购？", "",
     "国债逆回购本质上是以国债为质押的短期资金融出：投资者借出资金并获得约定利息，到期自动收回本息。它期限短（1天到182天不等）、安全性高，"
     "常用于闲置资金的现金管理。利率随市场资金面波动，月末、季末和长假前通常较高。"),
    ("什么是ETF？和普通开放式基金有什么不同？", "",
     "ETF即交易型开放式指数基金，通常跟踪特定指数，可在交易所像股票一样盘中实时买卖。与普通开放式基金相比，ETF成交价格随行情变动，"
     "管理费率通常较低、持仓透明；普通开放式基金一般按当日收盘后计算的净值申购赎回，且不少为主动管理。"),
    ("什么是最大回撤？", "",
     "最大回撤是在选定区间内，资产净值从任一历史高点下跌到其后最低点的最大跌幅，计算公式为（峰值 − 谷值）÷ 峰值。"
     "它衡量投资者可能承受的最坏亏损情况，是评估策略风险和持有体验的重要指标，常与年化收益率结合计算卡玛比率。"),
    ("资产负债率多高算合理？", "",
     "资产负债率 = 总负债 ÷ 总资产，反映企业的财务杠杆水平。合理区间因行业而异：一般制造业在40%～60%较常见；房地产、公用事业等行业通常更高；"
     "银行因吸收存款经营，资产负债率常在90%以上。判断时还需结合有息负债占比、现金流和利息保障倍数。"),
    ("什么是商誉减值？对投资者有什么影响？", "",
     "商誉是企业并购时支付的对价超过被收购方可辨认净资产公允价值的部分。若被收购资产业绩不达预期，需计提商誉减值，直接减少当期利润和净资产。"
     "商誉占净资产比例高、并购标的业绩承诺到期的公司，减值风险较大，投资者应重点关注。"),
    ("期权的时间价值是什么？", "",
     "期权价格由内在价值和时间价值构成，时间价值 = 期权价格 − 内在价值，代表到期前标的价格向有利方向变动的可能性所具有的价值。"
     "剩余期限越长、波动率越高，时间价值通常越大；随着到期日临近，时间价值会加速衰减，这一效应用Theta衡量。"),
    ("DCF估值的基本思路是什么？", "",
     "DCF（现金流折现）估值认为资产价值等于其未来自由现金流的现值之和。通常先预测未来若干年的自由现金流并估算终值，"
     "再用加权平均资本成本（WACC）折现加总得到企业价值，扣除净债务后得到股权价值。结果对增长率和折现率假设高度敏感，宜做敏感性分析。"),
    ("什么是股息率？", "",
     "股息率 = 每股年度现金分红 ÷ 股价，衡量以现价买入股票可获得的现金回报。高股息率股票常见于银行、公用事业等现金流稳定的行业。"
     "但需警惕因股价大跌导致的“被动高股息”，应结合分红的可持续性、派息率和盈利稳定性综合判断。"),
    ("可转债的转股溢价率怎么理解？", "",
     "转股溢价率 = 转债价格 ÷ 转股价值 − 1，其中转股价值 = 100 ÷ 转股价 × 正股价。溢价率越低，转债价格越贴近正股表现，股性越强；"
     "溢价率越高，转债越依赖债底保护，债性越强。价格较低且溢价率较低的转债通常被认为性价比较高。"),
    ("什么是收益率曲线倒挂？", "",
     "收益率曲线倒挂是指短期国债收益率高于长期国债收益率的现象，例如2年期收益率高于10年期。正常情况下长期限债券要求更高的期限溢价，"
     "倒挂通常反映市场预期未来经济放缓、利率下行，历史上常被视为经济衰退的领先信号之一，但并非必然应验。"),
    ("CAPM模型的公式是什么？", "",
     "资本资产定价模型（CAPM）：预期收益率 = 无风险利率 + β ×（市场预期收益率 − 无风险利率）。它认为只有系统性风险才能获得风险补偿，"
     "括号内部分称为市场风险溢价。CAPM常用于估算股权资本成本，但假设较强，实践中常与多因子模型结合使用。"),
    ("什么是VaR（风险价值）？", "",
     "VaR是在给定置信水平和持有期内，投资组合可能遭受的最大损失。例如“1天、95%置信水平的VaR为100万元”，表示正常市场条件下，"
     "一天内损失超过100万元的概率不超过5%。VaR无法说明超出阈值后的损失有多大，通常需配合压力测试和预期损失（ES）使用。"),
    ("融券做空是怎么回事？有什么风险？", "",
     "融券做空是投资者向券商借入股票卖出，待股价下跌后再买入归还，赚取差价。它需要缴纳保证金并支付融券费用。"
     "主要风险在于：股价上涨时亏损理论上没有上限，可能被要求追加担保物或被强制平仓，且券源有限、费率可能上升。"),
    ("毛利率和净利率有什么区别？", "",
     "毛利率 =（营业收入 − 营业成本）÷ 营业收入，反映产品本身的盈利空间和定价能力；净利率 = 净利润 ÷ 营业收入，"
     "在毛利基础上进一步扣除销售、管理、研发、财务费用及税费等，反映企业整体盈利水平。毛利率高而净利率低，通常说明期间费用偏高。"),
    ("为什么分散投资可以降低风险？", "",
     "不同资产的收益并非完全同步，当相关性小于1时，组合的波动率低于各资产波动率的加权平均，一部分资产的下跌可被其他资产抵消。"
     "分散投资能显著降低公司特有的非系统性风险，但无法消除影响整个市场的系统性风险，因此仍需做好资产配置和风险控制。"),
    ("利率上升对债券价格有什么影响？", "",
     "债券价格与市场利率反向变动。利率上升时，新发债券票息更高，存量债券的固定现金流要按更高的利率折现，价格随之下跌；利率下降时则相反。"
     "价格变动幅度与久期相关，久期越长的债券对利率变化越敏感。"),
    ("什么是LPR？", "",
     "LPR即贷款市场报价利率，由各报价行以公开市场操作利率加点的方式报价，经全国银行间同业拆借中心计算得出，每月公布1年期和5年期以上两个品种。"
     "目前银行新发放贷款主要参考LPR定价，其中5年期以上LPR是房贷利率的主要定价基准。"),
    ("72法则是什么？", "",
     "72法则用于快速估算资金翻倍所需的时间：翻倍年数 ≈ 72 ÷ 年化收益率（百分数）。例如年化收益率6%，约需72 ÷ 6 = 12年翻倍；"
     "年化8%约需9年。该法则在收益率约2%～15%的区间内估算较为准确。"),
    # --- with input: calculations and interpreting figures ---
    ("根据以下数据计算该股票的市盈率。", "股价：25元；每股收益（EPS）：1.25元",
     "市盈率 = 股价 ÷ 每股收益 = 25 ÷ 1.25 = 20倍。即在盈利不变的假设下，约20年的利润可以收回投资成本。是否合理需与同行业平均市盈率和公司盈利增速比较。"),
    ("计算该公司的净资产收益率（ROE）。", "净利润：1.2亿元；期初净资产：9亿元；期末净资产：11亿元",
     "平均净资产 =（9 + 11）÷ 2 = 10亿元，ROE = 净利润 ÷ 平均净资产 = 1.2 ÷ 10 = 12%。即股东每投入10元净资产，每年约创造1.2元净利润，"
     "可进一步用杜邦分析拆解其驱动因素。"),
    ("估算收益率变动后债券价格的变化。", "修正久期：6.5；到期收益率上升50个基点",
     "价格变动率 ≈ −修正久期 × 收益率变动 = −6.5 × 0.50% = −3.25%，即债券价格约下跌3.25%。由于凸性为正，实际跌幅会略小于这一线性估算。"),
    ("计算这只可转债的转股价值和转股溢价率。", "面值：100元；转股价：10元；正股价格：12元；转债市价：125元",
     "转股数量 = 100 ÷ 10 = 10股，转股价值 = 10 × 12 = 120元。转股溢价率 = 125 ÷ 120 − 1 ≈ 4.17%。溢价率较低，转债与正股联动紧密，"
     "股性较强，正股下跌时转债也会明显跟跌。"),
    ("计算到期本息合计。", "本金：10万元；年化收益率：5%；按年复利；期限：3年",
     "到期本息 = 100,000 × (1 + 5%)³ = 100,000 × 1.157625 = 115,762.5元，其中利息为15,762.5元。相比单利的115,000元，复利多出762.5元，期限越长复利效应越明显。"),
    ("根据数据判断该股票的估值情况。", "股价：8元；每股净资产：10元；近三年ROE约6%",
     "市净率 = 8 ÷ 10 = 0.8倍，股价低于每股净资产，即“破净”。结合约6%的ROE来看，公司盈利能力偏弱，市场给予折价有一定合理性，"
     "不能仅凭破净就认定低估，还需关注资产质量和盈利改善前景。"),
    ("计算流动比率和速动比率，并评价短期偿债能力。", "流动资产：500万元；其中存货：150万元；流动负债：250万元",
     "流动比率 = 500 ÷ 250 = 2.0；速动比率 =（500 − 150）÷ 250 = 1.4。两项指标均处于较稳健水平，说明企业短期偿债能力较好，"
     "即使存货变现较慢，速动资产也能覆盖流动负债。"),
    ("计算该基金的夏普比率。", "年化收益率：12%；无风险利率：2%；年化波动率：20%",
     "夏普比率 =（12% − 2%）÷ 20% = 0.5，即每承担1单位总风险获得0.5单位超额收益。该数值属中等水平，应与同类基金在相同时间区间内比较后再做判断。"),
    ("计算股息率。", "每股年度现金分红：0.6元；当前股价：15元",
     "股息率 = 0.6 ÷ 15 = 4%。该水平高于一般定期存款利率，具有一定吸引力，但需确认分红是否可持续，可参考公司近几年的派息率和自由现金流情况。"),
    ("用杜邦分析计算ROE。", "销售净利率：10%；总资产周转率：0.8次；权益乘数：2.5",
     "ROE = 销售净利率 × 总资产周转率 × 权益乘数 = 10% × 0.8 × 2.5 = 20%。权益乘数2.5对应资产负债率60%，说明较高的ROE有相当一部分来自财务杠杆，需关注偿债风险。"),
    ("用CAPM计算该股票的预期收益率。", "无风险利率：2.5%；β：1.2；市场预期收益率：8%",
     "预期收益率 = 2.5% + 1.2 ×（8% − 2.5%）= 2.5% + 6.6% = 9.1%。β大于1，说明该股票系统性风险高于市场，投资者要求的回报也高于市场平均水平。"),
    ("计算该公司的自由现金流并简要评价。", "经营活动现金流净额：8亿元；资本性支出：3亿元；净利润：6亿元",
     "自由现金流 ≈ 8 − 3 = 5亿元。经营现金流净额高于净利润（8 > 6），盈利的现金含量较好；扣除资本开支后仍有5亿元可用于分红、还债或再投资，财务质量较为健康。"),
    ("计算套期保值所需的股指期货合约数量。", "股票组合市值：1000万元；组合β：1.2；每手股指期货合约价值：120万元",
     "需卖空合约数 = 组合市值 × β ÷ 每手合约价值 = 1000 × 1.2 ÷ 120 = 10手。卖出10手股指期货可基本对冲组合的系统性风险，但仍存在基差风险和个股特有风险。"),
    ("计算毛利率和净利率。", "营业收入：50亿元；营业成本：35亿元；净利润：4亿元",
     "毛利率 =（50 − 35）÷ 50 = 30%；净利率 = 4 ÷ 50 = 8%。两者相差22个百分点，说明期间费用和税费等占收入比重较高，可进一步分析各项费用率的变化趋势。"),
    ("分析这家公司的现金流结构。", "经营活动现金流净额：−2亿元；投资活动现金流净额：−5亿元；筹资活动现金流净额：+8亿元",
     "公司经营活动未能产生现金，同时在大规模投资扩张，资金缺口主要依靠借款或股权融资弥补，属于典型的“外部输血”型结构。"
     "若扩张项目不能尽快形成经营现金流，偿债压力和融资依赖将持续上升，需重点关注。"),
    ("根据国债收益率判断收益率曲线形态。", "2年期国债收益率：1.8%；10年期国债收益率：2.3%",
     "10年期与2年期利差为2.3% − 1.8% = 0.5%，即50个基点。曲线向上倾斜，属正常形态，但利差不大、曲线较为平坦，反映市场对长期增长和通胀的预期偏温和。"),
    ("计算PEG并评价估值。", "市盈率：30倍；预计未来三年净利润年复合增长率：25%",
     "PEG = 市盈率 ÷（盈利增长率 × 100）= 30 ÷ 25 = 1.2。PEG略高于1，说明估值略高于盈利增速所能支撑的水平，若增长不达预期则存在估值回落风险。"),
    ("计算这笔投资的年化收益率。", "买入价：20元；持有2年后卖出价：26元；期间无分红",
     "总收益率 =（26 − 20）÷ 20 = 30%，年化收益率 =（1 + 30%）^(1/2) − 1 ≈ 14.02%。注意不能简单用30% ÷ 2 = 15%计算，因为年化收益需要考虑复利。"),
    ("计算该债券的当期收益率。", "面值：100元；票面利率：4%；当前价格：95元",
     "年利息 = 100 × 4% = 4元，当期收益率 = 4 ÷ 95 ≈ 4.21%。由于债券折价交易，持有到期还可获得5元价差收益，因此到期收益率会高于4.21%。"),
    ("评估该企业的资产负债率是否偏高。", "行业：制造业；总资产：20亿元；总负债：15亿元",
     "资产负债率 = 15 ÷ 20 = 75%。对一般制造企业而言该水平偏高，通常认为40%～60%较为稳健。建议进一步分析有息负债占比、利息保障倍数和经营现金流，判断实际偿债压力。"),
]


def domain_zh_rows() -> list[dict]:
    return [{"instruction": i, "input": x, "output": o} for i, x, o in DOMAIN_ZH]


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


def _open_out(path: str) -> IO[str]:
    if path == "-":
        sys.stdout.reconfigure(encoding="utf-8", newline="\n")
        return sys.stdout
    return open(path, "w", encoding="utf-8", newline="\n")


def write_jsonl(rows: list[dict], path: str) -> int:
    with _open_out(path) as fh:
        for row in rows:
            fh.write(nfc(json.dumps(row, ensure_ascii=False)) + "\n")
    return len(rows)


def write_rephrase_file(n_rows: int, seed: int, path: str) -> int:
    if path == "-":
        return write_rephrase(iter_rephrase_rows(n_rows, seed), _open_out("-"))
    with _open_out(path) as fh:
        return write_rephrase(iter_rephrase_rows(n_rows, seed), fh)


def write_all(outdir: str) -> dict[str, int]:
    os.makedirs(outdir, exist_ok=True)
    return {
        REPHRASE_FILE: write_rephrase_file(DEFAULT_REPHRASE_ROWS, DEFAULT_SEED, os.path.join(outdir, REPHRASE_FILE)),
        STORIES_FILE: write_jsonl(gon_rows(), os.path.join(outdir, STORIES_FILE)),
        DOMAIN_ZH_FILE: write_jsonl(domain_zh_rows(), os.path.join(outdir, DOMAIN_ZH_FILE)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate data/examples/* (default) or write a rephrase file of any size.")
    parser.add_argument("--outdir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="where to write the three shipped files (default: this script's folder)")
    parser.add_argument("--rephrase-rows", type=int, metavar="N",
                        help="only write a rephrase JSON array with N rows (see -o)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed for --rephrase-rows (default {DEFAULT_SEED})")
    parser.add_argument("-o", "--output", default="-", help="output file for --rephrase-rows ('-' = stdout)")
    args = parser.parse_args(argv)

    if args.rephrase_rows is not None:
        if args.rephrase_rows < 0:
            parser.error("--rephrase-rows must be >= 0")
        try:
            n = write_rephrase_file(args.rephrase_rows, args.seed, args.output)
        except BrokenPipeError:  # e.g. piped into `head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        if args.output != "-":
            print(f"wrote {n} rows to {args.output}", file=sys.stderr)
        return 0

    for name, n in write_all(args.outdir).items():
        print(f"wrote {n:4d} rows to {os.path.join(args.outdir, name)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
