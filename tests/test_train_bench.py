"""ftr.bench.train (GPU throughput benchmark), its step recorder and ftr.prep (fast `axolotl preprocess`).

The arithmetic, parsing and report functions run everywhere; `--smoke` runs the whole pipeline on CPU with the tiny
model (slow); the real benchmark needs a GPU (marked `gpu`, skipped without one).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftr.bench import train as bench
from ftr.bench import train_report as report
from ftr.bench import train_setups as setups
from ftr.bench.plugin import _count
from ftr.tiny_models import SHAPES

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_linear_params_and_flops_match_the_7b_shapes():
    # Qwen2.5-7B: 28 x (2 x 3584^2 + 2 x 3584 x 512 + 3 x 3584 x 18944) + 3584 x 152064
    assert setups.linear_params(SHAPES["qwen2.5-7b"]) == 7_070_285_824
    assert setups.linear_params(SHAPES["mistral-7b"]) == 7_110_393_856
    assert setups.flops_per_token(SHAPES["qwen2.5-7b"]) == 4 * 7_070_285_824
    assert setups.peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert setups.peak_flops("CPU (x86_64)") is None


def _rows(n=10, dt=0.5, tokens=8000, trainable=5000, slots=8192):
    rows = [{"event": "train_begin", "t": 100.0}]
    for step in range(1, n + 1):
        rows.append({"event": "step", "step": step, "t": 100.0 + step * dt + (5.0 if step == 1 else 0.0),
                     "tokens": tokens, "trainable": trainable, "slots": slots, "peak_mem_gib": 10.0 + step % 3})
        if step % 5 == 0:
            rows.append({"event": "log", "step": step, "loss": 12.0 - step / 10})
    rows.append({"event": "train_end", "t": 200.0, "peak_mem_gib": 9.0})
    return rows


def test_summarise_steps_times_only_after_warmup():
    out = setups.summarise_steps(_rows(), warmup=2)
    # steps 3..10: 8 steps in 8 x 0.5 s; step 1's 5 s of compilation is excluded
    assert out["measured_steps"] == 8 and out["seconds"] == pytest.approx(4.0)
    assert out["tokens_per_s_per_gpu"] == pytest.approx(16000)
    assert out["trainable_tokens_per_s"] == pytest.approx(10000)
    assert out["step_time_s"] == pytest.approx(0.5)
    assert out["padding_fraction"] == pytest.approx(1 - 8000 / 8192, abs=1e-4)
    assert out["peak_mem_gib"] == 12.0, "the run's peak is the largest reading (Axolotl resets the counter)"
    assert out["loss"] == {5: 11.5, 10: 11.0}


def test_summarise_steps_without_enough_steps_has_no_rate():
    out = setups.summarise_steps(_rows(n=2), warmup=5)
    assert "tokens_per_s_per_gpu" not in out and out["steps"] == 2


def test_mfu_and_ratios():
    results = {"configs": {"recipe": {"tokens_per_s_per_gpu": 12000.0, "trainable_tokens_per_s": 8000.0},
                           "seed_baseline": {"tokens_per_s_per_gpu": 2000.0, "trainable_tokens_per_s": 1000.0},
                           "axolotl_default": {"tokens_per_s_per_gpu": 6000.0, "trainable_tokens_per_s": 4000.0},
                           "recipe_no_liger": {"tokens_per_s_per_gpu": 10000.0, "label": "x"},
                           "recipe_grad_ckpt": {"label": "y", "skipped": "time budget"}}}
    assert report.ratios(results) == {"(c)/(a)": 6.0, "(c)/(b)": 2.0,
                                      "trainable (c)/(a)": 8.0, "trainable (c)/(b)": 2.0}
    gains = {lever: (gain, note) for lever, _k, gain, note in report.lever_gains(results)}
    assert gains["Liger kernels"] == (1.2, "")
    assert gains["no gradient checkpointing"][0] is None and "time budget" in gains["no gradient checkpointing"][1]
    entry = setups.add_mfu({"tokens_per_s_per_gpu": 12000.0}, SHAPES["qwen2.5-7b"], "NVIDIA H100 80GB HBM3")
    assert entry["mfu"] == pytest.approx(12000 * 4 * 7_070_285_824 / 989.4e12, abs=1e-4)
    assert setups.add_mfu({"tokens_per_s_per_gpu": 1.0}, SHAPES["qwen2.5-7b"], None)["mfu"] is None


def test_loss_check_compares_equal_steps():
    b = {"loss": {"5": 12.0, "10": 11.0, "15": 10.0}}
    c = {"loss": {"5": 12.01, "10": 10.98, "20": 9.0}}
    out = setups.loss_check(b, c)
    assert out["steps"] == [5, 10] and out["max_abs_diff"] == pytest.approx(0.02)
    assert setups.loss_check({"loss": {}}, c) is None


def test_axolotl_peak_memory_is_read_from_its_log(tmp_path):
    log = ("{'loss': '12', 'memory/max_allocated (GiB)': '14.7'}\n"
           "{'loss': '11', 'memory/max_active (GiB)': '50.0', 'memory/max_allocated (GiB)': '43.64'}\n")
    assert setups.axolotl_peak_mem(log) == 43.64
    (tmp_path / "train-recipe.log").write_text(log)
    results = {"configs": {"recipe": {"peak_mem_gib": 14.7}, "other": {}}}
    setups.apply_log_peaks(results, tmp_path)
    assert results["configs"]["recipe"]["peak_mem_gib"] == 43.64


def test_replace_section_keeps_other_sections_and_markers():
    doc = ("# Benchmarks\n\n## converters\n\nkeep me\n\n<!-- eval-bench:start -->\n## Eval speed\n\nalso keep\n"
           "<!-- eval-bench:end -->\n")
    once = report.replace_section(doc, "Training throughput (GPU)", "table 1")
    twice = report.replace_section(once, "Training throughput (GPU)", "table 2")
    assert "keep me" in twice and "also keep" in twice and "<!-- eval-bench:start -->" in twice
    assert "table 1" not in twice and twice.count("## Training throughput (GPU)") == 1
    middle = report.replace_section(twice, "converters", "new converters")
    assert "keep me" not in middle and "<!-- eval-bench:start -->\n## Eval speed" in middle


def test_docs_and_json_from_results(tmp_path):
    results = {"command": "python -m ftr.bench", "device": "NVIDIA H100 80GB HBM3", "started": "2026-11-23",
               "versions": {"torch": "2.11.0"}, "python": "3.12.3", "steps": 30, "warmup": 5, "rows": 2000,
               "total_s": 1.0, "prep": {"2000": {"seconds": 10.0, "mode": "ftr.prep", "rc": 0}}, "configs": {}}
    for key, rate in (("seed_baseline", 2000.0), ("axolotl_default", 6000.0), ("recipe", 13000.0),
                      ("recipe_mb2", 11000.0)):
        label, _r, _s, _raw, shape = setups.ALL[key]
        results["configs"][key] = {"label": label, "shape": shape, "tokens_per_s_per_gpu": rate,
                                   "trainable_tokens_per_s": rate / 2, "step_time_s": 0.5, "tokens_per_step": 8000,
                                   "padding_fraction": 0.03, "peak_mem_gib": 40.0, "mfu": 0.3,
                                   "loss": {"5": 12.0, "10": 11.0}, "settings": {"micro_batch_size": 4}}
    results["configs"]["qlora_mistral"] = {"label": "q", "skipped": "time budget"}
    report.finalize(results)
    doc, js = tmp_path / "BENCHMARKS.md", tmp_path / "train-gpu.json"
    doc.write_text("# Benchmarks\n\n## converters\n\nkept\n")
    prep_cpu = {"command": "python -m ftr.bench --prep-only", "machine": "2 CPUs", "python": "3.11",
                "runs": [{"rows": 2000, "dataset_num_proc": 1, "mode": "ftr.prep", "seconds": 14.0}]}
    report.write_docs(results, doc, js, prep_cpu)
    text = doc.read_text()
    assert "kept" in text and "## Training throughput (GPU)" in text and "## Data preparation" in text
    assert "(c)/(a) = **6.5x**" in text and "misses the 17,000" in text and "NVIDIA H100" in text
    assert "not run: time budget" in text
    data = json.loads(js.read_text())
    for key in ("seed_baseline", "axolotl_default", "recipe"):
        assert {"tokens_per_s_per_gpu", "trainable_tokens_per_s", "peak_mem_gib", "mfu"} <= set(data[key])
    assert data["prep_cpu"]["runs"][0]["seconds"] == 14.0 and data["loss_check"]["steps"] == [5, 10]
    report.write_docs(results, doc, js)  # a rerun keeps the CPU prep figures it had
    assert json.loads(js.read_text())["prep_cpu"] == prep_cpu


def test_recorder_counts_real_trainable_and_slot_tokens():
    torch = pytest.importorskip("torch")
    ids = torch.tensor([[5, 6, 7, 9, 9], [1, 9, 2, 3, 4], [9, 9, 9, 9, 9]])
    labels = torch.tensor([[-100, 6, 7, -100, -100], [-100] * 5, [-100] * 5])
    real, trainable, slots, pairs = _count({"input_ids": ids, "labels": labels}, pad_id=9)  # packed: no mask
    assert (int(real), int(trainable), slots, pairs) == (8, 2, 15, 0)  # no position_ids: pairs unknown
    # row 0: one document of 3 then padding; row 1: documents of 2 and 3 (positions reset to 0)
    positions = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 0, 1, 2], [0, 1, 2, 3, 4]])
    packed = _count({"input_ids": ids, "labels": labels, "position_ids": positions}, pad_id=9)
    assert int(packed[3]) == (1 + 2 + 3) + (1 + 2) + (1 + 2 + 3)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1] * 5, [0] * 5])
    masked = _count({"input_ids": ids, "labels": labels, "attention_mask": mask}, pad_id=9)
    assert int(masked[0]) == 7 and int(masked[3]) == (1 + 2) + (1 + 2 + 3 + 4 + 5)


def test_rendered_bench_configs(tmp_path):
    pytest.importorskip("axolotl")
    model = tmp_path / "model"
    model.mkdir()
    for key in setups.ALL:
        cfg = bench.render_config(key, model, tmp_path / "train.jsonl", tmp_path, 30, smoke=False)
        assert cfg["base_model"] == str(model) and cfg["max_steps"] == 30 and "test_datasets" not in cfg
        assert cfg["plugins"][-1] == "ftr.bench.plugin.BenchPlugin" and cfg["save_strategy"] == "no"
    recipe = bench.render_config("recipe", model, tmp_path / "t.jsonl", tmp_path, 30, smoke=False)
    seed = bench.render_config("seed_baseline", model, tmp_path / "t.jsonl", tmp_path, 30, smoke=False)
    assert recipe["sample_packing"] is True and recipe["gradient_checkpointing"] is False
    assert "axolotl.integrations.liger.LigerPlugin" in recipe["plugins"] and recipe["lora_mlp_kernel"] is True
    assert seed["sample_packing"] is False and seed["micro_batch_size"] == 4 and seed["gradient_checkpointing"] is True
    assert "axolotl.integrations.liger.LigerPlugin" not in seed["plugins"]
    # every config trains the same LoRA (rank, alpha, targets) at the same sequence length
    for key in ("seed_baseline", "axolotl_default", "recipe"):
        cfg = bench.render_config(key, model, tmp_path / "t.jsonl", tmp_path, 30, smoke=False)
        assert (cfg["lora_r"], cfg["lora_alpha"], cfg["lora_target_linear"], cfg["sequence_len"]) == (16, 32, True, 2048)


# --- ftr.prep -----------------------------------------------------------------------------------------------


def test_prep_hashes_tokenizers_by_content():
    pytest.importorskip("datasets")
    from datasets.fingerprint import Hasher
    from transformers import AutoTokenizer

    from ftr import prep
    from ftr.paths import TINY_MODELS_DIR
    from ftr.tiny_models import build

    folder = build("qwen2", TINY_MODELS_DIR)
    prep.fast_tokenizer_fingerprints()
    a, b = AutoTokenizer.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    assert Hasher.hash(a) == Hasher.hash(b)
    before = Hasher.hash(a)
    a.chat_template = "{{ messages }}"
    assert Hasher.hash(a) != before, "a changed chat template must change the fingerprint"
    b.add_tokens(["<ftr-new-token>"])
    assert Hasher.hash(b) != before, "a changed vocabulary must change the fingerprint"


def test_prep_saves_in_process_with_the_same_shards(tmp_path):
    datasets = pytest.importorskip("datasets")
    from ftr import prep

    prep.in_process_save()
    ds = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3]] * 600, "labels": [[-100, 2, 3]] * 600})
    ds.save_to_disk(str(tmp_path / "out"), num_proc=2)
    assert len(list((tmp_path / "out").glob("data-*.arrow"))) == 2
    back = datasets.load_from_disk(str(tmp_path / "out"))
    assert back["input_ids"] == ds["input_ids"]


@pytest.mark.slow
def test_bench_smoke_runs_the_pipeline_on_cpu(tmp_path):
    """Render, ftr.prep, Axolotl training with the step recorder, parsing and the report: tiny model, CPU."""
    env = dict(os.environ, AXOLOTL_DO_NOT_TRACK="1", WANDB_MODE="disabled", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "ftr.bench", "--smoke", "--only", "recipe", "--steps", "3",
                           "--loss-steps", "3", "--workdir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "r")],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    recipe = results["configs"]["recipe"]
    assert recipe["rc"] == 0 and recipe["tokens_per_s_per_gpu"] > 0 and recipe["trainable_tokens_per_s"] > 0
    assert results["prep"]["48"]["rc"] == 0
    runs = results["loss_curve_runs"]
    assert all(runs[key]["rc"] == 0 and runs[key]["steps"] == 3 for key in setups.LOSS_CURVE)
    # each row after the first was started while the one before it ran, and held until that one had trained
    later = runs[setups.LOSS_CURVE[-1]]
    assert later["started_early_s"] > 0 and later["phases_s"]["held_s"] > 0
    assert set(recipe["phases_s"]) == {"start_s", "imports_s", "held_s", "load_s", "setup_s", "train_s", "teardown_s"}
    report.finalize(results)
    assert results["loss_curve"]["steps"] == [1, 2, 3]  # smoke logs every step


def test_loss_curve_section_and_png(tmp_path):
    def run(losses):
        return {"label": "x", "steps": 300, "tokens_per_step": 8000.0, "tokens_per_s_per_gpu": 15000.0,
                "loss": {str(step): loss for step, loss in losses.items()}}

    results = {"configs": {}, "loss_curve_runs": {"recipe": run({5: 12.0, 10: 9.0}),
                                                  "recipe_no_levers": run({5: 12.01, 10: 8.97})}}
    report.finalize(results)
    assert results["loss_curve"]["max_abs_diff"] == 0.03
    text = "\n".join(report.loss_curve_lines(results))
    assert "step 10: 9.0000 with the levers, 8.9700 without" in text
    png = report.loss_curve_png(results, tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report.loss_curve_png({"configs": {}}, tmp_path / "none.png") is None
    assert "Not measured" in report.loss_curve_lines({"configs": {}})[0]


@pytest.mark.gpu
def test_bench_on_gpu_reaches_positive_mfu(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ftr.bench", "--only", "recipe", "--steps", "10", "--prep-rows",
                           "--workdir", str(tmp_path / "w"), "--results-dir", str(tmp_path / "r"), "--no-write-docs"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recipe = json.loads((tmp_path / "r" / "results.json").read_text())["configs"]["recipe"]
    assert recipe["mfu"] > 0 and recipe["peak_mem_gib"] > 0


def test_summarise_steps_leaves_profiled_steps_out():
    rows = _rows()
    for row in rows:
        if row.get("event") == "step" and row["step"] > 8:
            row["profiled"] = True
            row["t"] += 10.0 * (row["step"] - 8)  # the profiler slows these steps down
    out = setups.summarise_steps(rows, warmup=2)
    assert out["measured_steps"] == 6 and out["step_time_s"] == pytest.approx(0.5)


def test_step_recorder_profiles_the_last_steps_and_marks_them(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from ftr.bench.plugin import _StepRecorder

    torch = pytest.importorskip("torch")
    monkeypatch.setenv("FTR_BENCH_PROFILE", "2")
    path = tmp_path / "bench_steps.jsonl"
    recorder = _StepRecorder(path, max_steps=5)
    callback, state = recorder.callback, SimpleNamespace(global_step=0)
    callback.on_train_begin(None, state, None)
    for step in range(1, 6):
        state.global_step = step
        (torch.randn(64, 64) @ torch.randn(64, 64)).sum()
        callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    steps = [json.loads(line) for line in path.read_text().splitlines() if '"step"' in line]
    steps = [row for row in steps if row["event"] == "step"]
    assert [row.get("profiled", False) for row in steps] == [False, False, False, True, True]
    summary = json.loads((tmp_path / "profile.json").read_text())
    assert summary["steps"] == 2 and summary["wall_s"] > 0 and (tmp_path / "profile.txt").stat().st_size > 0


def test_rows_name_a_config_only_view_until_the_build_is_linked_in(tmp_path):
    """A row can start up (Axolotl reads only config.json before the bench's gate) while its model is being built;
    once built, the same folder holds the weights, so rows prepared before and after name one model."""
    pytest.importorskip("transformers")
    from types import SimpleNamespace

    models = bench.Models(SimpleNamespace(model_root=str(tmp_path / "models")), tmp_path, {}, tmp_path / "work")
    view = models.path("qwen2.5-7b")
    assert sorted(p.name for p in view.iterdir()) == ["config.json"]
    config = json.loads((view / "config.json").read_text())
    assert config["hidden_size"] == SHAPES["qwen2.5-7b"]["hidden_size"]

    built = tmp_path / "models" / "qwen2.5-7b"
    built.mkdir(parents=True)
    (built / "config.json").write_text(json.dumps(config))
    (built / "model.safetensors").write_bytes(b"weights")
    assert models._link_view("qwen2.5-7b", built) == view
    assert (view / "model.safetensors").read_bytes() == b"weights"
    assert (view / "config.json").resolve() == (built / "config.json").resolve()
    assert not list(view.glob("*.link"))


def test_a_time_budget_sees_a_torch_compile_rows_cold_compile():
    plain = setups.row_need_s("recipe", 15, 15, 20)
    assert plain == 20 and setups.row_need_s("recipe", 30, 15, 20) == 40
    assert setups.row_need_s("recipe", 300, 15, 20, partial=True) == 20  # the loss runs start when a short run fits
    assert setups.COMPILE_ROWS == ("recipe_torch_compile", "recipe_compile_cce")
    for key in setups.COMPILE_ROWS:
        assert setups.row_need_s(key, 15, 15, 20) == 20 + setups.COLD_COMPILE_S
    # the compile rows come last, so a budget that cannot hold them drops nothing else
    assert tuple(setups.ORDER[-len(setups.COMPILE_ROWS):]) == setups.COMPILE_ROWS


def test_the_cold_compile_is_reported_apart_from_the_compile_rows_tokens_per_s():
    results = {"configs": {
        "recipe": {"train_s": 25.0, "steps": 15, "step_time_s": 0.5, "settings": {}},  # profiled: slow steps
        "recipe_mb2": {"train_s": 7.0, "steps": 15, "step_time_s": 0.3, "settings": {}},
        "recipe_adamw_torch": {"train_s": 10.0, "steps": 15, "step_time_s": 0.5, "settings": {}},
        "recipe_torch_compile": {"train_s": 284.4, "steps": 15, "step_time_s": 0.528,
                                 "settings": {"torch_compile": True}},
        "recipe_compile_cce": {"skipped": "time budget", "settings": {"torch_compile": True}}}}
    lines = report.cold_compile_lines(results)
    assert len(lines) == 2 and "`recipe_torch_compile`" in lines[1]
    assert "274 s more than the other rows'" in lines[1]  # (284.4 - 15 x 0.528) - median(17.5, 2.5, 2.5)
    results["configs"] = {k: v for k, v in results["configs"].items() if "compile" in k}
    assert report.cold_compile_lines(results) == []
