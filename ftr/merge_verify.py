"""Is the merged model the adapter model? Compare the two under teacher forcing on golden prompts.

The adapter model (base + PEFT adapter, unmerged) writes a greedy continuation of each golden prompt; then both
models read that same token sequence in one forward pass and their next-token logits are compared at every
position. Teacher forcing keeps the contexts identical, so one near tie (two logits closer than bf16 rounding)
swaps one top-1 token and nothing else; comparing free-running generations instead lets that single swap send
the two continuations apart and fails correct 7B merges.

Verdict: every position's max |logit difference| must be within the dtype's tolerance. Top-1 agreement is
reported per position; a disagreement is a near tie, and harmless, exactly when it lies within that bound (the
argmax of two logit vectors can only differ where the reference's top-2 margin is at most twice their largest
difference). `ftr merge` runs this on every merge.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from ftr.inference import GREEDY

# Max |logit difference| a correct merge stays under, per dtype, in units of the logits' spread (their standard
# deviation over the vocabulary, root-mean-square over positions) times sqrt(number of layers). Rounding error
# grows with the size of the values rounded, and the errors each layer adds to the residual stream accumulate
# like a random walk; so one relative bound serves a 2-layer tiny model (logit spread ~0.16) and a 28-layer 7B
# (~1.2) alike, where an absolute one is blind on the first or too strict on the second.
# fp32: the merge only reassociates W·x + s·B(A·x) into (W + s·BA)·x: ~1e-7 relative, so 1e-3 keeps orders of
# margin and still catches any real change of weights.
# bf16 (unit roundoff 2^-9): the merged weights are rounded once more than the unmerged path, and a delta
# smaller than half a bf16 step of its weight vanishes entirely. Measured under teacher forcing, in these units
# (docs/BENCHMARKS.md, "Merge verification"): correct merges 0.04-0.09 on the tiny Qwen2/Mistral and 0.07-0.08 on
# the 7B shapes with a random LoRA; 0.23 (qwen-rephrase) and 0.57 (mistral-stories, QLoRA r64) for adapters
# trained 12 steps by `ftr train` on the random 7B shapes, whose deltas (<= 2e-4) are mostly below that half step;
# the cheapest broken merge, into a 4-bit base, 1.0-1.6 on all of them, a delta scaled by 1.5 or transposed more.
# 0.75 sits between, 1.3x from the worst correct merge and from the closest broken one.
# fp16: 3 more mantissa bits than bf16, so the bf16 bound / 8.
RELATIVE_TOLERANCE = {"float32": 1e-3, "float16": 0.75 / 8, "bfloat16": 0.75}


def golden_prompts(test_file: Path, n: int) -> list[dict]:
    """The first n rows of a split as prompts: every message before the row's last assistant turn."""
    prompts = []
    with open(test_file, encoding="utf-8") as fh:
        for line in fh:
            if len(prompts) == n:
                break
            if not line.strip():
                continue
            row = json.loads(line)
            messages = row["messages"]
            last_answer = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
            prompts.append({"id": row.get("id", len(prompts)), "messages": messages[:last_answer]})
    if not prompts:
        raise ValueError(f"{test_file}: no rows to use as golden prompts")
    return prompts


@dataclass
class Sequence:
    """A golden prompt's token ids and the reference model's greedy continuation of it."""

    prompt_ids: list[int]
    tokens: list[int]
    text: str

    @property
    def ids(self) -> list[int]:
        return self.prompt_ids + self.tokens


def greedy_sequences(model, tokenizer, prompts: list[dict], max_new_tokens: int, stop_ids: list[int]) -> list[Sequence]:
    """The reference model's greedy continuation of each prompt (one at a time: no padding)."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=stop_ids,
                              pad_token_id=tokenizer.pad_token_id, **GREEDY)
    sequences = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=True,
                                                return_dict=False)
            input_ids = torch.tensor([ids], device=model.device)
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 generation_config=config)
            tokens = out[0, len(ids):].tolist()
            sequences.append(Sequence(ids, tokens, tokenizer.decode(tokens, skip_special_tokens=True)))
    return sequences


def forced_logits(model, sequence: Sequence):
    """Next-token logits at every position from the prompt's last token on: [len(tokens) + 1, vocab], float32 CPU.

    Row i predicts tokens[i] (the last row predicts what follows the continuation)."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([sequence.ids], device=model.device)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0]
        return logits[len(sequence.prompt_ids) - 1:].float().cpu()


def adapter_effect(peft_model, sequences: list[Sequence], reference: list) -> float:
    """Max |logit change| the adapter causes on the golden sequences (base = adapter disabled).

    A merge is only tested if this is well above the tolerance: otherwise merged == base would pass too.
    """
    effect = 0.0
    with peft_model.disable_adapter():
        for sequence, logits in zip(sequences, reference, strict=True):
            effect = max(effect, (forced_logits(peft_model, sequence) - logits).abs().max().item())
    return effect


def compare_positions(reference, candidate, tolerance: float) -> dict:
    """One sequence: reference and candidate logits [positions, vocab] read from the same tokens."""
    diff = (reference - candidate).abs().max(dim=-1).values  # per position
    ref_top = reference.topk(2, dim=-1)
    agree = ref_top.indices[:, 0] == candidate.argmax(dim=-1)
    margins = ref_top.values[:, 0] - ref_top.values[:, 1]
    flips = (~agree).nonzero().flatten().tolist()
    # A flip is a near tie when the two models' difference there explains it and is itself within tolerance.
    near_ties = [i for i in flips if diff[i] <= tolerance and margins[i] <= 2 * diff[i]]
    return {"positions": len(diff), "max_abs_logit_diff": diff.max().item() if len(diff) else 0.0,
            "mean_abs_logit_diff": diff.mean().item() if len(diff) else 0.0,
            "top1_agreement": agree.float().mean().item() if len(diff) else 1.0, "top1_flips": flips,
            "near_ties": len(near_ties), "unexplained_flips": [i for i in flips if i not in near_ties],
            "reference_top2_margin_at_flips": [round(margins[i].item(), 4) for i in flips]}


def logit_scale(references: list) -> float:
    """The reference logits' spread: standard deviation over the vocabulary, root-mean-square over positions."""
    import torch

    variances = torch.cat([logits.var(dim=-1) for logits in references])
    return variances.mean().sqrt().item() if len(variances) else 0.0


def tolerance_for(dtype: str, references: list, layers: int) -> float:
    """The dtype's relative bound times the reference logits' spread times sqrt(layers)."""
    return RELATIVE_TOLERANCE[dtype] * logit_scale(references) * max(layers, 1) ** 0.5


def compare(references: list, candidates: list, tolerance: float) -> dict:
    """Per-sequence and overall figures; passed only if every position is within tolerance (absolute, e.g. from
    tolerance_for), so that every top-1 disagreement is a near tie."""
    sequences = [compare_positions(ref, cand, tolerance) | {"index": index}
                 for index, (ref, cand) in enumerate(zip(references, candidates, strict=True))]
    positions = sum(s["positions"] for s in sequences)
    max_diff = max((s["max_abs_logit_diff"] for s in sequences), default=0.0)
    agreeing = sum(s["top1_agreement"] * s["positions"] for s in sequences)
    unexplained = sum(len(s["unexplained_flips"]) for s in sequences)
    return {"passed": max_diff <= tolerance and unexplained == 0, "method": "teacher forcing",
            "prompts_compared": len(sequences), "positions_compared": positions,
            "max_abs_logit_diff": max_diff,
            "mean_abs_logit_diff": sum(s["mean_abs_logit_diff"] * s["positions"] for s in sequences) / max(positions, 1),
            "top1_agreement": agreeing / max(positions, 1), "near_ties": sum(s["near_ties"] for s in sequences),
            "unexplained_flips": unexplained, "tolerance": tolerance, "logit_scale": logit_scale(references),
            "prompts": sequences}
