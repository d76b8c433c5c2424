"""An Axolotl plugin: Liger's RoPE kernel also in the attention layers that Axolotl's LoRA kernels rewrote.

Axolotl 0.19 rewrites the attention forward for `lora_qkv_kernel` (axolotl.monkeypatch.lora_kernels.
patch_self_attn_lora) before any plugin runs. The rewritten forward is exec'd in that module, and it imports
`apply_rotary_pos_emb` from the model's module (e.g. transformers' modeling_qwen2) at that moment. Liger's plugin
replaces the model module's function later (its pre_model_load), so the rewritten forward keeps transformers' eager
RoPE although the config says `liger_rope: true`. Eager RoPE costs a neg, a cat, four multiplies and two adds per
layer forward (more in the backward), and copies q and k into the layout the attention kernel wants; Liger's
kernel rotates q and k in place in that layout.

After the model is built (so after both patches), this plugin points the rewritten forward at the function the model
module holds now. It changes nothing when the two already agree, or when the LoRA attention patch did not run.
"""

from __future__ import annotations

import importlib
import sys

from axolotl.integrations.base import BasePlugin

PATCH_MODULE = "axolotl.monkeypatch.lora_kernels"
NAME = "apply_rotary_pos_emb"


def rewritten_attention_classes(model) -> list[type]:
    """Attention classes of `model` whose forward Axolotl's LoRA patch rewrote (they keep `_original_forward`)."""
    seen = []
    for module in model.modules():
        cls = type(module)
        if hasattr(cls, "_original_forward") and cls not in seen:
            seen.append(cls)
    return seen


def align(model) -> str | None:
    """Rebind the rewritten forward's RoPE to the model module's current one; the name of what it now calls, or
    None when nothing needed changing."""
    patch = sys.modules.get(PATCH_MODULE)
    if patch is None:
        return None
    for cls in rewritten_attention_classes(model):
        current = getattr(importlib.import_module(cls.__module__), NAME, None)
        if current is not None and patch.__dict__.get(NAME) is not current:
            # the rewritten forward's globals are that module's: this is the binding it looks up at each call
            setattr(patch, NAME, current)
            return f"{current.__module__}.{current.__name__}"
    return None


class LigerRopePlugin(BasePlugin):
    """plugins: [..., axolotl.integrations.liger.LigerPlugin, ftr.liger_rope.LigerRopePlugin]"""

    def post_model_build(self, cfg, model):
        if not cfg.liger_rope:
            return
        now = align(model)
        if now:
            from axolotl.utils.logging import get_logger

            get_logger(__name__).info("liger_rope: the LoRA-kernel attention forward now calls %s", now)
