"""ftr.liger_rope: after Axolotl's LoRA attention rewrite and Liger's RoPE patch (in that order, as Axolotl 0.19 runs
them), the rewritten attention forward calls the model module's current RoPE (Liger's), not the eager one it
imported. Runs in a subprocess: Axolotl's patch replaces Qwen2Attention.forward for the whole process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("axolotl")

REPO_ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM
import transformers.models.qwen2.modeling_qwen2 as mq
from axolotl.utils.dict import DictDefault
from axolotl.monkeypatch.lora_kernels import patch_self_attn_lora
from ftr.liger_rope import align

folder = sys.argv[1]
Qwen2Config(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128).save_pretrained(folder)
patch_self_attn_lora(DictDefault(base_model=folder))   # Axolotl's pre-model-load patch (lora_qkv_kernel)
eager, calls = mq.apply_rotary_pos_emb, []

def stand_in(q, k, cos, sin, *args, **kwargs):         # Liger's kernel needs a GPU
    calls.append(q.shape)
    return eager(q, k, cos, sin, *args, **kwargs)

mq.apply_rotary_pos_emb = stand_in                     # what LigerPlugin.pre_model_load does (liger_rope)
torch.manual_seed(0)
model = Qwen2ForCausalLM(Qwen2Config.from_pretrained(folder)).eval()
for layer in model.model.layers:                       # what Axolotl's LoRA kernels attach, without PEFT
    attn = layer.self_attn
    attn.apply_qkv = lambda x, a=attn: (a.q_proj(x), a.k_proj(x), a.v_proj(x))
    attn.apply_o = lambda x, a=attn: a.o_proj(x)
ids = torch.tensor([[1, 5, 9, 3, 7, 2]])
with torch.no_grad():
    before_logits = model(ids).logits
    before = len(calls)
    now = align(model)
    after_logits = model(ids).logits
print(json.dumps({"before": before, "after": len(calls) - before, "now": now, "again": align(model),
                  "same": bool(torch.equal(before_logits, after_logits))}))
"""


def test_rewritten_attention_calls_the_patched_rope(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "cfg")], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["before"] == 0          # the bug: the rewritten forward kept the eager RoPE
    assert out["after"] == 2           # fixed: every layer calls the module's current function
    assert out["now"].endswith(".stand_in") and out["again"] is None
    assert out["same"]                 # the stand-in computes the same RoPE, so the outputs match exactly
