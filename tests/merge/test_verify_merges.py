"""The teacher-forcing verification (ftr/merge_verify.py) passes a correct merge and fails broken ones: on the
tiny Qwen2 and Mistral in fp32 and bf16 (CPU), and on the Qwen2.5-7B and Mistral-7B shapes in bf16 (GPU).

A random LoRA (both factors random, so the adapter moves logits well beyond the tolerance) is merged five ways:
correctly (W + s·BA in the model's dtype), with the delta scaled by 1.5, transposed (square modules), left out
(the base written back unmerged), and into a 4-bit-rounded base. Only the correct merge may pass.
"""

import pytest
import torch

from ftr.merge_verify import Sequence, adapter_effect, compare, forced_logits, tolerance_for
from ftr.tiny_models import random_model

TARGETS = ["q_proj", "o_proj", "up_proj", "down_proj"]


def four_bit(weight):
    """The weight as a 4-bit base stores it: bitsandbytes NF4 on a GPU, blockwise absmax int4 on CPU."""
    if weight.is_cuda:
        import bitsandbytes.functional as bnb

        packed, state = bnb.quantize_4bit(weight, quant_type="nf4")
        return bnb.dequantize_4bit(packed, state).to(weight.dtype)
    blocks = weight.float().reshape(-1, 64)
    scale = blocks.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 7
    return (torch.round(blocks / scale).clamp(-8, 7) * scale).reshape(weight.shape).to(weight.dtype)


BROKEN = {
    "scaled delta x1.5": lambda w, d: w + 1.5 * d,
    "transposed delta": lambda w, d: w + (d.T if d.shape[0] == d.shape[1] else d),
    "delta left out": lambda w, d: w,
    "into a 4-bit base": lambda w, d: four_bit(w) + d,
}


def verdicts(kind: str, device: str, dtype: str, sequences: int = 4, length: int = 48) -> dict:
    """Verification result of each way of merging a random LoRA into random-init model `kind`."""
    from peft import LoraConfig, get_peft_model

    model = random_model(kind, device, dtype)
    model.eval()
    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS,
                                                  init_lora_weights=False))
    generator = torch.Generator().manual_seed(2)
    ids = torch.randint(0, model.config.vocab_size, (sequences, length), generator=generator)
    golden = [Sequence(row[:16].tolist(), row[16:].tolist(), "") for row in ids]
    reference = [forced_logits(peft_model, sequence) for sequence in golden]
    effect = adapter_effect(peft_model, golden, reference)
    lora = {name: module for name, module in peft_model.base_model.model.named_modules()
            if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer")}
    deltas = {name: module.get_delta_weight("default").detach() for name, module in lora.items()}
    plain = peft_model.unload()
    linears = {name: module for name, module in plain.named_modules()
               if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"}
    originals = {name: module.weight.detach().clone() for name, module in linears.items()}
    tolerance = tolerance_for(dtype, reference, model.config.num_hidden_layers)
    results = {"adapter_effect": effect, "tolerance": tolerance}
    for label, merge in {"correct": lambda w, d: w + d, **BROKEN}.items():
        with torch.no_grad():
            for name, module in linears.items():
                weight = originals[name]
                if name in deltas:
                    module.weight.copy_(merge(weight, deltas[name].to(weight.dtype)))
                elif label == "into a 4-bit base":  # QLoRA stores every linear layer of the base in 4 bits
                    module.weight.copy_(four_bit(weight))
                else:
                    module.weight.copy_(weight)
        results[label] = compare(reference, [forced_logits(plain, sequence) for sequence in golden], tolerance)
    return results


def _check(results: dict):
    tolerance = results["tolerance"]
    # the adapter must move logits well past the bound for "left out" and "scaled" to mean anything
    assert results["adapter_effect"] > 1.5 * tolerance, (results["adapter_effect"], tolerance)
    correct = results["correct"]
    assert correct["passed"], correct
    assert correct["max_abs_logit_diff"] <= tolerance and correct["unexplained_flips"] == 0
    for label in BROKEN:
        assert not results[label]["passed"], f"{label}: {results[label]['max_abs_logit_diff']} <= {tolerance}"


@pytest.mark.parametrize("kind", ["qwen2", "mistral"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_models_correct_merge_passes_and_broken_ones_fail(kind, dtype):
    _check(verdicts(kind, "cpu", dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["qwen2.5-7b", "mistral-7b"])
def test_7b_shapes_correct_merge_passes_and_broken_ones_fail(kind):
    results = verdicts(kind, "cuda", "bfloat16")
    print(kind, {label: {key: r[key] for key in ("max_abs_logit_diff", "mean_abs_logit_diff", "top1_agreement",
                                                "logit_scale", "tolerance")} if isinstance(r, dict) else r
                 for label, r in results.items()})
    _check(results)
