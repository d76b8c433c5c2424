"""Outputs only when complete: temp entries named after their owner's PID, cleaned only when the owner is dead,
atomic files, and an eval folder that changes all at once, metrics.json last."""

import os
import subprocess
import sys

from ftr.eval.staging import commit_files, owner, remove_dead, temp_dir, write_atomic


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_owner_reads_the_pid_from_the_name():
    assert owner(".merge-1234-ab_c9", ".merge-") == 1234
    assert owner(".merged-old-77", ".merged-old-") == 77
    assert owner(".merged-old-77", ".merge-") is None and owner(".merge-x-1", ".merge-") is None


def test_temp_dir_embeds_this_pid(tmp_path):
    folder = temp_dir(tmp_path / "run", ".eval-")
    assert folder.parent == tmp_path / "run" and folder.is_dir() and owner(folder.name, ".eval-") == os.getpid()


def test_remove_dead_removes_only_entries_of_dead_processes(tmp_path):
    dead = dead_pid()
    stale = tmp_path / f".merge-{dead}-k3j2"
    (stale / "merged").mkdir(parents=True)
    (stale / "merged" / "model.safetensors").write_bytes(b"\0" * 1024)
    stale_file = tmp_path / f".merge-{dead}-x.tmp"
    stale_file.write_text("partial")
    live = tmp_path / f".merge-{os.getpid()}-a1b2"
    live.mkdir()
    others = [tmp_path / "merged", tmp_path / ".merge-notapid-1", tmp_path / f".eval-{dead}-zz"]
    for path in others:
        path.mkdir()
    assert sorted(remove_dead(tmp_path, ".merge-")) == sorted([stale, stale_file])
    assert not stale.exists() and not stale_file.exists() and live.is_dir() and all(p.is_dir() for p in others)
    assert remove_dead(tmp_path / "missing", ".merge-") == []


def test_write_atomic_replaces_whole_and_cleans_dead_temp_files(tmp_path):
    target = tmp_path / "judge.json"
    target.write_text("old")
    leftover = tmp_path / f".judge.json-{dead_pid()}-abc"
    leftover.write_text('{"half": ')
    write_atomic(target, '{"new": 1}')
    assert target.read_text() == '{"new": 1}' and sorted(p.name for p in tmp_path.iterdir()) == ["judge.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain write, not mkstemp's 0600


def test_commit_files_swaps_in_a_complete_eval_and_drops_stale_outputs(tmp_path, monkeypatch):
    outdir, staged = tmp_path / "eval", tmp_path / ".eval-1-x"
    outdir.mkdir()
    staged.mkdir()
    for name, text in {"metrics.json": "old", "predictions.jsonl": "old", "predictions.base.jsonl": "old base",
                       "judge.json": "judged old", "notes.txt": "the user's"}.items():
        (outdir / name).write_text(text)
    for name in ("predictions.jsonl", "report.md", "metrics.json"):
        (staged / name).write_text("new")
    names = ("predictions.jsonl", "predictions.base.jsonl", "report.md", "judge.json", "metrics.json")
    moves = []  # (name moved in, whether a metrics.json was in outdir at that moment)
    real_replace = os.replace

    def recording_replace(src, dst):
        moves.append((os.path.basename(dst), (outdir / "metrics.json").exists()))
        real_replace(src, dst)

    monkeypatch.setattr("ftr.eval.staging.os.replace", recording_replace)
    assert commit_files(staged, outdir, names, last="metrics.json") == ["predictions.base.jsonl", "judge.json"]
    assert {p.name: p.read_text() for p in outdir.iterdir()} == {
        "metrics.json": "new", "predictions.jsonl": "new", "report.md": "new", "notes.txt": "the user's"}
    assert list(staged.iterdir()) == []
    # the old metrics.json went first, the new one came last: no moment shows a metrics.json beside other files
    assert moves[-1] == ("metrics.json", False) and not any(present for _, present in moves)
