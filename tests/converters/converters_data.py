"""In-memory records for the converter tests, and where the shared seeds and real data live."""

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SEEDS = SHARED / "seeds"
REAL_DATA = SHARED / "real-data"

SYSTEM = "Bạn là trợ lý tìm kiếm."


def rephrase(query="sữa bột cho bé 6 tháng", in_scope=True, **overrides) -> dict:
    row = {
        "query": query,
        "keyword": "sữa bột cho bé 6 tháng" if in_scope else "",
        "is_in_scope": in_scope,
        "reasoning": "Người dùng cần sữa bột cho bé.",
        "message_banner": "Sữa bột chính hãng",
        "message_no_result": "Chưa tìm thấy, mẹ thử bỉm nhé!",
    }
    row.update(overrides)
    return row


def rephrase_rows(n: int, out_of_scope_every: int = 5) -> list[dict]:
    return [rephrase(f"sữa bột số {i}", in_scope=i % out_of_scope_every != 0) for i in range(n)]
