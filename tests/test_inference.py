"""One run, one way to run it: `ftr eval` and `ftr serve` load a trained run's model with the same stop token ids,
dtype and chat template (all from ftr.inference). The run is a fake, written in seconds: a tiny random Qwen2 base,
a random LoRA saved with a tokenizer whose chat template is neither the base's nor the recipe's, no training.
"""

import socket

import pytest
import torch
import yaml
from click.testing import CliRunner

from ftr import inference
from ftr.tiny_models import qwen_tokenizer, random_model

RECIPE = "tiny-rephrase"
ENDOFTEXT, IM_END = 151643, 151645
# The training template: the base's (Qwen2.5) with a mark, so that only a tokenizer read from adapter/ has it.
MARK = "{#- the template training saved -#}\n"


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    """build/<RECIPE>/ of a bf16 LoRA run in the flat layout: axolotl.yaml, adapter/ (weights and tokenizer)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("build")
    base, run = root / "base", root / RECIPE
    tokenizer = qwen_tokenizer()
    model = random_model("qwen2")
    # The base's generation config names an eos that is neither the tokenizer's eos nor the end of turn.
    model.generation_config.eos_token_id = ENDOFTEXT
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(run / "adapter")
    tokenizer.chat_template = MARK + tokenizer.chat_template
    tokenizer.save_pretrained(run / "adapter")
    (run / "axolotl.yaml").write_text(yaml.safe_dump({"base_model": str(base), "bf16": True, "fp16": False,
                                                      "adapter": "lora"}))
    return root


@pytest.fixture
def runs_in(run_root, monkeypatch):
    monkeypatch.setattr("ftr.inference.run_dir", lambda recipe_id: run_root / recipe_id)
    return run_root


def eval_path():
    """What `ftr eval` generates with."""
    from ftr.eval import generation
    from ftr.recipes import load_recipe

    loaded = generation.load(load_recipe(RECIPE), backend="transformers")
    return loaded.stop_ids, loaded.source["dtype"], loaded.tokenizer.chat_template


def serve_path(monkeypatch):
    """What `ftr serve --model adapter` serves with: the Engine and /health info it hands the app."""
    import uvicorn

    from ftr.serve import serve
    from ftr.serving import app

    handed = {}
    create_app = app.create_app

    def capture(engine, info, **kwargs):
        handed.update(engine=engine, info=info)
        return create_app(engine, info, **kwargs)

    monkeypatch.setattr(app, "create_app", capture)
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = CliRunner().invoke(serve, [RECIPE, "--model", "adapter", "--port", str(port), "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    engine = handed["engine"]
    return engine.stop_ids, handed["info"]["dtype"], engine.tokenizer.chat_template


def test_eval_and_serve_run_the_same_run_the_same_way(runs_in, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # eval picks its device itself
    from_eval, from_serve = eval_path(), serve_path(monkeypatch)
    assert from_eval == from_serve
    stop_ids, dtype, template = from_eval
    assert stop_ids == [ENDOFTEXT, IM_END]  # the tokenizer's eos (= end of turn) and the generation config's
    assert dtype == "float32"  # a bf16 run, on CPU
    assert template.startswith(MARK)  # the adapter's saved template, not the base's or the recipe's


def test_a_saved_tokenizer_without_chat_template_is_refused(runs_in, tmp_path):
    tokenizer = qwen_tokenizer()
    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(inference.RunError, match="no chat template"):
        inference.load_tokenizer(tmp_path)
    assert inference.load_tokenizer(tmp_path, require_template=False).padding_side == "left"


@pytest.mark.parametrize("trained, device, bf16_gpu, expected", [
    ("bfloat16", "cpu", True, "float32"),
    ("float16", "cpu", True, "float32"),
    ("bfloat16", "cuda", True, "bfloat16"),
    ("bfloat16", "cuda", False, "float16"),
    ("float32", "cuda", True, "float32"),
])
def test_inference_dtype(monkeypatch, trained, device, bf16_gpu, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    assert inference.inference_dtype(trained, device)[0] == expected
    # Merge verification compares the checkpoint in the dtype it is stored in, wherever it runs.
    assert inference.inference_dtype(trained, device, verifying=True)[0] == trained


def test_stop_ids_are_the_family_end_of_turn_as_a_token_of_its_own():
    from transformers import AutoTokenizer

    from ftr.recipes import load_family, load_recipe
    from ftr.tiny_models import build

    qwen = qwen_tokenizer()
    qwen.eos_token = "<|endoftext|>"  # a base checkpoint's eos, which is not the end of turn
    assert inference.stop_token_ids(qwen, end_of_turn=load_recipe(RECIPE).end_of_turn) == [ENDOFTEXT, IM_END]
    mistral_end = load_family("mistral")["end_of_turn"]
    assert qwen.convert_tokens_to_ids(mistral_end) not in (None, qwen.unk_token_id)  # ordinary text in Qwen's vocab
    assert inference.stop_token_ids(qwen, end_of_turn=mistral_end) == [ENDOFTEXT]
    # A run without a family stops at every family's end of turn that its tokenizer has as a token of its own.
    assert mistral_end in inference.end_of_turn_tokens() and "<|im_end|>" in inference.end_of_turn_tokens()
    assert inference.stop_token_ids(qwen) == [ENDOFTEXT, IM_END]
    mistral = AutoTokenizer.from_pretrained(build("mistral"))
    assert inference.stop_token_ids(mistral) == inference.stop_token_ids(mistral, end_of_turn=mistral_end) == [
        mistral.eos_token_id]
