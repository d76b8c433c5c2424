"""ftr.packed_attention: boundaries computed once per position_ids tensor or by the collator on the CPU, the fallback
path, and (GPU) the same outputs and gradients as Axolotl's sdpa_varlen path, with no host sync when the collator
gave the boundaries."""

import pickle

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("axolotl")

from ftr import packed_attention  # noqa: E402


def test_boundaries_are_computed_once_per_position_ids_tensor(monkeypatch):
    boundaries = packed_attention._Boundaries()
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3, 4]])
    packed, cu, longest = boundaries.of(positions)
    assert packed and cu.tolist() == [0, 3, 5, 10] and longest == 5 and cu.dtype == torch.int32
    calls = []
    monkeypatch.setattr(torch, "cat", lambda *a, **k: calls.append(1))
    assert boundaries.of(positions)[1] is cu and not calls  # the same tensor: nothing recomputed
    monkeypatch.undo()
    single = boundaries.of(torch.arange(6)[None])
    assert single[0] is False  # one document per row: not packed


class _Collator:
    tokenizer = "the tokenizer"

    def __call__(self, features, return_tensors=None):
        return {"position_ids": torch.tensor(features), "input_ids": torch.zeros(len(features), len(features[0]))}


def test_the_collator_adds_the_boundaries_of_packed_batches_only():
    collator = packed_attention.WithBoundaries(_Collator())
    batch = collator([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]])
    expected = packed_attention.boundaries(batch["position_ids"])
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == expected[1].tolist() == [0, 3, 5, 7, 10]
    assert batch["max_length_q"] == batch["max_length_k"] == expected[2] == 3
    assert batch["cu_seq_lens_q"].dtype == torch.int32
    unpacked = collator([[0, 1, 2], [0, 1, 2]])
    assert not any(key in unpacked for key in packed_attention.BOUNDARY_KEYS)
    assert collator.tokenizer == "the tokenizer"  # the wrapped collator's attributes are still there
    again = pickle.loads(pickle.dumps(collator))  # data loader workers receive it by pickle
    assert again([[0, 0, 1]])["max_length_q"] == 2


def test_the_plugin_wraps_the_trainers_collators_once():
    class Trainer:
        data_collator, eval_data_collator = _Collator(), _Collator()

    trainer = Trainer()
    packed_attention.PackedAttentionPlugin().post_trainer_create(None, trainer)
    first = trainer.data_collator
    packed_attention.wrap_collators(trainer)
    assert isinstance(first, packed_attention.WithBoundaries) and trainer.data_collator is first
    assert isinstance(trainer.eval_data_collator, packed_attention.WithBoundaries)


def test_what_it_does_not_handle_goes_to_the_previous_function():
    pytest.importorskip("torch.nn.attention.varlen")
    seen = []

    def previous(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        seen.append((attention_mask is None, dropout))
        return "previous", None

    forward = packed_attention.build_forward(previous)
    q = torch.randn(1, 4, 6, 8)
    k = v = torch.randn(1, 2, 6, 8)
    positions = torch.tensor([[0, 1, 2, 0, 1, 2]])
    assert forward(None, q, k, v, None, position_ids=positions)[0] == "previous"  # CPU, fp32
    assert forward(None, q, k, v, torch.ones(1, 1, 6, 6), position_ids=positions)[0] == "previous"
    assert seen == [(True, 0.0), (False, 0.0)]


@pytest.mark.gpu
def test_matches_axolotls_varlen_path_with_grouped_query_heads():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    from axolotl.monkeypatch.attention.sdpa_varlen import _build_varlen_forward
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    axolotl_forward = _build_varlen_forward(sdpa_attention_forward)
    ours = packed_attention.build_forward(sdpa_attention_forward)
    torch.manual_seed(0)
    batch, heads, kv_heads, length, dim = 2, 28, 4, 512, 128
    positions = torch.cat([torch.arange(200), torch.arange(312), torch.arange(100), torch.arange(412)]).view(2, 512).cuda()
    results = []
    for forward in (axolotl_forward, ours):
        torch.manual_seed(1)
        q = torch.randn(batch, heads, length, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(batch, kv_heads, length, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(batch, kv_heads, length, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        out, _ = forward(None, q, k, v, None, position_ids=positions)
        out.float().square().sum().backward()
        results.append((out.detach(), q.grad, k.grad, v.grad))
    for a, b in zip(*results):
        assert a.shape == b.shape
        torch.testing.assert_close(a.float(), b.float(), atol=2e-2, rtol=2e-2)
    # the boundaries as the collator gives them (moved to the GPU with the rest of the batch): no host sync at all
    collated = {"position_ids": positions.cpu()}
    packed_attention.add_boundaries(collated)
    given = {key: value.cuda() if torch.is_tensor(value) else value for key, value in collated.items()}
    torch.manual_seed(1)
    q = torch.randn(batch, heads, length, dim, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(batch, kv_heads, length, dim, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(batch, kv_heads, length, dim, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out, _ = ours(None, q, k, v, None, **given)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.testing.assert_close(out, results[1][0], atol=0, rtol=0)  # the same kernel on the same boundaries


def test_a_lora_model_takes_the_collators_keys_through_to_its_attention():
    """The collator's extra keys travel through PEFT and the model to the attention function (transformers passes
    them on as FlashAttentionKwargs), and change nothing where they are not used."""
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, attn_implementation="sdpa")
    model = get_peft_model(Qwen2ForCausalLM(config), LoraConfig(r=4, target_modules="all-linear"))
    positions = [[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 0, 1, 2, 3, 4, 5]]
    features = {"input_ids": torch.randint(0, 64, (2, 8)), "position_ids": torch.tensor(positions)}
    features["labels"] = features["input_ids"].clone()
    with_keys = dict(features)
    packed_attention.add_boundaries(with_keys)
    assert set(packed_attention.BOUNDARY_KEYS) <= set(with_keys)
    seen = []
    stock = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def spy(module, *args, **kwargs):
        seen.append(kwargs.get("max_length_q"))
        return stock(module, *args, **kwargs)

    ALL_ATTENTION_FUNCTIONS.register("sdpa", spy)
    try:
        plain = model(**features).loss
        keyed = model(**with_keys).loss
    finally:
        ALL_ATTENTION_FUNCTIONS.register("sdpa", stock)
    assert seen == [None, None, 6, 6]
    torch.testing.assert_close(plain, keyed)
