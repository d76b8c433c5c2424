"""convert_file and `ftr convert`: outputs, manifest, rejects, determinism, stratified splits, atomic writes."""

import json
from collections import Counter

import pytest
from click.testing import CliRunner

from converters_data import SYSTEM, rephrase, rephrase_rows
from ftr.converters.cli import convert as convert_command
from ftr.converters.convert import convert_file
from ftr.converters.errors import DataError
from ftr.converters.splits import TEST, VAL, assign_splits


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def all_rows(outdir):
    return {name: read_jsonl(outdir / f"{name}.jsonl") for name in ("train", "val", "test")}


def test_convert_writes_chat_rows_splits_and_manifest(write, tmp_path):
    rows = rephrase_rows(50)
    out = tmp_path / "out"
    manifest = convert_file(write("r.json", rows, layout="array"), out, system_prompt=SYSTEM)
    splits = all_rows(out)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [40, 5, 5]
    every = [row for rows_ in splits.values() for row in rows_]
    assert sorted(row["id"] for row in every) == list(range(50))
    row = next(r for r in every if r["id"] == 3)
    assert row["messages"][0] == {"role": "system", "content": SYSTEM}
    assert row["messages"][1]["content"] == rows[3]["query"]
    assert json.loads(row["messages"][2]["content"])["is_in_scope"] is True
    assert manifest == json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["input"]["records"] == 50 and manifest["kept"] == 50 and manifest["rejected"] == []
    assert manifest["outputs"]["test"]["classes"] == {"is_in_scope=false": 1, "is_in_scope=true": 4}
    assert set(manifest["versions"]) == {"ftr", "python", "ftfy"}
    assert len(manifest["input"]["sha256"]) == 64 and len(manifest["outputs"]["train"]["sha256"]) == 64


def test_errors_abort_and_write_nothing(write, tmp_path):
    rows = rephrase_rows(12)
    rows[4]["is_in_scope"] = "true"
    out = tmp_path / "out"
    with pytest.raises(DataError) as caught:
        convert_file(write("r.jsonl", rows), out, system_prompt=SYSTEM)
    assert str(caught.value).startswith(f"{tmp_path / 'r.jsonl'}:5: error: record 4: field \"is_in_scope\" must be")
    assert isinstance(caught.value, ValueError)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r.jsonl"]  # no temporary folder left behind


def test_drop_invalid_lists_every_dropped_record(write, tmp_path):
    rows = rephrase_rows(12)
    rows[4]["is_in_scope"] = "true"
    rows[7] = rows[2]  # exact duplicate: dropped even without --drop-invalid
    text = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows[:6]) + "\n{broken\n" + \
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows[6:]) + "\n"
    manifest = convert_file(write("r.jsonl", text), tmp_path / "out", system_prompt=SYSTEM, drop_invalid=True)
    rejected = {entry["index"]: entry for entry in manifest["rejected"]}
    assert sorted(rejected) == [4, 6, 8]
    assert rejected[4]["line"] == 5 and "[wrong_type]" in rejected[4]["reason"]
    assert rejected[6]["line"] == 7 and "[invalid_json]" in rejected[6]["reason"]
    assert "[exact_duplicate]" in rejected[8]["reason"]
    assert manifest["kept"] + len(manifest["rejected"]) == manifest["input"]["records"] == 13


def test_same_data_and_seed_give_byte_identical_files(write, tmp_path):
    path = write("r.json", rephrase_rows(40), layout="array")
    convert_file(path, tmp_path / "a", system_prompt=SYSTEM, seed=7)
    convert_file(path, tmp_path / "b", system_prompt=SYSTEM, seed=7)
    convert_file(path, tmp_path / "c", system_prompt=SYSTEM, seed=8)
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()


def test_a_previous_converts_outputs_are_replaced_in_place(write, tmp_path):
    out = tmp_path / "out"
    convert_file(write("r.json", rephrase_rows(10), layout="array"), out, system_prompt=SYSTEM)
    manifest = convert_file(write("r.json", rephrase_rows(20), layout="array"), out, system_prompt=SYSTEM)
    assert manifest["kept"] == 20
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "test.jsonl", "train.jsonl", "val.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "r.json"]


def test_chat_rows_keep_their_system_and_get_one_when_missing(write, tmp_path):
    rows = [{"messages": [{"role": "system", "content": "Riêng"}, {"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": "a"}]} for i in range(6)]
    rows += [{"messages": [{"role": "user", "content": f"p{i}"}, {"role": "assistant", "content": "a"}]} for i in range(6)]
    convert_file(write("c.jsonl", rows), tmp_path / "out", system_prompt=SYSTEM)
    every = [r for rows_ in all_rows(tmp_path / "out").values() for r in rows_]
    systems = Counter(r["messages"][0]["content"] for r in every)
    assert systems == {"Riêng": 6, SYSTEM: 6}
    assert all(r["messages"][0]["role"] == "system" for r in every)


def test_stratified_split_keeps_a_small_class_in_val_and_test():
    labels = ["in"] * 97 + ["out"] * 3
    assignment = assign_splits(labels, (0.8, 0.1, 0.1), seed=1)
    held_out = Counter((labels[i], assignment[i]) for i in range(100))
    assert held_out[("out", TEST)] == 1 and held_out[("out", VAL)] == 1
    assert held_out[("in", TEST)] == 10 and held_out[("in", VAL)] == 10


@pytest.mark.parametrize("n", range(10, 40))
@pytest.mark.parametrize("minority", [0, 1, 2, 3, 5])
def test_val_and_test_are_never_empty_from_ten_rows(n, minority):
    labels = ["a"] * (n - minority) + ["b"] * minority
    assignment = assign_splits(labels, seed=n)
    assert VAL in assignment and TEST in assignment


@pytest.mark.parametrize("split", [(0.8, 0.1), (0.9, 0.2, 0.1), (0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_split_is_rejected(split):
    with pytest.raises(ValueError):
        assign_splits(["a"] * 10, split)


def test_cli_convert_reports_errors_without_traceback_and_writes_nothing(write, tmp_path):
    path = write("r.jsonl", [rephrase("a"), rephrase("")])
    result = CliRunner().invoke(convert_command, [str(path), "--format", "rephrase", "-o", str(tmp_path / "out"),
                                                  "--system-prompt", SYSTEM])
    assert result.exit_code == 1
    assert f"{path}:2: error: record 1: field \"query\" is empty [empty_text]" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_cli_convert_with_drop_invalid_and_split(write, tmp_path):
    rows = rephrase_rows(20) + [rephrase("x", is_in_scope="no")]
    result = CliRunner().invoke(convert_command, [str(write("r.jsonl", rows)), "-o", str(tmp_path / "out"),
                                                  "--drop-invalid", "--split", "0.5,0.25,0.25", "--seed", "3"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["split"] == {"fractions": [0.5, 0.25, 0.25], "seed": 3, "stratified_by": "is_in_scope"}
    assert [manifest["outputs"][s]["rows"] for s in ("train", "val", "test")] == [10, 5, 5]
    assert len(manifest["rejected"]) == 1


def test_unicode_line_separators_are_escaped_so_every_reader_sees_one_row_per_line(write, tmp_path):
    rows = [rephrase(f"q{i}", reasoning="một\u2028hai\u2029ba\x85bốn") for i in range(10)]
    convert_file(write("r.jsonl", rows), tmp_path / "out", system_prompt=SYSTEM)
    for name in ("train", "val", "test"):
        text = (tmp_path / "out" / f"{name}.jsonl").read_text(encoding="utf-8")
        parsed = [json.loads(line) for line in text.splitlines()]  # splitlines() also splits on U+2028 etc.
        assert all(json.loads(r["messages"][2]["content"])["reasoning"] == "một\u2028hai\u2029ba\x85bốn" for r in parsed)
    assert sum(len(read_jsonl(tmp_path / "out" / f"{n}.jsonl")) for n in ("train", "val", "test")) == 10


def test_manifest_counts_the_kept_rows_a_repair_changed(write, tmp_path):
    import unicodedata

    rows = [rephrase(f"q{i}") for i in range(10)]
    rows[1]["reasoning"] = unicodedata.normalize("NFD", "Sữa cho bé")  # composed to NFC
    rows[2]["reasoning"] = "một\r\nhai"  # CRLF inside a text: normalised to LF
    rows[3]["reasoning"] = unicodedata.normalize("NFD", "Bỉm") + "\r\n"  # two repairs, one row
    manifest = convert_file(write("r.jsonl", rows), tmp_path / "out", system_prompt=SYSTEM)
    assert manifest["kept"] == 10 and manifest["repaired"] == 3
    assert manifest["warnings_by_class"]["not_nfc"] == 2 and manifest["warnings_by_class"]["crlf"] == 2
