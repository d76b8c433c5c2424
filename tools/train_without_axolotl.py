"""A check of scratch-rephrase's hyperparameters on a GPU host where Axolotl cannot be installed. NOT the proof:
the proof is `ftr train scratch-rephrase` (Axolotl) + `ftr eval scratch-rephrase --check-bars` (README.md).

    python tools/train_without_axolotl.py build/scratch-rephrase build/tiny-models/qwen2-scratch 8

Needs the converted splits under RUN/data (ftr.train.convert_data). Mimics what Axolotl does with the recipe: the
converted train/val rows, the qwen_25 chat template, loss on the assistant turn + <|im_end|> only
(train_on_eos: turn), pure bf16 weights (bf16: true), AdamW (weight decay 0.01), lr 1e-3 cosine with 5% warm-up,
~90 rows per step (micro_batch 8 x 2048 packed tokens; here padded batches, no packing), 8 epochs, grad clip 1.0,
no Liger. Writes the model and a trainer_state.json (log_history) to RUN/adapter like Axolotl's output_dir, so
`ftr eval` reads it the same way.
"""

import json
import math
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from ftr.eval.generation import answer_tokens
from ftr.eval.rows import read_references

run = Path(sys.argv[1])
model_dir = Path(sys.argv[2])
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 8
rows_per_step, lr, warmup_ratio = 90, 1e-3, 0.05
DEV = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(42)
random.seed(42)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(DEV)
model.config.use_cache = False
print("tokenizing", flush=True)
train = [answer_tokens(tokenizer, r) for r in read_references(run / "data" / "train.jsonl")]
val = [answer_tokens(tokenizer, r) for r in read_references(run / "data" / "val.jsonl")]
print(f"train {len(train)} rows, {sum(len(i) for i, _ in train)} tokens; val {len(val)}", flush=True)
steps_per_epoch = math.ceil(len(train) / rows_per_step)
total = steps_per_epoch * epochs
warmup = int(total * warmup_ratio)
opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, fused=DEV == "cuda")
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup))))
pad = tokenizer.pad_token_id


def loss_of(batch):
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    scored = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, (ids, start) in enumerate(batch):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = 1
        scored[i, start:len(ids)] = True
    input_ids, mask, scored = input_ids.to(DEV), mask.to(DEV), scored.to(DEV)
    hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    logits = model.lm_head(hidden[:, :-1][scored[:, 1:]]).float()
    return F.cross_entropy(logits, input_ids[:, 1:][scored[:, 1:]])


def evaluate():
    model.eval()
    with torch.no_grad():
        losses = [loss_of(val[i:i + 100]).item() for i in range(0, len(val), 100)]
    model.train()
    return sum(losses) / len(losses)


history, step, start = [], 0, time.time()
model.train()
for epoch in range(epochs):
    random.shuffle(train)
    for i in range(0, len(train), rows_per_step):
        loss = loss_of(train[i:i + rows_per_step])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % 10 == 0:
            history.append({"step": step, "epoch": step / steps_per_epoch, "loss": loss.item()})
            print(f"step {step}/{total} loss {loss.item():.4f} {time.time() - start:.0f}s", flush=True)
        if step % 100 == 0 or step == total:
            history.append({"step": step, "eval_loss": evaluate()})
            print(f"step {step}/{total} loss {loss.item():.4f} eval_loss {history[-1]['eval_loss']:.4f} "
                  f"{time.time() - start:.0f}s", flush=True)
out = run / "adapter"
out.mkdir(parents=True, exist_ok=True)
model.save_pretrained(out)
tokenizer.save_pretrained(out)
(out / "trainer_state.json").write_text(json.dumps({"log_history": history}))
print(f"trained {total} steps in {time.time() - start:.0f}s", flush=True)
