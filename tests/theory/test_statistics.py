"""Token statistics of adaptive objectives (probsft.theory.statistics): the fast paths the fused loss
takes (exact two-stage top-k, statistics from the pass's exponentials) against their definitions.
Run: python -m pytest tests/theory/test_statistics.py
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import probsft
from probsft.theory.statistics import (_TOPK_BLOCK, split_from_exp, token_stats_from_exp,
                                       token_stats_numpy, token_stats_torch, topk_values)


@settings(max_examples=60, deadline=None)
@given(k=st.integers(1, 3), blocks=st.integers(0, 20), tail=st.integers(0, _TOPK_BLOCK - 1),
       rows=st.integers(1, 3), levels=st.integers(1, 50), neg_inf=st.booleans(),
       transposed=st.booleans(), seed=st.integers(0, 2**16))
def test_topk_values_equals_torch_topk(k, blocks, tail, rows, levels, neg_inf, transposed, seed):
    """Both stages (V above and below 4 k blocks), ties (few distinct levels), -inf entries, a
    partial last block, and vocab-major views (the fused loss's "col" layout)."""
    V = max(k, blocks * _TOPK_BLOCK + tail)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(0, levels, (rows, V), generator=gen).double()
    if neg_inf:
        z[torch.rand(rows, V, generator=gen) < 0.5] = float("-inf")
    if transposed:
        z = z.t().contiguous().t()
    assert torch.equal(topk_values(z, k), torch.topk(z, k, dim=-1).values)


def test_topk_values_finds_a_maximum_alone_in_its_block():
    """The k largest values spread over k blocks, each the only large entry of its block, with other
    blocks full of near-maximal entries: all k blocks must be kept."""
    k, V = 5, 64 * _TOPK_BLOCK + 7
    z = torch.zeros(2, V, dtype=torch.float64)
    z[:, :: _TOPK_BLOCK] = 0.5                                      # every block's maximum 0.5
    for j, block in enumerate((3, 17, 40, 63, 64)):                 # 64: the partial last block
        z[:, block * _TOPK_BLOCK + 1] = 10.0 - j
    assert torch.equal(topk_values(z, k), torch.tensor([[10.0, 9, 8, 7, 6]] * 2, dtype=torch.float64))


def _logits(V, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(6, V, generator=gen, dtype=torch.float64) * 3
    z[1, : V - 3] = float("-inf")                                   # three finite logits
    z[2] = 0.0                                                      # uniform
    z[3, 5] = 60.0                                                  # one dominant token
    z[4, :] = torch.arange(V, dtype=torch.float64) % 7              # ties
    return z


@pytest.mark.parametrize("V", [50, 3 * 4 * 20 * _TOPK_BLOCK + 11])  # top-20: one and two stages
@pytest.mark.parametrize("layout", ["row", "col"])
def test_statistics_from_exponentials_equal_their_definitions(V, layout):
    """from_exp(e, S), with e = exp(z - max z) as the fused pass has it, against torch_fn(z, lse) and
    the float64 numpy reference, for every statistic that has one."""
    z = _logits(V)
    if layout == "col":
        z = z.t().contiguous().t()
    names = ("sumsq", "entropy_top20", "entropy_top3", "entropy")
    on_z, on_e = split_from_exp(names)
    assert set(on_e) == {"sumsq", "entropy_top20", "entropy_top3"} and on_z == ("entropy",)
    m = z.amax(-1, keepdim=True)
    e = (z - m).exp()
    got = token_stats_from_exp(on_e, e, e.sum(-1))
    direct = token_stats_torch(on_e, z, torch.logsumexp(z, -1))
    want = token_stats_numpy(on_e, z.numpy())
    for name in on_e:
        np.testing.assert_allclose(got[name].numpy(), want[name], rtol=1e-12, atol=1e-13,
                                   err_msg=name)
        np.testing.assert_allclose(direct[name].numpy(), want[name], rtol=1e-12, atol=1e-13,
                                   err_msg=name)
    assert float(got["entropy_top20"][2]) == pytest.approx(np.log(20))
    assert float(got["sumsq"][3]) == pytest.approx(1.0)


@pytest.mark.parametrize("spec", ["deft", "eaft", "eaft(1,20,1)"])
@pytest.mark.parametrize("layout", ["row", "col"])
def test_fused_loss_with_two_stage_top_k_equals_the_materialised_one(spec, layout):
    """A vocabulary large enough for topk_values's two stages (and not a multiple of its block):
    the fused loss's statistics from e match the materialised loss's from z, loss and gradients."""
    V = 4 * 20 * _TOPK_BLOCK + 300
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(9, 8, generator=gen, dtype=torch.float64)
    W = torch.randn(V, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, V, (9,), generator=gen)
    y[0] = -100
    leaves = [h.clone().requires_grad_(), W.clone().requires_grad_()]
    fused = probsft.fused_linear_loss(*leaves, y, spec, chunk_size=4, layout=layout)
    fused.backward()
    ref_leaves = [h.clone().requires_grad_(), W.clone().requires_grad_()]
    ref = probsft.objective(spec).loss(ref_leaves[0] @ ref_leaves[1].T, y)
    ref.backward()
    torch.testing.assert_close(fused, ref, rtol=1e-10, atol=1e-12)
    for got, want in zip(leaves, ref_leaves):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-9, atol=1e-12)
