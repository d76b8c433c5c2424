"""Test-only Axolotl plugin (`plugins: [shard_probe.ShardProbe]`, tests/multi on PYTHONPATH): what each rank did.

Every rank appends JSON lines to $FTR_SHARD_PROBE/rank<RANK>.jsonl: once its distributed setup (world size, backend,
DDP's find_unused_parameters, gradient checkpointing kwargs, device), then per training micro-batch the global step,
a hash of each row's real tokens, the row's trainable label count, the loss and num_items_in_batch, and a `save`
line whenever the trainer itself writes the model. The tests read them to prove disjoint shards and rank-0 saves.
"""

import hashlib
import json
import os
from pathlib import Path

from axolotl.integrations.base import BasePlugin


def _rows(inputs: dict) -> list[dict]:
    ids, labels, mask = inputs["input_ids"], inputs["labels"], inputs.get("attention_mask")
    rows = []
    for i in range(ids.shape[0]):
        real = ids[i][mask[i] != 0] if mask is not None else ids[i]
        rows.append({"sha": hashlib.sha1(real.cpu().numpy().tobytes()).hexdigest()[:16],
                     "tokens": int(real.numel()), "trainable": int((labels[i][1:] != -100).sum())})
    return rows


class ShardProbe(BasePlugin):
    def add_callbacks_post_trainer(self, cfg, trainer):
        import torch.distributed as dist

        rank = int(os.environ.get("RANK", 0))
        path = Path(os.environ["FTR_SHARD_PROBE"]) / f"rank{rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(row: dict) -> None:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"rank": rank, **row}) + "\n")

        compute_loss, save = trainer.compute_loss, trainer._save
        told = []

        def probed_loss(model, inputs, *args, **kwargs):
            if not told:
                told.append(True)
                args_ = trainer.args
                write({"event": "setup", "world_size": dist.get_world_size() if dist.is_initialized() else 1,
                       "backend": dist.get_backend() if dist.is_initialized() else None,
                       "find_unused_parameters": args_.ddp_find_unused_parameters,
                       "gradient_checkpointing_kwargs": args_.gradient_checkpointing_kwargs,
                       "device": str(args_.device), "ddp_wrapped": type(model).__name__})
            loss = compute_loss(model, inputs, *args, **kwargs)
            if model.training:
                value = loss[0] if isinstance(loss, tuple) else loss
                items = kwargs.get("num_items_in_batch")
                write({"event": "batch", "step": trainer.state.global_step, "rows": _rows(inputs),
                       "loss": float(value.detach()), "num_items_in_batch": None if items is None else int(items)})
            return loss

        def probed_save(output_dir=None, *args, **kwargs):
            write({"event": "save", "output_dir": str(output_dir)})
            return save(output_dir, *args, **kwargs)

        trainer.compute_loss, trainer._save = probed_loss, probed_save
        return []
