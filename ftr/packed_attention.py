"""An Axolotl plugin: packed-row attention that works out the document boundaries once per batch, not per layer.

Axolotl's `sdpa_varlen` path (axolotl.monkeypatch.attention.sdpa_varlen) runs packed rows through torch's
`varlen_attn`, but each of the model's layers recomputes the boundaries from `position_ids` and reads them back to
the host (three to four GPU syncs a layer, ~110 a forward on a 28-layer model), and it repeats K and V for
grouped-query heads (7x on Qwen2.5-7B) because it assumes `varlen_attn` has no GQA mode. This wrapper computes
`cu_seqlens` and the longest document once for each new `position_ids` tensor (every layer of one forward gets the
same tensor object), and passes `enable_gqa` where the installed torch has it. Everything it does not handle (a
real attention mask, dropout, sliding windows, CPU, fp32, unpacked rows) goes to the attention function that was
registered before it, which is Axolotl's. The numbers are the same kernel's: only where its inputs come from changes.

The boundaries are worked out on the CPU, in the data collator, before the batch goes to the GPU: the plugin wraps
the trainer's collators so that a packed batch also carries `cu_seq_lens_q/k` and `max_length_q/k` (the keys of
transformers' padding-free `DataCollatorWithFlattening`, which the model passes down to its attention function
unchanged), so a step reads nothing back from the GPU for them. A call without those keys (a model called directly)
computes them from `position_ids` on the GPU once per forward instead (two syncs).

Turn it on with the recipe var `packed_attention: true` (it needs `sample_packing` and `attn_implementation: sdpa`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from axolotl.integrations.base import BasePlugin

MAX_HEAD_DIM = 256  # the flash kernel behind varlen_attn


BOUNDARY_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


def boundaries(position_ids):
    """(packed, cu_seqlens int32, longest document): packed when the rows hold more documents than there are rows.
    The boundaries are transformers' own (prepare_fa_kwargs_from_position_ids, which Axolotl's varlen SDPA calls).
    On a GPU tensor this reads back twice (the nonzero and the max); on the CPU it costs nothing of the kind."""
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    (cu, _), (longest, _) = prepare_fa_kwargs_from_position_ids(position_ids)
    rows = position_ids.shape[0] if position_ids.dim() > 1 else 1
    packed = cu.numel() - 1 > rows
    return packed, cu, int(longest) if packed else 0


class _Boundaries:
    """boundaries() of the last position_ids seen (one entry: a forward uses one)."""

    def __init__(self):
        self.position_ids = None
        self.value = None

    def of(self, position_ids):
        if position_ids is not self.position_ids:
            self.value = boundaries(position_ids)
            self.position_ids = position_ids
        return self.value


def add_boundaries(batch) -> None:
    """Put a packed CPU batch's document boundaries into it under BOUNDARY_KEYS (an unpacked one is left alone)."""
    position_ids = batch.get("position_ids") if hasattr(batch, "get") else None
    if position_ids is None or getattr(position_ids, "is_cuda", True) or any(k in batch for k in BOUNDARY_KEYS):
        return
    packed, cu, longest = boundaries(position_ids)
    if packed:
        batch.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=longest, max_length_k=longest)


class WithBoundaries:
    """A data collator whose packed batches also carry their document boundaries (add_boundaries)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, *args, **kwargs):
        batch = self.collator(*args, **kwargs)
        add_boundaries(batch)
        return batch

    def __getattr__(self, name):  # the wrapped collator's attributes (tokenizer, ...) stay reachable
        if name == "collator":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.collator, name)


def build_forward(previous: Callable) -> Callable:
    import torch
    from torch.nn.attention.varlen import varlen_attn

    params = set(inspect.signature(varlen_attn).parameters)
    gqa = "enable_gqa" in params
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    seen = _Boundaries()

    def packed_sdpa(module: Any, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
        position_ids = kwargs.get("position_ids")
        head_dim = query.shape[-1]
        if (attention_mask is not None or dropout or position_ids is None or not query.is_cuda
                or query.dtype not in (torch.float16, torch.bfloat16) or head_dim > MAX_HEAD_DIM
                or kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
                or (scaling is not None and abs(scaling - head_dim ** -0.5) > 1e-9)):
            return previous(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        cu, longest = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
        if cu is not None and longest:  # from the collator (self-attention: the keys' boundaries are the same)
            packed, cu = True, cu.to(query.device, torch.int32)
        else:
            packed, cu, longest = seen.of(position_ids)
        if not packed:
            return previous(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        batch, heads, length, _ = query.shape
        kv_heads = key.shape[1]
        extra = {}
        if kv_heads != heads:
            if gqa:
                extra["enable_gqa"] = True
            else:
                key = key.repeat_interleave(heads // kv_heads, dim=1)
                value = value.repeat_interleave(heads // kv_heads, dim=1)
                kv_heads = heads
        q = query.transpose(1, 2).reshape(batch * length, heads, head_dim)
        k = key.transpose(1, 2).reshape(batch * length, kv_heads, head_dim)
        v = value.transpose(1, 2).reshape(batch * length, kv_heads, head_dim)
        out = varlen_attn(q, k, v, cu, cu, longest, longest, **causal, **extra)
        if isinstance(out, tuple):
            out = out[0]
        return out.reshape(batch, length, heads, head_dim), None

    packed_sdpa.previous = previous
    return packed_sdpa


def install() -> bool:
    """Register the wrapper as transformers' `sdpa` attention (once); False when torch has no varlen_attn."""
    try:
        from torch.nn.attention.varlen import varlen_attn  # noqa: F401
    except ImportError:
        return False
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    current = ALL_ATTENTION_FUNCTIONS["sdpa"]
    if not hasattr(current, "previous"):
        ALL_ATTENTION_FUNCTIONS.register("sdpa", build_forward(current))
    return True


def wrap_collators(trainer) -> None:
    """Give the trainer's training and eval collators the boundaries (idempotent)."""
    for name in ("data_collator", "eval_data_collator"):
        collator = getattr(trainer, name, None)
        if collator is not None and not isinstance(collator, WithBoundaries):
            setattr(trainer, name, WithBoundaries(collator))


class PackedAttentionPlugin(BasePlugin):
    """Installs the wrapper after the model is built (so after Axolotl's own sdpa_varlen patch), and has the trainer's
    collators work out the boundaries on the CPU."""

    def post_trainer_create(self, cfg, trainer):
        wrap_collators(trainer)

    def post_model_build(self, cfg, model):
        if not install():
            from axolotl.utils.logging import get_logger

            get_logger(__name__).warning("packed_attention: torch has no varlen_attn; keeping the stock path")
