"""Models for evaluation: load a trained run's base, adapter or full model, generate answers, measure perplexity.

What training used decides how: the run's base model (axolotl.yaml), the tokenizer Axolotl saved with the adapter
(the training chat template), the dtype and the stop tokens, all from ftr.inference as for merge and serve.

Generation is batched and greedy with the training chat template (left padding, add_generation_prompt=True,
stopping at ftr.inference.stop_token_ids), through vLLM when it is installed and a GPU is present, else
through transformers. `seed_loop` reproduces the seeds' own loop (one prompt at a time, sampling at temperature
0.7) so the benchmark can compare the two on the same model. torch and transformers are imported inside the
functions: importing this module stays cheap. FTR_EVAL_PROFILE=FILE: torch.profiler records the first batch's
generation and writes its operators by time (host and GPU) to FILE, to tell a host-bound decode from a GPU-bound one.
"""

import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ftr import inference
from ftr.eval.rows import split_chat
from ftr.paths import resolve

VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


@dataclass
class LoadedModel:
    """A model ready to generate: the transformers model (None under vLLM), its tokenizer and where it came from."""

    model: object
    tokenizer: object
    source: dict
    backend: str = "transformers"
    llm: object = None  # the vllm.LLM when backend == "vllm"
    lora: object = None  # the vllm LoRARequest of the adapter, if any
    timings_s: dict = field(default_factory=dict)
    generated_tokens: int = 0  # new tokens generated so far, each answer counted up to its stop token
    rows_at_cap: int = 0  # answers that reached max_new_tokens without a stop token (cut off)
    stop_ids: list[int] = field(default_factory=list)  # ftr.inference.stop_token_ids of tokenizer and model


def device() -> str:
    return inference.pick_device()


def model_dtype(run, on: str, weights=None, recipe=None) -> tuple[str, str]:
    """(dtype name, reason): ftr.inference.inference_dtype of the precision the run trained in (its axolotl.yaml).
    Without a trained run: a model folder's recorded dtype, else the recipe's flags."""
    if run is not None and run.axolotl_yaml.exists():
        trained, reason = inference.run_training_dtype(run)
    elif isinstance(weights, Path) and (weights / "config.json").exists():
        config = json.loads((weights / "config.json").read_text())
        trained = config.get("dtype") or config.get("torch_dtype") or "float32"
        reason = f"the dtype recorded in {weights / 'config.json'}"
    else:
        trained, reason = inference.training_dtype(recipe.vars if recipe is not None else {})
    name, how = inference.inference_dtype(trained, on)
    return name, f"{how} (trained: {reason})"


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def _saved_tokenizer(folder: Path | None) -> bool:
    return isinstance(folder, Path) and (folder / "tokenizer_config.json").exists()


def load_tokenizer(recipe, folder: Path | None = None, run=None, external: Path | None = None):
    """ftr.inference.load_tokenizer of the model folder, else of the run's adapter (the training tokenizer, which
    must carry its chat template, as for merge and serve). Only a --model folder of no run (`external`) whose
    tokenizer has no template gets the recipe's; with nothing saved at all, the recipe's tokenizer is used."""
    candidates = [folder, run.adapter if run is not None else None]
    found = next((c for c in candidates if _saved_tokenizer(c)), None)
    if found is None:
        return inference.for_generation(recipe.load_tokenizer())
    tokenizer = inference.load_tokenizer(found, require_template=found != external)
    if not tokenizer.chat_template:
        tokenizer.chat_template = recipe.load_tokenizer().chat_template
    return tokenizer


def base_model_of(recipe, run=None, adapter: Path | None = None) -> Path | str:
    """The base model training loaded: the run's (its axolotl.yaml), else the one a PEFT adapter records, else
    the recipe's (nothing trained yet)."""
    if run is not None and run.axolotl_yaml.exists():
        base = run.base_model()
    elif adapter is not None and is_adapter(adapter):
        base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
        base = base or recipe.base_model
    else:
        base = recipe.base_model
    return resolve(base) if resolve(base).exists() else base


def model_folders(recipe, adapter: Path | None, model_dir: Path | None, base: bool, run=None
                  ) -> tuple[Path | str, Path | None]:
    """(weights folder or hub id, adapter folder or None) for the tuned model or, with base=True, the base."""
    adapter = adapter or (run or inference.Run.of(recipe.id)).adapter
    base_model = base_model_of(recipe, run, adapter)
    if base:
        return base_model, None
    if model_dir is not None:
        return model_dir, None
    if is_adapter(adapter):
        return base_model, adapter
    if (adapter / "config.json").exists():  # a full fine-tune (adapter: null) saves whole weights there
        return adapter, None
    raise FileNotFoundError(f"{adapter}: neither a PEFT adapter (adapter_config.json) nor a model (config.json); "
                            f"train it with `ftr train {recipe.id}` or pass --adapter/--model")


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None and device() == "cuda"


def trained_run(recipe):
    """The recipe's trained run (ftr.inference.Run), or None when nothing was trained for it yet."""
    run = inference.Run.of(recipe.id)
    return run if run.axolotl_yaml.exists() else None


def load(recipe, adapter: Path | None = None, model_dir: Path | None = None, base: bool = False,
         backend: str = "auto", run=None) -> LoadedModel:
    """Load the tuned model (adapter merged into the base) or the base model, for `backend` auto|transformers|vllm.

    Base model, dtype and chat template come from the run (default: the recipe's trained run), as merge and serve
    take them: what training used, not what the recipe says now.
    """
    run = run if run is not None else trained_run(recipe)
    weights, adapter_dir = model_folders(recipe, adapter, model_dir, base, run)
    # The base model is prompted with the training tokenizer too: base and tuned answer the same prompts.
    tokenizer_folder = None if base else adapter_dir or (weights if isinstance(weights, Path) else None)
    tokenizer = load_tokenizer(recipe, tokenizer_folder, run, external=model_dir)
    on = device()
    dtype, dtype_reason = model_dtype(run, on, weights, recipe)
    source = {"weights": str(weights), "adapter": str(adapter_dir) if adapter_dir else None, "device": on,
              "dtype": dtype, "dtype_reason": dtype_reason,
              "run": str(run.adapter.parent) if run is not None else None}
    if backend == "auto":
        backend = "vllm" if vllm_available() else "transformers"
    start = time.monotonic()
    if backend == "vllm":
        trained = run.axolotl_config() if run is not None and run.axolotl_yaml.exists() else {}
        max_len = trained.get("sequence_len") or recipe.sequence_len
        loaded = _load_vllm(weights, adapter_dir, tokenizer, dtype, int(max_len), source)
    elif backend == "transformers":
        loaded = LoadedModel(_load_transformers(weights, adapter_dir, dtype, on), tokenizer, source)
    else:
        raise ValueError(f"unknown backend {backend!r}; expected auto, transformers or vllm")
    loaded.source["backend"] = backend
    loaded.stop_ids = inference.stop_token_ids(tokenizer, loaded.model if loaded.model is not None else weights,
                                               end_of_turn=recipe.end_of_turn)
    loaded.timings_s["load"] = round(time.monotonic() - start, 2)
    return loaded


def _load_transformers(weights, adapter_dir, dtype, on):
    if adapter_dir is not None:
        return inference.load_adapter_model(weights, adapter_dir, dtype, on, merge=True)
    return inference.load_model(weights, dtype, on)


def _load_vllm(weights, adapter_dir, tokenizer, dtype, max_len, source):
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    lora, kwargs = None, {}
    if adapter_dir is not None:
        rank = json.loads((adapter_dir / "adapter_config.json").read_text())["r"]
        kwargs = dict(enable_lora=True, max_lora_rank=min(r for r in VLLM_LORA_RANKS if r >= rank))
        lora = LoRARequest("adapter", 1, str(adapter_dir))
    llm = LLM(model=str(weights), tokenizer=str(weights), dtype=dtype, seed=0,
              max_model_len=max_len, **kwargs)
    return LoadedModel(None, tokenizer, source, backend="vllm", llm=llm, lora=lora)


def prompt_text(tokenizer, row: dict) -> str:
    """The chat-templated prompt of a chat row: every message before its answer, plus the assistant header."""
    messages, _ = split_chat(row)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def max_new_tokens_for(tokenizer, references: list[str], margin: float = 1.5, extra: int = 16,
                       floor: int = 32) -> int:
    """The default generation budget of an eval: the split's longest reference answer in tokens, times `margin`
    plus `extra` (room for an answer longer than any reference), at least `floor`. A fixed budget would cut long
    answers (stories) short, and spend most of a short-answer task's decode steps on rows already longer than any
    right answer; the rows that reach it are counted (rows_at_cap) so that a cut is never silent."""
    if not references:
        return floor
    longest = max(len(ids) for ids in tokenizer(references, add_special_tokens=False)["input_ids"])
    return max(floor, int(longest * margin) + extra)


def prompt_lengths(tokenizer, prompts: list[str]) -> list[int]:
    """Token counts of chat-templated prompts (computed once per eval: batch sizing and length sorting share them)."""
    return [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]] if prompts else []


def batch_size_for(loaded: LoadedModel, prompts: list[str], max_new_tokens: int, share: float = 0.5,
                   lengths: list[int] | None = None) -> int:
    """The most rows per generation batch whose KV cache and prefill activations fit in `share` of the GPU memory
    free now (all rows when they fit: a batch's decode steps cost about as much as one row's, so fewer, larger
    batches are what makes generation fast); 8 on CPU."""
    import torch

    if loaded.backend != "transformers" or not torch.cuda.is_available() or not prompts:
        return 8
    config = loaded.model.config
    config = getattr(config, "text_config", None) or config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    width = next(loaded.model.parameters()).element_size()
    kv_per_token = 2 * config.num_hidden_layers * kv_heads * head_dim * width
    # prefill holds one layer's activations at a time; the MLP's are the largest (gate, up and their product)
    act_per_token = (3 * getattr(config, "intermediate_size", 4 * config.hidden_size) + 4 * config.hidden_size) * width
    longest = max(lengths or prompt_lengths(loaded.tokenizer, prompts))
    per_row = kv_per_token * (longest + max_new_tokens) + act_per_token * longest
    free, _total = torch.cuda.mem_get_info()
    return max(1, min(len(prompts), int(free * share // per_row)))


def generate(loaded: LoadedModel, prompts: list[str], batch_size: int = 16, max_new_tokens: int = 256,
             progress: bool = True, static_cache: bool = False, lengths: list[int] | None = None) -> list[str]:
    """Greedy answers to chat-templated prompts, in order; batched (longest first, so batches pad little).

    static_cache: transformers' static KV cache, which it compiles with torch.compile on first use: decode steps
    get several times cheaper on a GPU, but compiling a 7B takes about a minute (cached on disk by torch for the
    next run), and a batch of another shape may compile again: it pays off for one large batch or repeated runs.
    """
    if loaded.backend == "vllm":
        return _generate_vllm(loaded, prompts, max_new_tokens)
    import torch
    from tqdm import tqdm
    from transformers import GenerationConfig

    tokenizer, model = loaded.tokenizer, loaded.model
    config = GenerationConfig(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                              eos_token_id=loaded.stop_ids, cache_implementation="static" if static_cache else None,
                              **inference.GREEDY)
    lengths = lengths or prompt_lengths(tokenizer, prompts)
    order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
    answers = [None] * len(prompts)
    with tqdm(total=len(prompts), desc="generate", unit="row", disable=not progress) as bar, torch.inference_mode(), \
            inference.decode_attention():
        for number, indices in enumerate(_batches(order, batch_size)):
            batch = tokenizer([prompts[i] for i in indices], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(model.device)
            with _profiled(os.environ.get("FTR_EVAL_PROFILE") if number == 0 else None):
                output = model.generate(**batch, generation_config=config)
            new_tokens = output[:, batch["input_ids"].shape[1]:]
            loaded.generated_tokens += count_new_tokens(new_tokens, config.eos_token_id)
            loaded.rows_at_cap += count_at_cap(new_tokens, config.eos_token_id, max_new_tokens)
            for i, text in zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                answers[i] = text.strip()
            bar.update(len(indices))
    return answers


@contextlib.contextmanager
def _profiled(path: str | None):
    """torch.profiler around the block when path is set (ftr.profiling); its summary and operator table go to path."""
    if not path:
        yield
        return
    from ftr.profiling import Session

    session = Session()
    session.start()
    try:
        yield
    finally:
        session.stop()
    summary = session.summary()
    idle = summary.get("idle") or {}
    head = (f"wall {summary['wall_s']:.3f} s under the profiler, GPU busy {summary['gpu_busy_s']:.3f} s, "
            f"idle {idle.get('idle_ms', 0)} ms in {idle.get('gaps', 0)} gaps; idle by host operator:\n" +
            "".join(f"  {row['idle_ms']:>9.2f} ms  {row['gaps']:>5}  {row['op']}\n" for row in idle.get("by_op", [])))
    # host time first: a decode step is short, and what the host does between kernels is what makes it slow
    tables = session.table(40, by="cpu") + ("\n" + session.table(25) if summary["gpu_busy_s"] else "")
    Path(path).write_text(head + "\n" + tables, encoding="utf-8")


def count_new_tokens(new_tokens, stop_ids: list[int]) -> int:
    """Generated tokens of a [batch, steps] tensor, each row up to and including its first stop token."""
    import torch

    is_stop = torch.isin(new_tokens, torch.tensor(stop_ids, device=new_tokens.device))
    lengths = torch.where(is_stop.any(dim=1), is_stop.int().argmax(dim=1) + 1, new_tokens.shape[1])
    return int(lengths.sum())


def count_at_cap(new_tokens, stop_ids: list[int], max_new_tokens: int) -> int:
    """Rows of a [batch, steps] tensor that ran to max_new_tokens without a stop token."""
    import torch

    if new_tokens.shape[1] < max_new_tokens:
        return 0
    is_stop = torch.isin(new_tokens, torch.tensor(stop_ids, device=new_tokens.device))
    return int((~is_stop.any(dim=1)).sum())


def _generate_vllm(loaded: LoadedModel, prompts: list[str], max_new_tokens: int) -> list[str]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=loaded.stop_ids)
    # Token ids, not text: vLLM would add the tokenizer's BOS again to templates that already start with it.
    token_ids = loaded.tokenizer(prompts, add_special_tokens=False)["input_ids"]
    outputs = loaded.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in token_ids], params,
                                  lora_request=loaded.lora, use_tqdm=True)
    loaded.generated_tokens += sum(len(output.outputs[0].token_ids) for output in outputs)
    loaded.rows_at_cap += sum(output.outputs[0].finish_reason == "length" for output in outputs)
    return [output.outputs[0].text.strip() for output in outputs]


def seed_loop(loaded: LoadedModel, prompts: list[str], max_new_tokens: int = 256, progress: bool = True) -> list[str]:
    """The seeds' evaluation loop: one prompt at a time, do_sample=True, temperature 0.7 (transformers only)."""
    import torch
    from tqdm import tqdm

    tokenizer, model = loaded.tokenizer, loaded.model
    answers = []
    with torch.inference_mode():
        for prompt in tqdm(prompts, desc="seed loop", unit="row", disable=not progress):
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, temperature=0.7, do_sample=True,
                                    pad_token_id=tokenizer.pad_token_id)
            new_tokens = output[:, inputs["input_ids"].shape[1]:]
            loaded.generated_tokens += count_new_tokens(new_tokens, loaded.stop_ids)
            answers.append(tokenizer.decode(new_tokens[0], skip_special_tokens=True))
    return answers


def answer_tokens(tokenizer, row: dict, stops: set[int] | None = None) -> tuple[list[int], int]:
    """(token ids of the templated conversation, index of its first answer token); ids end at the answer's
    end-of-turn token, the one training learns to emit (train_on_eos: turn)."""
    prompt = prompt_text(tokenizer, row)
    messages, _ = split_chat(row)
    full = tokenizer.apply_chat_template(row["messages"][:len(messages) + 1], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer; "
                         "cannot locate the answer tokens")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    stops = stops if stops is not None else set(inference.stop_token_ids(tokenizer))
    ends = [i for i, token in enumerate(answer_ids) if token in stops]
    if ends:
        answer_ids = answer_ids[:ends[-1] + 1]
    return prompt_ids + answer_ids, len(prompt_ids)


def perplexity(loaded: LoadedModel, rows: list[dict], batch_size: int = 8) -> float:
    """exp(mean negative log-likelihood) of the reference answers' tokens (the assistant turn only)."""
    stops = set(loaded.stop_ids)
    examples = [answer_tokens(loaded.tokenizer, row, stops) for row in rows]
    if loaded.backend == "vllm":
        return _perplexity_vllm(loaded, examples)
    import math

    import torch
    import torch.nn.functional as F

    model = loaded.model
    pad = loaded.tokenizer.pad_token_id
    total_nll, total_tokens = 0.0, 0
    with torch.inference_mode():
        for batch in _batches(examples, batch_size):
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            scored = torch.zeros((len(batch), width), dtype=torch.bool)  # positions whose token is predicted
            for row, (ids, start) in enumerate(batch):
                input_ids[row, :len(ids)] = torch.tensor(ids)
                attention[row, :len(ids)] = 1
                scored[row, start:len(ids)] = True
            input_ids, attention, scored = (t.to(model.device) for t in (input_ids, attention, scored))
            # Project only the scored positions onto the vocabulary: full logits of a 152k vocabulary are large.
            hidden = model.base_model(input_ids=input_ids, attention_mask=attention).last_hidden_state
            logits = model.get_output_embeddings()(hidden[:, :-1][scored[:, 1:]]).float()
            targets = input_ids[:, 1:][scored[:, 1:]]
            total_nll += F.cross_entropy(logits, targets, reduction="sum").item()
            total_tokens += targets.numel()
    return math.exp(total_nll / total_tokens)


def _perplexity_vllm(loaded: LoadedModel, examples: list[tuple[list[int], int]]) -> float:
    import math

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=1, prompt_logprobs=0)
    outputs = loaded.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids, _ in examples], params,
                                  lora_request=loaded.lora, use_tqdm=False)
    total_nll, total_tokens = 0.0, 0
    for (ids, start), output in zip(examples, outputs):
        for position in range(start, len(ids)):
            total_nll -= output.prompt_logprobs[position][ids[position]].logprob
            total_tokens += 1
    return math.exp(total_nll / total_tokens)
