"""Tiny random-init stand-ins for the 7B models, with the REAL tokenizers, built offline and deterministically.

No model hub is reachable from here or CI, so the tiny recipes train these instead of the 7B weights:
- qwen2: Qwen2ForCausalLM + the Qwen2.5 tokenizer rebuilt from dashscope's `resources/qwen.tiktoken`
  (151,643 BPE ranks) plus Qwen2.5's 22 special tokens (ids 151643-151664) and Qwen2.5's chat template.
- mistral: MistralForCausalLM + Mistral-7B-v0.1's sentencepiece tokenizer from mistral-common's
  `data/tokenizer.model.v1`.
"""

import json
import shutil
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

# Shapes: the real architectures, shrunk. Qwen2.5-7B pads its vocabulary to 152,064 like this.
SHAPES = {
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=152064, max_position_embeddings=4096,
                  tie_word_embeddings=True, rope_theta=1000000.0),
    "mistral": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=32000, max_position_embeddings=4096,
                    sliding_window=None, rope_theta=10000.0),
}


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


def build(kind: str, outdir: Path) -> Path:
    """Write tiny model `kind` (qwen2|mistral) with its tokenizer into outdir/kind; deterministic."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    target = outdir / kind
    if (target / "config.json").exists():
        return target
    if kind == "qwen2":
        tokenizer = qwen_tokenizer()
        config = Qwen2Config(**SHAPES[kind], bos_token_id=None, eos_token_id=151645, pad_token_id=151643)
        model_cls = Qwen2ForCausalLM
    elif kind == "mistral":
        tokenizer = mistral_tokenizer()
        config = MistralConfig(**SHAPES[kind], bos_token_id=1, eos_token_id=2)
        model_cls = MistralForCausalLM
    else:
        raise click.BadParameter(f"unknown tiny model {kind!r}; known: {', '.join(SHAPES)}")
    torch.manual_seed(0)
    model = model_cls(config)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


@click.command("tiny-models")
@click.option("-o", "--outdir", type=click.Path(path_type=Path), default=TINY_MODELS_DIR, show_default=True)
@click.argument("kinds", nargs=-1)
def tiny_models(outdir, kinds):
    """Build the tiny offline stand-in models (default: all) with the real tokenizers."""
    for kind in kinds or SHAPES:
        path = build(kind, outdir)
        click.echo(f"{kind}: {path}")
