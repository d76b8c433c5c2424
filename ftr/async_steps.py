"""An Axolotl plugin that keeps the host from waiting on the GPU inside a training step.

A training step that reads a value back from the GPU makes the host wait until every queued kernel has run; the
host's Python work that follows (the optimizer call, callbacks, the next batch, the first kernels of the next
forward) then runs while the GPU sits idle. Profiled on one H200 (docs/BENCHMARKS.md), qwen-rephrase's steps
idled ~63 ms each of ~500 ms this way. Three readings happen every micro-batch with Axolotl and transformers as
they come, and this plugin moves each to the GPU without changing what is computed or logged:

- transformers' `logging_nan_inf_filter` asks `isnan(loss) or isinf(loss)` on the host. The plugin turns that flag
  off and does the same substitution on the GPU: a non-finite step loss is replaced, for the logged loss only, by
  the mean of the losses logged so far in the window (transformers' rule). The gradient was never affected.
- Axolotl's `include_tkps` (tokens/s in the log) copies two token counts to the host. The plugin keeps the counts
  on the GPU in the same `state.tokens` Axolotl logs from, so they are read once per logging step.
- The batch's copy to the GPU blocks unless it is non-blocking from pinned memory: the recipe template sets
  `accelerator_config: {non_blocking: true}` with this plugin and leaves the `dataloader_*` keys to Axolotl, whose
  defaults (one worker process, pinned memory, prefetch 256) apply only while none of them is set. Setting
  `dataloader_pin_memory: true` alone turned them off: the batches were then collated and pinned in the training
  process, between steps, with the GPU idle (~19 ms a step on an H100, docs/BENCHMARKS.md).

Turn it on with the recipe var `async_steps: true` (the default).
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin


def finite_or_window_mean(trainer, loss):
    """`loss` if finite, else the mean loss of the logging window so far: transformers' nan/inf filter, on the
    device (no host read)."""
    import torch

    total = getattr(trainer, "_tr_loss", None)
    if not torch.is_tensor(loss) or not torch.is_tensor(total):
        return loss
    steps = 1 + trainer.state.global_step - getattr(trainer, "_globalstep_last_logged", 0)
    return torch.where(torch.isfinite(loss), loss, (total / steps).to(loss.dtype))


def count_tokens_on_device(trainer, inputs) -> None:
    """Axolotl's include_tkps counts (trainable = labels != -100, total = token slots) added into
    `trainer.state.tokens` as device tensors: Axolotl reads them with .item() only when it logs."""
    import torch
    from axolotl.utils.distributed import is_distributed  # the test Axolotl's own count makes

    key = "labels" if "labels" in inputs else "input_ids"
    tensor = inputs[key]
    trainable = (tensor != -100).sum()
    total = torch.full((), tensor.numel(), dtype=torch.long, device=tensor.device)  # a fill: torch.tensor() would copy
    if is_distributed():
        torch.distributed.all_reduce(trainable)
        torch.distributed.all_reduce(total)
    tokens = getattr(trainer.state, "tokens", None)
    if tokens is None:
        trainer.state.tokens = {"trainable": trainable.detach(), "total": total}
    else:
        tokens["trainable"] = tokens["trainable"].to(tensor.device) + trainable.detach()
        tokens["total"] = tokens["total"].to(tensor.device) + total


def wrap(trainer) -> None:
    """Move the trainer's two per-micro-batch host reads to the device (idempotent)."""
    if getattr(trainer, "_ftr_async_steps", False):
        return
    trainer._ftr_async_steps = True
    training_step, compute_loss = trainer.training_step, trainer.compute_loss

    def filtered_training_step(*args, **kwargs):
        return finite_or_window_mean(trainer, training_step(*args, **kwargs))

    def counting_compute_loss(model, inputs, *args, **kwargs):
        if not (trainer.args.include_tkps and model.training):
            return compute_loss(model, inputs, *args, **kwargs)
        count_tokens_on_device(trainer, inputs)
        trainer.args.include_tkps = False  # Axolotl's own count (two .cpu() reads) skipped for this call
        try:
            return compute_loss(model, inputs, *args, **kwargs)
        finally:
            trainer.args.include_tkps = True

    trainer.training_step = filtered_training_step
    if hasattr(trainer.args, "include_tkps"):
        trainer.compute_loss = counting_compute_loss


class AsyncStepsPlugin(BasePlugin):
    """plugins: [ftr.async_steps.AsyncStepsPlugin]."""

    def get_training_args(self, cfg):
        return {"logging_nan_inf_filter": False}  # the filter runs on the device instead (finite_or_window_mean)

    def post_trainer_create(self, cfg, trainer):
        wrap(trainer)
