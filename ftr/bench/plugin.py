"""Axolotl plugin that `ftr.bench` adds to every benchmarked config: per-step wall time and token counts.

It changes nothing in training. It wraps the trainer's `compute_loss` to count, per optimizer step, the real tokens
(attention_mask != 0: packed rows carry sequence ids, padding is 0), the trainable tokens (labels != -100) and the
token slots (input numel, padding included) and the causal attention pairs; at each step end it records a CUDA
event (no sync, so the timing does not slow the run), and at the end of training it writes one JSON line per step
(step, time, the counts) and the logged losses to `$output_dir/bench_steps.jsonl`. Throughput is then computed by `ftr.bench.train` over steps after the warm-up.

FTR_BENCH_PROFILE=N: torch.profiler records the run's last N steps (marked "profiled", so they are left out of the
throughput) and writes `$output_dir/profile.txt` (the kernels by GPU time) and `profile.json` (GPU busy time
against wall time, the top kernels, the idle gaps by the host operator running in them, and the host syncs by
call site, ftr.profiling): where a step's time goes.
"""

import gc
import json
import os
import time
from pathlib import Path

from axolotl.integrations.base import BasePlugin

STEPS_FILE = "bench_steps.jsonl"


def _count(inputs: dict, pad_id: int | None = None) -> tuple:
    """(real tokens, trainable tokens, token slots, causal attention pairs) of one micro-batch, as device tensors
    where possible (no sync). A real token at position p (within its document) attends to p + 1 tokens.

    Unpacked batches carry a 0/1 attention_mask. Packed batches carry none (Axolotl drops it for varlen SDPA):
    each row is documents back to back, then a run of pad tokens up to sequence_len; the real tokens are those
    before that trailing run (a chat row never ends with the pad token).
    """
    ids = inputs.get("input_ids")
    labels = inputs.get("labels")
    mask = inputs.get("attention_mask")
    ref = ids if ids is not None else labels
    slots = int(ref.numel()) if ref is not None else 0
    positions = inputs.get("position_ids")
    if mask is not None:
        keep = mask != 0
        real = keep.sum()
        if positions is None:
            positions = keep.long().cumsum(-1) - 1
    elif ids is not None and pad_id is not None and ids.dim() == 2:
        nonpad = (ids != pad_id).int()
        width = ids.shape[1]
        # index of the last non-pad token per row (+1), 0 for an all-pad row
        last = width - nonpad.flip(1).argmax(1)
        last = last * nonpad.any(1)
        real = last.sum()
        import torch

        keep = torch.arange(width, device=ids.device)[None, :] < last[:, None]
    else:
        real, keep = slots, None
    pairs = 0
    if positions is not None and keep is not None and positions.shape == keep.shape:
        pairs = ((positions + 1) * keep).sum()
    trainable = (labels[..., 1:] != -100).sum() if labels is not None else 0
    return real, trainable, slots, pairs


class _StepRecorder:
    def __init__(self, path: Path, max_steps: int | None = None):
        from transformers import TrainerCallback

        self.path = path
        self.profile_steps = int(os.environ.get("FTR_BENCH_PROFILE") or 0) if max_steps else 0
        self.profile_from = (max_steps - self.profile_steps) if self.profile_steps else None
        self.profiler = None
        self.counts = [0, 0, 0, 0]
        self.pending = []
        self.origin = None
        self.last_loss = None
        recorder = self

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                gc.unfreeze()  # the steps run with the garbage collector as a user's run has it (see pre_model_load)
                recorder._write({"event": "train_begin", "t": recorder._now(), "wall": time.time()})

            def on_step_end(self, args, state, control, **kwargs):
                # No sync here (it would stall the GPU at every step boundary): an event marks the step's end on
                # the GPU stream, and the counts stay device tensors until the run ends.
                recorder.pending.append((state.global_step, recorder._event(), recorder.counts,
                                         recorder.profiler is not None))
                recorder.counts = [0, 0, 0, 0]
                if recorder.profile_from is not None and state.global_step == recorder.profile_from:
                    recorder._start_profile()

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    recorder._write({"event": "log", "step": state.global_step, "loss": logs["loss"],
                                     "grad_norm": logs.get("grad_norm")})

            def on_train_end(self, args, state, control, **kwargs):
                recorder._stop_profile()
                recorder._flush()
                recorder._write({"event": "train_end", "t": recorder._now(), "wall": time.time(),
                                 "peak_mem_gib": recorder._peak()})

        self.callback = Callback()

    def _event(self):
        """A CUDA event recorded now on the current stream (None on CPU: the step is timed by the clock)."""
        import torch

        if not torch.cuda.is_available():
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        if self.origin is None:
            self.origin = (event, self._now())
        return event

    def _flush(self) -> None:
        """Write the steps' lines: times from the events (relative to the first, placed on the clock)."""
        for step, mark, counts, profiled in self.pending:
            real, trainable, slots, pairs = (int(c.item()) if hasattr(c, "item") else int(c) for c in counts)
            if isinstance(mark, float):
                when = mark
            else:
                mark.synchronize()
                when = self.origin[1] + self.origin[0].elapsed_time(mark) / 1000.0
            self._write({"event": "step", "step": step, "t": when, "tokens": real, "trainable": trainable,
                         "slots": slots, "attn_pairs": pairs, **({"profiled": True} if profiled else {})})
        self.pending = []

    def _start_profile(self) -> None:
        from ftr.profiling import HostSyncs, Session

        self.profiler, self.syncs = Session(), HostSyncs()
        self.profiler.start()
        self.syncs.start()

    def _stop_profile(self) -> None:
        if self.profiler is None:
            return
        self.syncs.stop()
        self.profiler.stop()
        if os.environ.get("RANK", "0") != "0":
            return
        summary = {**self.profiler.summary(self.profile_steps), "host_syncs": self.syncs.summary(self.profile_steps)}
        (self.path.parent / "profile.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        (self.path.parent / "profile.txt").write_text(self.profiler.table(), encoding="utf-8")

    @staticmethod
    def _now() -> float:
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        except Exception:
            pass
        return time.perf_counter()

    @staticmethod
    def _peak() -> float | None:
        try:
            import torch

            if torch.cuda.is_available():
                return round(torch.cuda.max_memory_allocated() / 2**30, 3)
        except Exception:
            pass
        return None

    def _write(self, row: dict) -> None:
        if os.environ.get("RANK", "0") != "0":  # one file per run: the ranks of a multi-process run step together
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")

    def wrap(self, trainer) -> None:
        original = trainer.compute_loss
        recorder = recipient = self
        tokenizer = getattr(trainer, "processing_class", None) or getattr(trainer, "tokenizer", None)
        pad_id = getattr(tokenizer, "pad_token_id", None)

        def compute_loss(model, inputs, *args, **kwargs):
            if os.environ.get("FTR_BENCH_DEBUG") and not getattr(recipient, "shown", False):
                recipient.shown = True
                print("FTR_BENCH_DEBUG", {k: (tuple(v.shape), v.flatten()[-12:].tolist()) for k, v in inputs.items()
                                          if hasattr(v, "shape")}, flush=True)
            if model.training:
                for i, n in enumerate(_count(inputs, pad_id)):
                    recorder.counts[i] += n
            return original(model, inputs, *args, **kwargs)

        trainer.compute_loss = compute_loss


def _mark(cfg, event: str, **extra) -> None:
    """A line with the wall clock (comparable across the bench's processes) for a phase of the row's start-up."""
    if os.environ.get("RANK", "0") != "0":
        return
    path = Path(cfg["output_dir"]) / STEPS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"event": event, "wall": time.time(), **extra}) + "\n")


class BenchPlugin(BasePlugin):
    """plugins: [ftr.bench.plugin.BenchPlugin]. The bench removes the steps file before it starts a row."""

    def register(self, cfg):
        _mark(cfg, "registered")  # Python, torch, transformers and Axolotl imported, the config read

    def pre_model_load(self, cfg):
        from ftr.bench.rows import wait_for_go

        _mark(cfg, "ready")  # imports, config and data done: all that runs before the GPU is needed
        # Axolotl calls gc.collect() some 16 times between here and the first step (11 of them in the multipack
        # sampler's batch-count estimate), each a full pass over the ~millions of objects that importing torch,
        # transformers and Axolotl created: ~0.5 s each. Frozen, those objects are skipped; they live to the end of
        # the process anyway. Unfrozen again at train_begin, so the timed steps see the collector a user's run has.
        gc.freeze()
        waited = wait_for_go()
        _mark(cfg, "go", waited_s=round(waited, 2))

    def post_model_build(self, cfg, model):
        _mark(cfg, "model_built")

    def add_callbacks_post_trainer(self, cfg, trainer):
        path = Path(cfg.output_dir) / STEPS_FILE
        _mark(cfg, "trainer_built")
        recorder = _StepRecorder(path, cfg.max_steps)
        recorder.wrap(trainer)
        return [recorder.callback]
