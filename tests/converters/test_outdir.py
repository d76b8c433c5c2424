"""`ftr convert -o DIR` never removes or changes what it did not write: the CLI (in-process, from the test's folder),
with every pre-existing file (subfolders too) compared byte for byte afterwards."""

import json
import subprocess
import sys

import pytest

from cli_run import ftr_in_process, snapshot
from converters_data import SYSTEM, rephrase_rows

OUTPUTS = ["manifest.json", "test.jsonl", "train.jsonl", "val.jsonl"]


@pytest.fixture
def mydata(tmp_path):
    """tmp_path/mydata holding the raw file, a notes file and a subfolder: the user's own folder."""
    folder = tmp_path / "mydata"
    (folder / "sub").mkdir(parents=True)
    (folder / "raw.json").write_text(json.dumps(rephrase_rows(20), ensure_ascii=False), encoding="utf-8")
    (folder / "notes.txt").write_text("mine")
    (folder / "sub" / "keep.jsonl").write_text('{"a": 1}\n')
    return folder


def convert(*args, cwd):
    return ftr_in_process("convert", *args, "--system-prompt", SYSTEM, cwd=cwd)


@pytest.mark.parametrize("cwd, raw, out", [
    ("mydata", "raw.json", "."),               # -o . with the input in the current folder
    ("mydata/sub", "../raw.json", ".."),       # -o .. holds it too
    ("", "mydata/raw.json", "mydata"),         # the folder the input sits in
    ("", "mydata/raw.json", "./mydata/"),      # the same, spelt otherwise
    ("mydata/sub", "../raw.json", "../.."),    # any folder above the input
])
@pytest.mark.parametrize("force", [False, True])
def test_a_folder_holding_the_input_is_always_refused(tmp_path, mydata, cwd, raw, out, force):
    before = snapshot(tmp_path)
    proc = convert(raw, "-o", out, *(["--force"] if force else []), cwd=tmp_path / cwd)
    assert proc.exit_code == 1
    assert "holds the input file" in proc.stderr and "[output_holds_input]" in proc.stderr
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in mydata.iterdir()) == ["notes.txt", "raw.json", "sub"]


def test_an_input_reached_through_a_symlink_is_found(tmp_path, mydata):
    (tmp_path / "link.json").symlink_to(mydata / "raw.json")
    before = snapshot(mydata)
    proc = convert("link.json", "-o", "mydata", "--force", cwd=tmp_path)
    assert proc.exit_code == 1 and "[output_holds_input]" in proc.stderr
    assert snapshot(mydata) == before


def test_an_output_path_that_is_a_file_is_a_clean_error(tmp_path, mydata):
    before = snapshot(tmp_path)
    proc = convert("mydata/raw.json", "-o", "mydata/notes.txt", cwd=tmp_path)
    assert proc.exit_code == 1 and "mydata/notes.txt: error: the output path exists and is not a folder" in proc.stderr
    assert snapshot(tmp_path) == before


def test_a_folder_with_other_files_needs_force_and_keeps_them(tmp_path, mydata):
    out = tmp_path / "out"
    (out / "deep").mkdir(parents=True)
    (out / "notes.md").write_text("keep me")
    (out / "deep" / "x.bin").write_bytes(b"\x00\x01")
    before = snapshot(out)

    refused = convert("mydata/raw.json", "-o", "out", cwd=tmp_path)
    assert refused.exit_code == 1
    assert "holds files ftr did not write (deep/, notes.md)" in refused.stderr and "--force" in refused.stderr
    assert snapshot(out) == before

    forced = convert("mydata/raw.json", "-o", "out", "--force", cwd=tmp_path)
    assert forced.exit_code == 0, forced.stderr
    after = snapshot(out)
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == OUTPUTS


def test_a_previous_converts_outputs_are_overwritten_without_flags(tmp_path, mydata):
    assert convert("mydata/raw.json", "-o", "out", cwd=tmp_path).exit_code == 0
    first = snapshot(tmp_path / "out")
    (mydata / "raw.json").write_text(json.dumps(rephrase_rows(30), ensure_ascii=False), encoding="utf-8")
    again = convert("mydata/raw.json", "-o", "out", cwd=tmp_path)
    assert again.exit_code == 0, again.stderr
    second = snapshot(tmp_path / "out")
    assert sorted(second) == OUTPUTS and second["train.jsonl"] != first["train.jsonl"]
    assert json.loads(second["manifest.json"])["kept"] == 30


def test_a_users_own_train_jsonl_is_not_taken_for_an_output(tmp_path, mydata):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text('{"my": "data"}\n')
    before = snapshot(out)
    proc = convert("mydata/raw.json", "-o", "out", cwd=tmp_path)
    assert proc.exit_code == 1 and "(train.jsonl)" in proc.stderr
    assert snapshot(out) == before


def test_an_output_name_that_is_a_folder_is_refused_even_with_force(tmp_path, mydata):
    out = tmp_path / "out"
    (out / "val.jsonl").mkdir(parents=True)
    (out / "val.jsonl" / "inner").write_text("x")
    before = snapshot(out)
    proc = convert("mydata/raw.json", "-o", "out", "--force", cwd=tmp_path)
    assert proc.exit_code == 1 and "[output_not_ours]" in proc.stderr
    assert snapshot(out) == before


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_temporary_files_are_not_other_files_and_are_cleaned(tmp_path, mydata):
    out = tmp_path / "out"
    assert convert("mydata/raw.json", "-o", "out", cwd=tmp_path).exit_code == 0
    pid = _dead_pid()
    for name in (f".train.jsonl.{pid}.tmp", f".rows.jsonl.{pid}.tmp", f".manifest.json.{pid}.tmp"):
        (out / name).write_text("half written")
    (out / "manifest.json").unlink()  # killed between removing the old manifest and writing the new one
    proc = convert("mydata/raw.json", "-o", "out", cwd=tmp_path)
    assert proc.exit_code == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == OUTPUTS

    only_temps = tmp_path / "only-temps"
    only_temps.mkdir()
    (only_temps / f".rows.jsonl.{pid}.tmp").write_text("killed in the first pass")
    assert convert("mydata/raw.json", "-o", "only-temps", cwd=tmp_path).exit_code == 0
    assert sorted(p.name for p in only_temps.iterdir()) == OUTPUTS


def test_bad_data_leaves_the_previous_outputs_and_no_temporary_files(tmp_path, mydata):
    assert convert("mydata/raw.json", "-o", "out", cwd=tmp_path).exit_code == 0
    before = snapshot(tmp_path)
    rows = rephrase_rows(20)
    rows[3]["is_in_scope"] = "yes"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows), encoding="utf-8")
    for out in ("out", "new/deeper"):
        proc = convert("bad.json", "-o", out, cwd=tmp_path)
        assert proc.exit_code == 1 and "record 3" in proc.stderr and "nothing written" in proc.stderr
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "bad.json"} == before
    assert not (tmp_path / "new").exists()
