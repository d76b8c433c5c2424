"""ftr.prep (fast `axolotl preprocess`): in-process single-worker maps, lazy and hidden imports, one distribution scan,
and the prepared dataset byte-identical to plain Axolotl's (slow)."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftr import prep
from ftr.paths import REPO_ROOT


def test_single_worker_map_runs_in_process_with_the_same_rows(monkeypatch):
    datasets = pytest.importorskip("datasets")
    import multiprocess

    ds = datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(50)]})

    def tokenise(batch):
        return {"input_ids": [[len(t), ord(t[-1])] for t in batch["text"]]}

    pooled = ds.map(tokenise, batched=True, num_proc=1, remove_columns=["text"])
    monkeypatch.setattr(datasets.Dataset, "map", datasets.Dataset.map)
    monkeypatch.setattr(datasets.Dataset, "filter", datasets.Dataset.filter)
    prep.in_process_single_worker()
    prep.in_process_single_worker()  # idempotent: one wrapper

    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for num_proc=1")

    monkeypatch.setattr(multiprocess, "Pool", no_pool)
    mapped = ds.map(tokenise, batched=True, num_proc=1, remove_columns=["text"])
    kept = ds.filter(lambda row: row["text"].endswith("7"), num_proc=1)
    with pytest.raises(AssertionError, match="pool"):
        ds.map(lambda row, rank: row, with_rank=True, num_proc=1)  # rank-aware: keeps its worker
    assert mapped["input_ids"] == pooled["input_ids"]
    assert kept["text"] == ["row 7", "row 17", "row 27", "row 37", "row 47"]


def test_lazy_top_level_defers_a_package_until_first_use(tmp_path, monkeypatch):
    pkg = tmp_path / "ftr_lazy_probe"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import os\nos.environ['FTR_LAZY_PROBE_RAN'] = '1'\nVALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("FTR_LAZY_PROBE_RAN", raising=False)
    finder = prep._LazyTopLevel(["ftr_lazy_probe"])
    sys.meta_path.insert(0, finder)
    try:
        module = importlib.import_module("ftr_lazy_probe")
        assert "FTR_LAZY_PROBE_RAN" not in os.environ, "imported, not used: must not have run yet"
        assert module.VALUE == 42
        assert os.environ.get("FTR_LAZY_PROBE_RAN") == "1"
        assert finder.find_spec("ftr_lazy_probe_absent") is None
    finally:
        sys.meta_path.remove(finder)
        sys.modules.pop("ftr_lazy_probe", None)


def test_one_distribution_scan_gives_each_caller_its_own_copy(monkeypatch):
    import importlib.metadata as metadata

    monkeypatch.setattr(metadata, "packages_distributions", metadata.packages_distributions)
    expected = metadata.packages_distributions()
    prep.one_distribution_scan()
    first = metadata.packages_distributions()
    assert first == expected
    first["yaml"].append("changed by a caller")
    assert metadata.packages_distributions() == expected


def test_apply_keeps_unused_packages_out_of_the_preprocess_imports():
    """After apply(), importing what preprocess imports loads neither scikit-learn nor bitsandbytes' code."""
    pytest.importorskip("axolotl")
    code = ("import sys, importlib.util; from ftr import prep; prep.apply(); import axolotl.cli.preprocess, "
            "axolotl.common.datasets; import transformers.generation.candidate_generator; "
            "bnb = sys.modules.get('bitsandbytes'); "
            "ran = bnb is not None and not isinstance(bnb, importlib.util._LazyModule); "
            "print(int('sklearn' in sys.modules), int(ran))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
                         env=dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled", HF_HUB_OFFLINE="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["0", "0"], "scikit-learn imported / bitsandbytes executed: " + out.stdout


@pytest.mark.slow
def test_prepared_dataset_is_byte_identical_to_plain_axolotl(tmp_path):
    """The same config through Axolotl's own preprocess and through ftr.prep: the same Arrow bytes, the same
    input_ids / labels / attention_mask / position_ids, in the same prepared folder name."""
    datasets = pytest.importorskip("datasets")
    from ftr.bench.train import make_data, render_config, run_env
    from ftr.paths import TINY_MODELS_DIR
    from ftr.tiny_models import build

    tokenizer = build("qwen2", TINY_MODELS_DIR)  # the real Qwen2.5 tokenizer
    data = make_data(300, tmp_path / "data")
    base = render_config("recipe", tokenizer, data, tmp_path, 30, smoke=False)
    folders = {}
    for mode in ("plain", "ftr"):
        cfg = dict(base, dataset_prepared_path=str(tmp_path / f"prepared-{mode}"))
        config = tmp_path / f"{mode}.yaml"
        config.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
        env = dict(run_env(), FTR_PREP_TIMINGS=str(tmp_path / f"{mode}.times.json"))
        env.pop("FTR_PREP_PLAIN", None)
        if mode == "plain":
            env["FTR_PREP_PLAIN"] = "1"
        proc = subprocess.run([sys.executable, "-m", "ftr.prep", str(config)], capture_output=True, text=True,
                              env=env, cwd=REPO_ROOT, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        (folder,) = [p for p in Path(cfg["dataset_prepared_path"]).iterdir() if p.is_dir()]
        folders[mode] = folder
    plain, fast = folders["plain"], folders["ftr"]
    assert plain.name == fast.name, "the prepared folder (Axolotl's dataset hash) must be the same"
    arrows = sorted(p.name for p in plain.glob("*.arrow"))
    assert arrows and arrows == sorted(p.name for p in fast.glob("*.arrow"))
    for name in arrows:
        assert (plain / name).read_bytes() == (fast / name).read_bytes(), f"{name} differs"
    a, b = datasets.load_from_disk(str(plain)), datasets.load_from_disk(str(fast))
    assert len(a) == len(b) == 300
    for column in ("input_ids", "labels", "attention_mask", "position_ids"):
        assert column in a.column_names and a[column] == b[column]
    times = json.loads((tmp_path / "ftr.times.json").read_text())
    assert {"imports", "tokenise", "save", "in_process"} <= set(times) and times["tokenise"] > 0


def test_bench_prep_section_replaces_itself_and_keeps_the_rest(tmp_path, monkeypatch):
    from ftr.bench import convert as bench

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## Data preparation\n\nkeep me\n\n## converters\n\nme too\n", encoding="utf-8")
    monkeypatch.setattr(bench, "BENCHMARKS_MD", doc)
    run = {"rows": 2000, "mode": "ftr.prep", "dataset_num_proc": 1, "rc": 0, "seconds": 8.0, "cpu_seconds": 7.9,
           "phases_s": {"imports": 4.1, "tokenise": 1.5, "start_and_exit": 0.1}}
    result = {"command": "python -m ftr.bench.convert --prep-rows 2000", "load_average_1m_before": 0.5,
              "machine": {"cpu_count": 2, "platform": "p", "processor": "c", "python": "3.11", "gpu": None},
              "versions": {"axolotl": "0.19.0"}, "runs": [run]}
    bench.write_prep_section(result, tmp_path / "prep-cpu.json")
    bench.write_prep_section(dict(result, runs=[dict(run, seconds=7.5)]), tmp_path / "prep-cpu.json")
    text = doc.read_text(encoding="utf-8")
    assert text.count(bench.PREP_SECTION_TITLE) == 1 and "keep me" in text and "me too" in text
    assert "| 2,000 | ftr.prep | 1 | 7.5 | 7.9 | 4.1 |" in text and "| 8.0 |" not in text


@pytest.mark.slow
def test_bench_times_ftr_prep_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ftr.bench.convert", "--prep-rows", "60", "--prep-procs", "1", "2",
                           "--no-write", "--workdir", str(tmp_path)], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout[proc.stdout.index("\n{\n") + 1:])  # the report after the progress lines
    run, two = result["runs"]
    assert [run["dataset_num_proc"], two["dataset_num_proc"]] == [1, 2] and two["rc"] == 0
    assert result["command"].endswith("--prep-procs 1 2")
    assert run["rows"] == 60 and run["rc"] == 0 and run["seconds"] > run["phases_s"]["tokenise"] > 0
    assert set(run["phases_s"]) >= {"imports", "config", "tokenizer", "tokenise", "save", "start_and_exit"}
