"""The tiny stand-ins carry the REAL tokenizers: Qwen2.5's ids and template, Mistral-7B-v0.1's sentencepiece."""

from pathlib import Path

import pytest

from ftr.tiny_models import QWEN_SPECIAL_TOKENS, mistral_tokenizer, qwen_tokenizer


@pytest.fixture(scope="module")
def qwen():
    return qwen_tokenizer()


def test_qwen_special_token_ids(qwen):
    ids = qwen.convert_tokens_to_ids(QWEN_SPECIAL_TOKENS)
    assert ids == list(range(151643, 151665))
    assert len(qwen) == 151665 and qwen.eos_token == "<|im_end|>"


def test_qwen_bpe_matches_qwen25(qwen):
    # Reference ids from Qwen2.5's own tokenizer.json (same BPE ranks, same split pattern).
    assert qwen("Hello world").input_ids == [9707, 1879]
    assert qwen.decode(qwen("sữa cho bé 6 tháng").input_ids) == "sữa cho bé 6 tháng"


def test_qwen_chat_template_is_qwen25(qwen):
    text = qwen.apply_chat_template([{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}],
                                    tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_mistral_tokenizer_is_mistral_7b_v01():
    tok = mistral_tokenizer()
    assert len(tok) == 32000 and (tok.bos_token_id, tok.eos_token_id) == (1, 2)
    assert tok("Hello world").input_ids == [1, 22557, 1526]


def test_build_is_deterministic(tmp_path):
    from safetensors.torch import load_file

    from ftr.tiny_models import build

    a = load_file(build("mistral", tmp_path / "a") / "model.safetensors")
    b = load_file(build("mistral", tmp_path / "b") / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_ftr_tokenizers_supplies_the_tokenizer_on_hosts_without_its_package(tmp_path, monkeypatch):
    """A GPU host has neither dashscope nor mistral-common: FTR_TOKENIZERS/<kind> holds the tokenizer instead."""
    from ftr import tiny_models

    seen = []
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", lambda folder: seen.append(Path(folder)))
    monkeypatch.setattr(tiny_models, "qwen_tokenizer", lambda: pytest.fail("rebuilt despite FTR_TOKENIZERS"))
    monkeypatch.setenv("FTR_TOKENIZERS", str(tmp_path))
    tiny_models._tokenizer("qwen2", None)
    tiny_models._tokenizer("mistral", None)
    tiny_models._tokenizer("qwen2", tmp_path / "given")
    assert seen == [tmp_path / "qwen2", tmp_path / "mistral", tmp_path / "given"]


def test_random_checkpoint_loads_complete_with_transformers_init(tmp_path):
    """write_random_checkpoint (the fast path for the 7B shapes on a GPU), here on the CPU at the tiny shape: every
    parameter is in the file, with transformers' init (weights N(0, initializer_range), norms 1, biases 0)."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    from ftr.tiny_models import model_classes, write_random_checkpoint

    folder = write_random_checkpoint("qwen2", tmp_path / "m", device="cpu", dtype="float32")
    model, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    expected, _ = model_classes("qwen2")
    assert model.config.hidden_size == expected.hidden_size
    q = model.model.layers[0].self_attn.q_proj
    assert torch.all(q.bias == 0) and torch.all(model.model.norm.weight == 1)
    assert abs(float(q.weight.std()) - expected.initializer_range) < 0.1 * expected.initializer_range


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_random_checkpoint_is_a_safetensors_file_with_the_values_drawn_in_order(tmp_path, dtype):
    """The file is written in place (not through safetensors' save_file): safetensors reads it back, every tensor
    equals the one drawn for it (same generator, same order), and its header is what safetensors expects."""
    torch = pytest.importorskip("torch")
    from safetensors import safe_open

    from ftr.tiny_models import model_classes, write_random_checkpoint

    folder = write_random_checkpoint("mistral", tmp_path / "m", device="cpu", dtype=dtype)
    config, model_cls = model_classes("mistral")
    with torch.device("meta"):
        shapes = {name: tuple(p.shape) for name, p in model_cls(config).state_dict().items()}
    generator = torch.Generator("cpu").manual_seed(0)
    with safe_open(folder / "model.safetensors", framework="pt") as fh:
        assert set(fh.keys()) == set(shapes) - ({"lm_head.weight"} if config.tie_word_embeddings else set())
        assert fh.metadata() == {"format": "pt"}
        for name, shape in shapes.items():
            if name not in fh.keys():
                continue
            got = fh.get_tensor(name)
            assert got.dtype == getattr(torch, dtype) and tuple(got.shape) == shape
            if "norm" in name.rsplit(".", 2)[-2]:
                assert torch.all(got == 1)
            elif not name.endswith(".bias"):
                drawn = torch.empty(shape, dtype=got.dtype).normal_(0.0, config.initializer_range, generator=generator)
                assert torch.equal(got, drawn), name
