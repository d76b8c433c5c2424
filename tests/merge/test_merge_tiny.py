"""`ftr merge tiny-rephrase` end to end: Axolotl's merge, the training dtype and tokenizer kept, verification
against the adapter passed; and a merge that does not reproduce the adapter exits 1 leaving no merged model."""

import json
from pathlib import Path

import pytest
from merge_helpers import copy_run, ftr
from safetensors import safe_open

pytestmark = pytest.mark.slow

# Runs `ftr merge` with Axolotl's merge wrapped so that one merged weight is off by 10%: a plausible-looking
# checkpoint that is not the trained model.
CORRUPTING_MERGE = '''
import ftr.merge as merge
real = merge.run_axolotl_merge
def corrupted(*args, **kwargs):
    folder = real(*args, **kwargs)
    from safetensors.torch import load_file, save_file
    shard = str(folder / "model.safetensors")
    tensors = load_file(shard)
    tensors["model.layers.1.mlp.down_proj.weight"] *= 1.10
    save_file(tensors, shard, metadata={"format": "pt"})
    return folder
merge.run_axolotl_merge = corrupted
from ftr.cli import main
main(["merge", "tiny-rephrase", "--golden", "2", "--max-new-tokens", "16"])
'''


@pytest.fixture(scope="module")
def merged(trained_tiny_rephrase, build_root):
    proc = ftr(["merge", "tiny-rephrase"], build_root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return trained_tiny_rephrase / "merged", proc.stdout


def test_verification_passes_and_prints_its_tolerance(merged):
    folder, stdout = merged
    figures = json.loads((folder / "verification.json").read_text())
    verification = figures["verification"]
    assert verification["passed"] and verification["prompts_compared"] == 8
    assert verification["method"] == "teacher forcing" and verification["top1_agreement"] == 1.0
    spread = verification["logit_scale"]
    bound = 1e-3 * spread * verification["layers"] ** 0.5
    assert verification["tolerance"] == pytest.approx(bound) and verification["max_abs_logit_diff"] <= bound
    # the check has teeth: the adapter moves the logits far more than the merge does
    assert verification["adapter_effect_max_abs_logit"] > 100 * max(verification["max_abs_logit_diff"], 1e-6)
    assert "tolerance max |logit diff| <= 0.001 x the logits' spread x sqrt(layers) (float32)" in stdout and "top-1 agreement under teacher forcing: 1.0000" in stdout


def test_fp32_training_stays_fp32_without_growing(merged, trained_tiny_rephrase):
    folder, _ = merged
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        assert {str(fh.get_slice(k).get_dtype()) for k in fh.keys()} == {"F32"}
    base = json.loads((folder / "verification.json").read_text())["base_model"]
    assert (folder / "model.safetensors").stat().st_size <= 1.01 * (Path(base) / "model.safetensors").stat().st_size


def test_safetensors_only(merged):
    folder, _ = merged
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))


def test_tokenizer_carries_the_training_chat_template(merged, trained_tiny_rephrase):
    from transformers import AutoTokenizer

    folder, _ = merged
    training = AutoTokenizer.from_pretrained(str(trained_tiny_rephrase / "adapter")).chat_template
    assert "<|im_start|>" in training
    assert AutoTokenizer.from_pretrained(str(folder)).chat_template == training


def test_model_card(merged, trained_tiny_rephrase):
    folder, _ = merged
    card = (folder / "README.md").read_text()
    data_sha = json.loads((trained_tiny_rephrase / "run.json").read_text())["hashes"]["data"]
    # the base model training loaded (build/tiny-models/qwen2, inside the session's FTR_BUILD tree)
    base = str(trained_tiny_rephrase.parent / "tiny-models" / "qwen2")
    assert "# tiny-rephrase (merged)" in card and data_sha in card and f"`{base}`" in card
    assert "8 golden prompts" in card and "Top-1 next-token agreement 1.0000" in card and "float32" in card


def test_nothing_left_beside_the_merge(merged, trained_tiny_rephrase):
    assert not [p.name for p in trained_tiny_rephrase.iterdir() if p.name.startswith(".")]
    assert not (trained_tiny_rephrase / "merge-failed.json").exists()


def test_a_bf16_run_on_an_fp32_base_merges_to_bf16_at_half_the_size(trained_tiny_rephrase, tmp_path):
    # The tiny run stands in for a bf16 run: same adapter, the config says bf16, the base is stored in fp32.
    run = copy_run(trained_tiny_rephrase, tmp_path)
    config = run / "axolotl.yaml"
    config.write_text(config.read_text().replace("bf16: false", "bf16: true"))
    # bf16 rounding may swap two near-equal logits of the random tiny model: under teacher forcing that is one
    # near tie at one position, within the bound, and the merge passes without any flag
    proc = ftr(["merge", "tiny-rephrase", "--golden", "2", "--max-new-tokens", "16"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = run / "merged"
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        assert {str(fh.get_slice(k).get_dtype()) for k in fh.keys()} == {"BF16"}
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    base = Path(json.loads((folder / "verification.json").read_text())["base_model"])
    assert (folder / "model.safetensors").stat().st_size < 0.51 * (base / "model.safetensors").stat().st_size
    verification = json.loads((folder / "verification.json").read_text())["verification"]
    assert verification["passed"] and verification["tolerance"] == pytest.approx(0.75 * verification["logit_scale"] * 2 ** 0.5) and verification["prompts_compared"] == 2


def test_a_merge_that_differs_from_the_adapter_exits_1_and_leaves_no_merged(trained_tiny_rephrase, tmp_path):
    run = copy_run(trained_tiny_rephrase, tmp_path)
    adapter_before = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    proc = ftr([], tmp_path, python_code=CORRUPTING_MERGE)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "VERIFICATION FAILED" in proc.stderr and "stays the deliverable" in proc.stderr
    assert not (run / "merged").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    report = json.loads((run / "merge-failed.json").read_text())["verification"]
    assert not report["passed"] and report["max_abs_logit_diff"] > report["tolerance"]
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == adapter_before


def test_a_corrupted_adapter_exits_1_and_leaves_no_merged(trained_tiny_rephrase, tmp_path):
    run = copy_run(trained_tiny_rephrase, tmp_path)
    weights = run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    proc = ftr(["merge", "tiny-rephrase"], tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "merge failed" in proc.stderr
    assert not (run / "merged").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
