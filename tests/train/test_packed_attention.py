"""ftr.packed_attention: boundaries computed once per position_ids tensor, the fallback path, and (GPU) the same
outputs and gradients as Axolotl's sdpa_varlen path."""

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
