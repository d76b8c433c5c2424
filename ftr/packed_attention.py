"""An Axolotl plugin: packed-row attention that works out the document boundaries once per batch, not per layer.

Axolotl's `sdpa_varlen` path (axolotl.monkeypatch.attention.sdpa_varlen) runs packed rows through torch's
`varlen_attn`, but each of the model's layers recomputes the boundaries from `position_ids` and reads them back to
the host (three to four GPU syncs a layer, ~110 a forward on a 28-layer model), and it repeats K and V for
grouped-query heads (7x on Qwen2.5-7B) because it assumes `varlen_attn` has no GQA mode. This wrapper computes
`cu_seqlens` and the longest document once for each new `position_ids` tensor (every layer of one forward gets the
same tensor object), and passes `enable_gqa` where the installed torch has it. Everything it does not handle (a
real attention mask, dropout, sliding windows, CPU, fp32, unpacked rows) goes to the attention function that was
registered before it, which is Axolotl's. The numbers are the same kernel's: only where its inputs come from changes.

Turn it on with the recipe var `packed_attention: true` (it needs `sample_packing` and `attn_implementation: sdpa`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from axolotl.integrations.base import BasePlugin

MAX_HEAD_DIM = 256  # the flash kernel behind varlen_attn


class _Boundaries:
    """cu_seqlens and max document length of the last position_ids seen (one entry: a forward uses one)."""

    def __init__(self):
        self.position_ids = None
        self.value = None

    def of(self, position_ids):
        import torch

        if position_ids is not self.position_ids:
            flat = position_ids.reshape(-1)
            starts = (flat == 0).nonzero().view(-1).to(torch.int32)  # one sync
            cu = torch.cat([starts, torch.tensor([flat.numel()], dtype=torch.int32, device=flat.device)])
            rows = position_ids.shape[0] if position_ids.dim() > 1 else 1
            packed = starts.numel() > rows
            self.value = (packed, cu, int(cu.diff().max()) if packed else 0)  # second sync
            self.position_ids = position_ids
        return self.value


def build_forward(previous: Callable) -> Callable:
    import torch
    from torch.nn.attention.varlen import varlen_attn

    params = set(inspect.signature(varlen_attn).parameters)
    gqa = "enable_gqa" in params
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    boundaries = _Boundaries()

    def packed_sdpa(module: Any, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
        position_ids = kwargs.get("position_ids")
        head_dim = query.shape[-1]
        if (attention_mask is not None or dropout or position_ids is None or not query.is_cuda
                or query.dtype not in (torch.float16, torch.bfloat16) or head_dim > MAX_HEAD_DIM
                or kwargs.get("sliding_window") or getattr(module, "sliding_window", None)
                or (scaling is not None and abs(scaling - head_dim ** -0.5) > 1e-9)):
            return previous(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
        packed, cu, longest = boundaries.of(position_ids)
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


class PackedAttentionPlugin(BasePlugin):
    """Installs the wrapper after the model is built (so after Axolotl's own sdpa_varlen patch)."""

    def post_model_build(self, cfg, model):
        if not install():
            from axolotl.utils.logging import get_logger

            get_logger(__name__).warning("packed_attention: torch has no varlen_attn; keeping the stock path")
