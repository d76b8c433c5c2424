"""Random-init models of the real architectures with the REAL tokenizers, built offline and deterministically.

No model hub is reachable from here or CI, so recipes and benchmarks build these instead of downloading weights:
- qwen2: a tiny Qwen2ForCausalLM + the Qwen2.5 tokenizer rebuilt from dashscope's `resources/qwen.tiktoken`
  (151,643 BPE ranks) plus Qwen2.5's 22 special tokens (ids 151643-151664) and Qwen2.5's chat template;
- mistral: a tiny MistralForCausalLM + Mistral-7B-v0.1's sentencepiece tokenizer from mistral-common's
  `data/tokenizer.model.v1`;
- qwen2-scratch: a ~100M-parameter Qwen2 that recipes/scratch-rephrase trains from scratch (full training) to
  show the pipeline teaches;
- qwen2.5-7b: Qwen2.5-7B-Instruct's exact shape with random weights, for timing `ftr eval` and the seed loop at
  the real size (build it on the GPU: `ftr tiny-models qwen2.5-7b --device cuda --dtype bfloat16`).

The recipes' repo-relative `base_model: build/tiny-models/<kind>` folders are built on demand by `ftr train`.
"""

import json
import math
import os
import shutil
import time
from importlib import resources
from pathlib import Path

import click

from ftr.paths import TINY_MODELS_DIR

# Qwen2.5's pre-tokenizer split pattern (tokenizer.json of every Qwen2.5 checkpoint).
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
]
QWEN_FIRST_SPECIAL_ID = 151643

# Shapes: the real architectures, shrunk, or (the *-7b kinds) as in their config.json. `arch` picks the classes;
# the rest are config fields. Qwen2.5-7B pads its vocabulary to 152,064 like this.
QWEN_IDS = dict(bos_token_id=None, eos_token_id=151645, pad_token_id=151643)
SHAPES = {
    "qwen2": dict(arch="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=152064, max_position_embeddings=4096,
                  tie_word_embeddings=True, rope_theta=1000000.0, **QWEN_IDS),
    "mistral": dict(arch="mistral", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, vocab_size=32000, max_position_embeddings=4096,
                    sliding_window=None, rope_theta=10000.0, bos_token_id=1, eos_token_id=2),
    "qwen2-scratch": dict(arch="qwen2", hidden_size=512, intermediate_size=1536, num_hidden_layers=8,
                          num_attention_heads=8, num_key_value_heads=4, vocab_size=152064,
                          max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=1000000.0,
                          rms_norm_eps=1e-6, use_sliding_window=False, **QWEN_IDS),
    # Qwen/Qwen2.5-7B-Instruct and mistralai/Mistral-7B-v0.1 (for benchmarks: throughput ignores weight values)
    "qwen2.5-7b": dict(arch="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       tie_word_embeddings=False, use_sliding_window=False, bos_token_id=151643,
                       eos_token_id=151645),
    "mistral-7b": dict(arch="mistral", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                       num_attention_heads=32, num_key_value_heads=8, vocab_size=32000,
                       max_position_embeddings=32768, rope_theta=10000.0, rms_norm_eps=1e-5,
                       tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, sliding_window=None),
}
DEFAULT_KINDS = ("qwen2", "mistral")  # the CPU stand-ins; the larger kinds are built when asked for


def qwen_tokenizer():
    """The Qwen2.5 fast tokenizer, rebuilt from dashscope's copy of its BPE ranks."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.integrations.tiktoken import TikTokenConverter

    from axolotl.utils.chat_templates import get_chat_template

    ranks = resources.files("dashscope") / "resources" / "qwen.tiktoken"
    with resources.as_file(ranks) as ranks_path:
        backend = TikTokenConverter(vocab_file=str(ranks_path), pattern=QWEN_PATTERN).converted()
    from tokenizers import normalizers

    backend.normalizer = normalizers.NFC()
    assert backend.get_vocab_size() == QWEN_FIRST_SPECIAL_ID, backend.get_vocab_size()
    # Only the first three are special in Qwen2.5; the rest are plain added tokens there too.
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS[:3]])
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN_SPECIAL_TOKENS[3:]])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = get_chat_template("qwen_25")
    return tokenizer


def mistral_tokenizer():
    """Mistral-7B-v0.1's tokenizer from the sentencepiece model that mistral-common ships."""
    import tempfile

    from transformers import AutoTokenizer

    model_file = resources.files("mistral_common") / "data" / "tokenizer.model.v1"
    config = {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
              "add_bos_token": True, "add_eos_token": False, "legacy": True, "model_max_length": 32768}
    # transformers converts a sentencepiece model only through from_pretrained on a folder.
    with tempfile.TemporaryDirectory() as folder, resources.as_file(model_file) as path:
        shutil.copy(path, Path(folder) / "tokenizer.model")
        (Path(folder) / "tokenizer_config.json").write_text(json.dumps(config))
        return AutoTokenizer.from_pretrained(folder)


def _tokenizer(arch: str, tokenizer_from: Path | None):
    """The real tokenizer: copied from a folder that holds it (hosts without dashscope or mistral-common: the
    folder, else $FTR_TOKENIZERS/qwen2 or $FTR_TOKENIZERS/mistral), else rebuilt offline."""
    if tokenizer_from is None and os.environ.get("FTR_TOKENIZERS"):
        tokenizer_from = Path(os.environ["FTR_TOKENIZERS"]) / ("mistral" if arch == "mistral" else "qwen2")
    if tokenizer_from is not None:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tokenizer_from)
    return mistral_tokenizer() if arch == "mistral" else qwen_tokenizer()


def model_classes(kind: str):
    """(config, model class) of `kind`: the transformers classes and the config of its shape."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if kind not in SHAPES:
        raise click.BadParameter(f"unknown model {kind!r}; known: {', '.join(SHAPES)}")
    fields = dict(SHAPES[kind])
    arch = fields.pop("arch")
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM),
                             "mistral": (MistralConfig, MistralForCausalLM)}[arch]
    return config_cls(**fields), model_cls


def random_model(kind: str, device: str = "cpu", dtype: str = "float32"):
    """Random-init model `kind` (seed 0) in memory, initialised straight in `dtype` on `device`."""
    import torch

    config, model_cls = model_classes(kind)
    torch.manual_seed(0)
    # A 7B never exists in fp32 (30 GB) on the way to bf16.
    default = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            return model_cls(config)
    finally:
        torch.set_default_dtype(default)


SAFETENSORS_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def write_random_checkpoint(kind: str, folder: Path, device: str = "cuda", dtype: str = "bfloat16",
                            log=None) -> Path:
    """A checkpoint of `kind` with the same random init as transformers gives it (linear and embedding weights
    N(0, initializer_range), norms 1, biases 0), drawn on `device` tensor by tensor, without building the model
    itself. The parameter names and shapes come from the model built on the meta device.

    The file is written in the safetensors layout directly: each tensor goes from the GPU into one reused pinned
    buffer and from there into the file. safetensors' own save_file needs every tensor in host memory first (a
    copy from the GPU to pageable memory) and copies it once more into its buffer. `log` gets the phases' times."""
    import torch

    started = time.perf_counter()
    config, model_cls = model_classes(kind)
    with torch.device("meta"):
        names = {name: tuple(p.shape) for name, p in model_cls(config).state_dict().items()}
    if config.tie_word_embeddings:
        names.pop("lm_head.weight", None)
    torch_dtype = getattr(torch, dtype)
    width = torch.empty((), dtype=torch_dtype).element_size()
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in names.items():
        size = width * math.prod(shape)
        header[name] = {"dtype": SAFETENSORS_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    largest = max(end - begin for begin, end in (header[n]["data_offsets"] for n in names))
    staging = torch.empty(largest, dtype=torch.uint8, pin_memory=str(device).startswith("cuda"))
    generator = torch.Generator(device).manual_seed(0)
    if log:
        log(f"{len(names)} tensors, {offset / 1e9:.1f} GB: set up in {time.perf_counter() - started:.1f} s")
    drawn = copied = 0.0
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(len(encoded).to_bytes(8, "little") + encoded)
        for name, shape in names.items():
            begin, end = header[name]["data_offsets"]
            t0 = time.perf_counter()
            if name.endswith(".bias"):
                value = torch.zeros(shape, dtype=torch_dtype, device=device)
            elif "norm" in name.rsplit(".", 2)[-2]:
                value = torch.ones(shape, dtype=torch_dtype, device=device)
            else:
                value = torch.empty(shape, dtype=torch_dtype, device=device).normal_(
                    0.0, config.initializer_range, generator=generator)
            place = staging[:end - begin]
            place.view(torch_dtype).view(shape).copy_(value)
            t1 = time.perf_counter()
            fh.write(place.numpy().data)
            drawn, copied = drawn + t1 - t0, copied + time.perf_counter() - t1
    if log:
        log(f"drawn and copied to the host in {drawn:.1f} s, written in {copied:.1f} s")
    return folder


def build(kind: str, outdir: Path = TINY_MODELS_DIR, device: str = "cpu", dtype: str = "float32",
          tokenizer_from: Path | None = None, log=None) -> Path:
    """Write random-init model `kind` (seed 0) with its real tokenizer into outdir/kind; kept if already there."""
    if kind not in SHAPES:
        raise click.BadParameter(f"unknown model {kind!r}; known: {', '.join(SHAPES)}")
    target = outdir / kind
    if (target / "config.json").exists():
        return target
    tokenizer = _tokenizer(SHAPES[kind]["arch"], tokenizer_from)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if device.startswith("cuda"):
        write_random_checkpoint(kind, tmp, device, dtype, log)
    else:
        random_model(kind, device, dtype).save_pretrained(tmp, max_shard_size="20GB")
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


@click.command("tiny-models")
@click.option("-o", "--outdir", type=click.Path(path_type=Path), default=TINY_MODELS_DIR, show_default=True)
@click.option("--device", default="cpu", show_default=True, help="Where to initialise the weights (cuda for the 7B).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "bfloat16", "float16"]))
@click.option("--tokenizer-from", type=click.Path(file_okay=False, path_type=Path),
              help="A folder holding the real tokenizer to copy (e.g. build/tiny-models/qwen2 on a host without dashscope).")
@click.argument("kinds", nargs=-1, type=click.Choice(sorted(SHAPES)))
def tiny_models(outdir, device, dtype, tokenizer_from, kinds):
    """Build random-init models with the real tokenizers (default: the tiny qwen2 and mistral stand-ins)."""
    for kind in kinds or DEFAULT_KINDS:
        click.echo(f"{kind}: {build(kind, outdir, device, dtype, tokenizer_from)}")
