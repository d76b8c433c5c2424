"""What `python -m ftr.bench` benchmarks, and the arithmetic over what it records (no I/O but a log read).

The configs: (a) the seed setup, (b) Axolotl's defaults with packing, (c) qwen-rephrase as shipped, (c)'s
leave-one-out ablation and QLoRA at mistral-stories' shape, each as (label, recipe, recipe --set overrides, raw
Axolotl keys, model shape). The arithmetic: matmul parameters and LoRA FLOPs per token (MFU), throughput over the
steps ftr.bench.plugin recorded after the warm-up, peak memory, and two configs' losses compared.
"""

from pathlib import Path

PEAK_BF16_FLOPS = {"H100": 989.4e12, "H200": 989.4e12, "H800": 989.4e12, "A100": 312e12}
PACKAGES = ("torch", "transformers", "axolotl", "peft", "accelerate", "trl", "datasets", "liger-kernel",
            "bitsandbytes", "triton", "tokenizers")

# key: (label, recipe, recipe --set overrides, raw Axolotl keys, shape); the raw key DROP_PLUGINS lists plugins
# of the rendered config to leave out
DROP_PLUGINS = "drop_plugins"
MAIN = {
    "seed_baseline": ("(a) seed 000: no packing, micro-batch 4, grad. checkpointing", "qwen-rephrase",
                      dict(sample_packing=False, micro_batch_size=4, lora_dropout=0.1, lora_kernels=False,
                           liger=False, gradient_checkpointing=True, optimizer="adamw_torch"), {}, "qwen2.5-7b"),
    "axolotl_default": ("(b) Axolotl defaults + sample packing: micro-batch 2, grad. checkpointing", "qwen-rephrase",
                        dict(sample_packing=True, micro_batch_size=2, lora_dropout=0.05, lora_kernels=False,
                             liger=False, gradient_checkpointing=True, optimizer="adamw_torch"), {}, "qwen2.5-7b"),
    "recipe": ("(c) qwen-rephrase as shipped", "qwen-rephrase", {}, {}, "qwen2.5-7b"),
}
# Leave one lever of (c) out at a time: tokens/s of (c) over the row's is that lever's gain.
ABLATION = {
    "recipe_mb2": ("(c) at micro-batch 2 (same batches as (b): the loss check)", "qwen-rephrase",
                   dict(micro_batch_size=2), {}, "qwen2.5-7b"),
    "recipe_no_liger": ("(c) without Liger (rope, rms_norm, glu, fused linear CE)", "qwen-rephrase",
                        dict(liger=False), {}, "qwen2.5-7b"),
    "recipe_no_lora_kernels": ("(c) without Axolotl's LoRA kernels", "qwen-rephrase",
                               dict(lora_kernels=False), {}, "qwen2.5-7b"),
    "recipe_grad_ckpt": ("(c) with gradient checkpointing", "qwen-rephrase",
                         dict(gradient_checkpointing=True), {}, "qwen2.5-7b"),
    "recipe_adamw_torch": ("(c) with unfused AdamW (adamw_torch)", "qwen-rephrase",
                           dict(optimizer="adamw_torch"), {}, "qwen2.5-7b"),
    "recipe_no_varlen": ("(c) with stock SDPA (4D mask) instead of varlen SDPA", "qwen-rephrase",
                         {}, dict(sdpa_varlen=False), "qwen2.5-7b"),
    "recipe_torch_compile": ("(c) plus torch_compile (not shipped)", "qwen-rephrase",
                             {}, dict(torch_compile=True), "qwen2.5-7b"),
    "recipe_eager_rope": ("(c) with the eager RoPE Axolotl's LoRA attention rewrite keeps (no ftr.liger_rope)",
                          "qwen-rephrase", {}, {DROP_PLUGINS: ["ftr.liger_rope.LigerRopePlugin"]}, "qwen2.5-7b"),
    "recipe_host_syncs": ("(c) without ftr.async_steps (the host waits on the GPU in every step: nan/inf check, "
                          "token count, blocking batch copy)", "qwen-rephrase", dict(async_steps=False), {},
                          "qwen2.5-7b"),
    "recipe_no_packed_attention": ("(c) without ftr.packed_attention (Axolotl's varlen SDPA as is)", "qwen-rephrase",
                                   dict(packed_attention=False), {}, "qwen2.5-7b"),
    "recipe_no_levers": ("(c) without its kernel levers (no Liger, LoRA kernels or packed_attention): the loss check",
                         "qwen-rephrase", dict(liger=False, lora_kernels=False, packed_attention=False), {},
                         "qwen2.5-7b"),
    "recipe_cce": ("(c) with Cut Cross-Entropy instead of Liger's fused linear CE (not shipped)", "qwen-rephrase",
                   dict(cut_cross_entropy=True), {}, "qwen2.5-7b"),
    "recipe_compile_cce": ("(c) with Cut Cross-Entropy and torch_compile (not shipped)", "qwen-rephrase",
                           dict(cut_cross_entropy=True), dict(torch_compile=True), "qwen2.5-7b"),
    "recipe_fp8": ("(c) with torchao FP8 matmuls (Axolotl fp8; LoRA kernels off, as they bypass Float8Linear; "
                   "not shipped)", "qwen-rephrase", dict(lora_kernels=False), dict(fp8=True), "qwen2.5-7b"),
}
# mistral-stories' levers as (c)'s: packing, no checkpointing, LoRA dropout 0 + kernels, Liger, fused AdamW
MISTRAL_FAST = dict(gradient_accumulation_steps=1, sample_packing=True, group_by_length=False, micro_batch_size=4,
                    gradient_checkpointing=False, lora_dropout=0.0, lora_kernels=True, liger=True,
                    packed_attention=True)
QLORA = {
    "qlora_mistral": ("QLoRA nf4, mistral-stories as shipped (Mistral-7B shape, r64, all linear, packing off)",
                      "mistral-stories", dict(gradient_accumulation_steps=1), {}, "mistral-7b"),
    "qlora_mistral_fast": ("QLoRA nf4 at mistral-stories' shape with (c)'s levers (packing, no ckpt, kernels)",
                           "mistral-stories", MISTRAL_FAST, {}, "mistral-7b"),
    "lora_mistral_fast": ("bf16 LoRA at the same shape and levers (the QLoRA ratio's reference)",
                          "mistral-stories", dict(MISTRAL_FAST, adapter="lora", load_in_4bit=False), {}, "mistral-7b"),
}
ORDER = ["recipe", "axolotl_default", "seed_baseline", "recipe_host_syncs", "recipe_no_packed_attention",
         "recipe_eager_rope", "recipe_mb2", "recipe_no_liger", "recipe_no_lora_kernels", "recipe_grad_ckpt",
         "recipe_adamw_torch", "recipe_no_varlen", "recipe_no_levers", "qlora_mistral", "qlora_mistral_fast",
         "lora_mistral_fast", "recipe_cce", "recipe_fp8", "recipe_torch_compile", "recipe_compile_cce"]
# A torch_compile row's cold compile, beyond a row's usual time (a time budget must know it): (c) with torch_compile
# trained its 15 steps in 284 s against ~10 s without, on an H100 (2026-12-08, docs/BENCHMARKS.md). So the compile
# rows come last, where a budget that cannot hold them drops them and nothing else.
COLD_COMPILE_S = 275
# --loss-steps N: these two, N steps each, compared at equal tokens (same batches, schedule and seed)
LOSS_CURVE = ("recipe", "recipe_no_levers")
ALL = {**MAIN, **ABLATION, **QLORA}
COMPILE_ROWS = tuple(k for k in ORDER if ALL[k][3].get("torch_compile"))  # the rows that pay COLD_COMPILE_S
# Gain rows of the ablation: (lever, config without it).
LEVERS = [("micro-batch 4 (vs 2)", "recipe_mb2"), ("Liger kernels", "recipe_no_liger"),
          ("Axolotl LoRA kernels", "recipe_no_lora_kernels"), ("no gradient checkpointing", "recipe_grad_ckpt"),
          ("fused AdamW", "recipe_adamw_torch"), ("varlen SDPA (vs 4D-mask SDPA)", "recipe_no_varlen"),
          ("ftr.packed_attention", "recipe_no_packed_attention"),
          ("ftr.liger_rope (Liger's RoPE under the LoRA kernels)", "recipe_eager_rope"),
          ("Liger + LoRA kernels + packed_attention together", "recipe_no_levers"),
          ("torch.compile (not shipped)", "recipe_torch_compile"),
          ("ftr.async_steps (no host sync in a step)", "recipe_host_syncs"),
          ("Cut Cross-Entropy instead of Liger's (not shipped)", "recipe_cce"),
          ("Cut Cross-Entropy + torch.compile (not shipped)", "recipe_compile_cce"),
          ("torchao FP8 with LoRA kernels off (not shipped)", "recipe_fp8")]
# The smoke mode (CPU, CI) trains with recipes/profiles/cpu.yaml's device settings, but keeps each setup's own
# batch shape and learning rate (those are what the setups compare), at a short sequence_len.
SMOKE_KEEP = ("micro_batch_size", "gradient_accumulation_steps", "learning_rate")
SMOKE_SEQUENCE_LEN = 512


def smoke_sets() -> dict:
    """The --set overrides of the smoke mode: the CPU profile minus SMOKE_KEEP, and SMOKE_SEQUENCE_LEN."""
    from ftr.recipes import profile

    cpu = {key: value for key, value in profile("cpu").items() if key not in SMOKE_KEEP}
    return {**cpu, "sequence_len": SMOKE_SEQUENCE_LEN}


# ----------------------------------------------------------------------------------------------------------------
# arithmetic


def row_need_s(key: str, steps: int, bench_steps: int, min_run_s: float, partial: bool = False) -> float:
    """Seconds row `key` needs before a time budget lets it start: min_run_s for bench_steps steps (scaled to its
    own steps; partial (the loss-curve runs): a short run is enough, the losses logged before the budget stops it
    stay), plus COLD_COMPILE_S for a torch_compile row."""
    run = min_run_s * (1.0 if partial else max(1.0, steps / max(bench_steps, 1)))
    return run + (COLD_COMPILE_S if key in COMPILE_ROWS else 0)


def linear_params(shape: dict) -> int:
    """Parameters of every matmul a token goes through (attention and MLP projections, LM head; no embedding)."""
    d, inter, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    head_dim = d // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head_dim
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * inter
    return layers * per_layer + d * shape["vocab_size"]


def flops_per_token(shape: dict) -> float:
    """Model FLOPs per trained token for LoRA: forward 2N + backward through the frozen weights 2N (no weight
    gradients for them; LoRA's own matmuls are <1% and attention scores ~1% at these lengths, both left out).
    Gradient checkpointing's recomputed forward is not counted (MFU, not hardware FLOPs utilisation)."""
    return 4.0 * linear_params(shape)


def attention_flops_per_pair(shape: dict) -> float:
    """FLOPs of one causal (query, key) pair over all layers: QK^T and PV forward (2 x 2 x heads x head_dim), and a
    backward of twice that (dS -> dQ, dK; dP -> dV), as in the attention-inclusive MFU convention (PaLM, NeMo)."""
    return 12.0 * shape["num_hidden_layers"] * shape["hidden_size"]


def peak_flops(device_name: str | None) -> float | None:
    for key, value in PEAK_BF16_FLOPS.items():
        if device_name and key in device_name:
            return value
    return None


def summarise_steps(rows: list[dict], warmup: int) -> dict:
    """Throughput over the steps after `warmup`, from ftr.bench.plugin's JSON lines."""
    # profiled steps (FTR_BENCH_PROFILE) run under torch.profiler: their times say nothing of throughput
    steps = [r for r in rows if r.get("event") == "step" and not r.get("profiled")]
    end = [r for r in rows if r.get("event") == "train_end"]
    losses = {r["step"]: r["loss"] for r in rows if r.get("event") == "log" and "loss" in r}
    timed = [r for r in steps if r.get("t") is not None]
    out = {"steps": len(steps), "loss": losses}
    # Axolotl resets the peak counter when it logs, so the run's peak is the largest reading, not the last.
    peaks = [r["peak_mem_gib"] for r in steps + end if r.get("peak_mem_gib") is not None]
    if peaks:
        out["peak_mem_gib"] = max(peaks)
    start = next((r for r in timed if r["step"] >= warmup), None)
    if start is None or start is timed[-1]:
        return out
    stop = timed[-1]
    window = [r for r in steps if start["step"] < r["step"] <= stop["step"]]
    seconds = stop["t"] - start["t"]
    if seconds <= 0 or not window:
        return out
    tokens = sum(r["tokens"] for r in window)
    pairs = sum(r.get("attn_pairs", 0) for r in window)
    trainable = sum(r["trainable"] for r in window)
    slots = sum(r["slots"] for r in window)
    out.update(measured_steps=len(window), seconds=round(seconds, 3), step_time_s=round(seconds / len(window), 4),
               tokens_per_s_per_gpu=round(tokens / seconds, 1), trainable_tokens_per_s=round(trainable / seconds, 1),
               slot_tokens_per_s=round(slots / seconds, 1), padding_fraction=round(1 - tokens / slots, 4) if slots else None,
               tokens_per_step=round(tokens / len(window), 1),
               attn_pairs_per_token=round(pairs / tokens, 1) if tokens else None)
    return out


def axolotl_peak_mem(log_text: str) -> float | None:
    """Largest `memory/max_allocated (GiB)` Axolotl logged (torch.cuda.max_memory_allocated, reset at each log)."""
    import re

    values = [float(v) for v in re.findall(r"memory/max_allocated \(GiB\)'?: '?([0-9.]+)", log_text)]
    return max(values) if values else None


def apply_log_peaks(results: dict, logs: Path) -> dict:
    """Take each config's peak memory as the larger of the step recorder's and Axolotl's own log."""
    for key, entry in results.get("configs", {}).items():
        log = logs / f"train-{key}.log"
        if not log.exists():
            continue
        peak = axolotl_peak_mem(log.read_text(encoding="utf-8", errors="replace"))
        if peak is not None:
            entry["peak_mem_gib_axolotl_log"] = peak
            entry["peak_mem_gib"] = max(peak, entry.get("peak_mem_gib") or 0)
    return results


def add_mfu(result: dict, shape: dict, device_name: str | None, gpus: int = 1) -> dict:
    peak = peak_flops(device_name)
    rate = result.get("tokens_per_s_per_gpu")
    result["flops_per_token"] = flops_per_token(shape)
    result["mfu"] = round(rate * flops_per_token(shape) / peak, 4) if (peak and rate) else None
    pairs = result.get("attn_pairs_per_token")
    if peak and rate and pairs is not None:
        with_attention = flops_per_token(shape) + pairs * attention_flops_per_pair(shape)
        result["mfu_with_attention"] = round(rate * with_attention / peak, 4)
    return result


def loss_at_tokens(losses: dict, tokens_per_step: float) -> list[tuple[float, float]]:
    """[(training tokens seen, logged loss)], steps converted to tokens."""
    return [(int(step) * tokens_per_step, loss) for step, loss in sorted(losses.items(), key=lambda kv: int(kv[0]))]


def loss_check(b: dict, c: dict) -> dict | None:
    """Compare two configs' logged losses at equal training tokens (same optimizer steps and batch)."""
    lb, lc = {int(k): v for k, v in b.get("loss", {}).items()}, {int(k): v for k, v in c.get("loss", {}).items()}
    common = sorted(set(lb) & set(lc))
    if not common:
        return None
    diffs = [lc[s] - lb[s] for s in common]
    return {"steps": common, "loss_b": [lb[s] for s in common], "loss_c": [lc[s] for s in common],
            "max_abs_diff": round(max(abs(d) for d in diffs), 4), "mean_diff": round(sum(diffs) / len(diffs), 4)}
