"""Compare two models on golden prompts: greedy outputs must match token for token, and the logits of every
generated step must stay within a tolerance chosen for the dtype. `ftr merge` runs it on the adapter model
(base + PEFT adapter, unmerged) and the merged model.
"""

import json
from dataclasses import dataclass
from pathlib import Path

# Max |logit difference| a correct merge stays under, per dtype.
# fp32: the merge only reassociates W·x + s·B(A·x) into (W + s·BA)·x; what is left is ~1e-7 relative rounding
# (tiny-rephrase measures 3e-7), ~1e-5 on the logits of 10-30 of a 7B, so 1e-3 keeps two orders of margin and
# still catches any real change of weights (a wrong scale or a missed module moves logits by 0.1 or more).
# bf16 (8-bit mantissa, unit roundoff u = 2^-9): merged weights are rounded once more than the unmerged path.
# tiny-rephrase measures 0.0068 on logits of magnitude ~1 (3u relative); a 7B has logits of 10-30 and 28
# layers for the difference to grow through, i.e. ~0.1-0.6 expected, hence 1.0. A broken merge (into a 4-bit
# base, wrong alpha/r scaling, the base written back unmerged) moves logits by whole units and flips greedy
# tokens, which the identical-output check catches even below the tolerance.
# fp16: 3 more mantissa bits than bf16, so the same bound / 8 (tiny-rephrase measures 0.001).
LOGIT_TOLERANCE = {"float32": 1e-3, "float16": 0.125, "bfloat16": 1.0}
GREEDY = dict(do_sample=False, num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0)


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
class GreedyRun:
    """One prompt's greedy continuation: prompt ids, generated ids, text and the raw logits of each step."""

    prompt_ids: list[int]
    tokens: list[int]
    text: str
    logits: object  # torch.Tensor [steps, vocab], float32 on CPU


def greedy_runs(model, tokenizer, prompts: list[dict], max_new_tokens: int, stop_ids: list[int]) -> list[GreedyRun]:
    """Greedy generation one prompt at a time (no padding, so both models see identical inputs)."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id,
                              output_logits=True, return_dict_in_generate=True, **GREEDY)
    runs = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tokenizer.apply_chat_template(prompt["messages"], add_generation_prompt=True, tokenize=True,
                                                return_dict=False)
            input_ids = torch.tensor([ids], device=model.device)
            out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 generation_config=config)
            tokens = out.sequences[0, len(ids):].tolist()
            logits = torch.cat([step.float().cpu() for step in out.logits])[: len(tokens)]
            runs.append(GreedyRun(ids, tokens, tokenizer.decode(tokens, skip_special_tokens=True), logits))
    return runs


def adapter_effect(peft_model, reference: list[GreedyRun]) -> float:
    """Max |logit change| the adapter causes on the reference continuations (base = adapter disabled).

    A merge is only tested if this is well above the tolerance: otherwise merged == base would pass too.
    """
    import torch

    effect = 0.0
    with torch.inference_mode(), peft_model.disable_adapter():
        for run in reference:
            if not run.tokens:
                continue
            ids = torch.tensor([run.prompt_ids + run.tokens[:-1]], device=peft_model.device)
            logits = peft_model(input_ids=ids).logits[0, len(run.prompt_ids) - 1:].float().cpu()
            effect = max(effect, (logits - run.logits).abs().max().item())
    return effect


def _top2_margin(logits_row) -> float:
    top = logits_row.topk(2).values
    return float(top[0] - top[1])


def compare(reference: list[GreedyRun], candidate: list[GreedyRun], tolerance: float,
            allow_near_ties: bool = False) -> dict:
    """Per-prompt and overall figures; passed only if every output is identical and every step within tolerance.

    Logits are compared on the steps both runs generated from the same context: up to and including the first
    step where the tokens differ (after it the contexts differ and the logits are not comparable).
    A near tie is a first differing token whose step is itself within tolerance: two logits closer than the
    rounding noise swapped places. allow_near_ties accepts those outputs (the logit bound still holds).
    """
    prompts, max_diff = [], 0.0
    for index, (ref, cand) in enumerate(zip(reference, candidate, strict=True)):
        common = min(len(ref.tokens), len(cand.tokens))
        diverge = next((i for i in range(common) if ref.tokens[i] != cand.tokens[i]), None)
        if diverge is None and len(ref.tokens) != len(cand.tokens):
            diverge = common  # one stopped, the other went on
        steps = min(common, diverge + 1 if diverge is not None else common)
        diff = (ref.logits[:steps] - cand.logits[:steps]).abs().max().item() if steps else 0.0
        max_diff = max(max_diff, diff)
        entry = {"index": index, "identical": diverge is None, "near_tie": False, "tokens": len(ref.tokens),
                 "max_abs_logit_diff": diff, "reference_text": ref.text}
        if diverge is not None:
            entry.update(candidate_text=cand.text, first_divergence_step=diverge)
            if diverge < common:
                step_diff = (ref.logits[diverge] - cand.logits[diverge]).abs().max().item()
                # The argmax can only swap if the top-2 margin is <= 2x the logit difference at that step.
                entry.update(reference_top2_margin_at_divergence=_top2_margin(ref.logits[diverge]),
                             logit_diff_at_divergence=step_diff, near_tie=step_diff <= tolerance)
        prompts.append(entry)
    identical = sum(p["identical"] for p in prompts)
    near_ties = sum(p["near_tie"] for p in prompts)
    outputs_ok = identical + (near_ties if allow_near_ties else 0) == len(prompts)
    return {"passed": outputs_ok and max_diff <= tolerance, "identical_outputs": identical, "near_ties": near_ties,
            "allow_near_ties": allow_near_ties, "prompts_compared": len(prompts), "max_abs_logit_diff": max_diff,
            "tolerance": tolerance, "prompts": prompts}
