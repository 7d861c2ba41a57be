"""The batched dynamics against the core API: closed-form logit gradients, thresholds, continuum."""

import math

import numpy as np
import pytest
import torch

import probsft
from probsft.sim import dynamics
from probsft.sim.config import SimConfig
from probsft.sim.continuum import build, capability, target_probs


@pytest.mark.parametrize("spec", ["nll", "p", "alpha(0.3)", "alpha(10)", "nll@p>=0.2",
                                  "nll@p<=Q30", "deft", "deft@p>=0.2", "alpha(auto)"])
def test_logit_gradient_matches_objective_loss_autograd(spec):
    """Per configuration, the batched gradient is the objective's own loss gradient; adaptive
    objectives too (DEFT's sum q^2 per context, alpha(auto) resolved per configuration)."""
    cfg = SimConfig(mode="learning", vocab_size=7, contexts=40, feature_dim=5, noise_rates=(0.3,))
    batch = build(cfg, [(0.3, 0.3, 0), (1.0, 0.3, 1)])
    obj = probsft.objective(spec)
    z = batch.train_logits().detach()
    base_p = target_probs(z, batch.labels)
    ours = dynamics._logit_grad(z, batch.labels, obj, dynamics.bounds(obj, base_p), normalise=True,
                                fixed=dynamics.probe_values(obj, base_p))
    for b in range(2):
        ob = obj.resolve(base_p[b].numpy())
        zb = z[b].clone().requires_grad_(True)
        ob.loss(zb, batch.labels[b], reduction="mean").backward()
        torch.testing.assert_close(ours[b], zb.grad, rtol=1e-10, atol=1e-12)


def test_quantile_bounds_resolve_per_configuration():
    cfg = SimConfig(mode="theory", vocab_size=9, contexts=50)
    batch = build(cfg, [(0.2, 0.1, 0), (0.9, 0.1, 0)])
    base_p = target_probs(batch.z0, batch.labels)
    lo, hi, _, _ = dynamics.bounds(probsft.objective("nll@p<=Q10"), base_p)
    assert lo.tolist() == [0.0, 0.0]
    for b in range(2):
        assert hi[b].item() == pytest.approx(np.percentile(base_p[b].numpy(), 10), rel=1e-12)
    assert hi[0] < hi[1]


def test_continuum_ends_and_noise_rate():
    cfg = SimConfig(mode="theory", vocab_size=16, contexts=4000)
    batch = build(cfg, [(0.0, 0.25, 0), (0.5, 0.25, 0), (1.0, 0.25, 0)])
    cap = capability(batch)
    assert cap["base/mean_p"][0].item() == pytest.approx(1 / 16)             # uniform base
    assert cap["base/mean_p"][0] < cap["base/mean_p"][1] < cap["base/mean_p"][2]
    assert cap["base/frac_p055"][0] == 0 and cap["base/frac_p055"][2] > 0.5
    noisy = (batch.labels != batch.y_star).double().mean(-1)
    assert torch.allclose(noisy, torch.full_like(noisy, 0.25), atol=0.03)


def test_uninformative_positions_and_model_noise():
    cfg = SimConfig(mode="learning", vocab_size=10, contexts=3000, uninformative_frac=0.4,
                    noise_kind="model")
    batch = build(cfg, [(1.0, 0.5, 0)])
    assert abs(batch.informative.double().mean().item() - 0.6) < 0.04
    inf = batch.informative[0]
    wrong = inf & (batch.labels[0] != batch.y_star[0])
    assert abs(wrong.double().sum().item() / inf.sum().item() - 0.5) < 0.04
    # model-drawn wrong labels are plausible: more base mass than a uniform wrong token
    p_wrong = target_probs(batch.train_logits()[0][wrong], batch.labels[0][wrong])
    p_true = target_probs(batch.train_logits()[0][wrong], batch.y_star[0][wrong])
    assert p_wrong.mean() > (1 - p_true.mean()) / 9


def test_a_configuration_is_the_same_alone_or_in_a_batch():
    cfg = SimConfig(mode="learning", vocab_size=8, contexts=64, feature_dim=6, steps=20)
    cells = [(0.0, 0.1, 0), (0.7, 0.3, 1), (1.0, 0.2, 0)]
    obj = probsft.objective("alpha(0.5)")
    together = dynamics.learn(obj, build(cfg, cells), cfg.lr, cfg.steps, "adam", None)[cfg.steps]
    for j, cell in enumerate(cells):
        alone = dynamics.learn(obj, build(cfg, [cell]), cfg.lr, cfg.steps, "adam", None)[cfg.steps]
        torch.testing.assert_close(alone[0], together[j], rtol=1e-9, atol=1e-12)


def test_divergence_is_flagged_not_silent():
    cfg = SimConfig(mode="theory", vocab_size=5, contexts=8)
    batch = build(cfg, [(1.0, 0.0, 0)])
    state = batch.z0.clone()
    state[0, 0, 0] = math.inf
    m = dynamics.metrics(batch, state, "theory")
    assert m["diverged"].item() == 1 and math.isnan(m["eval/acc"].item())


def test_snapshots_equal_shorter_runs():
    cfg = SimConfig(mode="learning", vocab_size=8, contexts=32, feature_dim=6, steps=12)
    obj = probsft.objective("p")
    batch = build(cfg, [(0.5, 0.2, 0)])
    states = dynamics.learn(obj, batch, cfg.lr, 12, "sgd", None, record=(5,))
    torch.testing.assert_close(states[5], dynamics.learn(obj, batch, cfg.lr, 5, "sgd", None)[5])
    assert sorted(states) == [5, 12]


@pytest.mark.parametrize("kind", ["uniform", "model"])
def test_wrong_label_sampler_never_returns_the_true_token(kind):
    from probsft.sim.continuum import _wrong_labels

    V = 6
    y_star = torch.arange(V).repeat(4)                                 # every token is y* somewhere
    z0 = torch.zeros(len(y_star), V, dtype=torch.float32)
    z0[torch.arange(len(y_star)), y_star] = 200.0          # q0 puts all of its float mass on y*
    z0[:V, :] += torch.linspace(-3, 3, V)                  # and some rows with unequal others
    for u in (0.0, 0.3, 0.999999, 1.0 - 2 ** -24, float(torch.nextafter(torch.tensor(1.0),
                                                                         torch.tensor(0.0)))):
        lab = _wrong_labels(z0, y_star, torch.full((len(y_star),), u), kind)
        assert (lab != y_star).all() and ((lab >= 0) & (lab < V)).all()
    # every other token is reachable
    u = torch.linspace(0, 0.9999, 200)
    lab = _wrong_labels(torch.zeros(200, V), torch.full((200,), V - 1), u, kind)
    assert set(lab.tolist()) == set(range(V - 1))


def test_frac_p055_counts_p_above_0_55_only():
    """Table 6's statistic: p = 0.5 is not counted (it would be at a 0.45 cut), p = 0.6 is."""
    from probsft.sim.continuum import Batch, capability

    def logits_with_p(p, V=4):         # target 0 has probability p, the rest share 1 - p
        z = torch.full((V,), math.log((1 - p) / (V - 1)), dtype=torch.float64)
        z[0] = math.log(p)
        return z

    z0 = torch.stack([logits_with_p(0.5), logits_with_p(0.6), logits_with_p(0.5),
                      logits_with_p(0.2)])[None]                                  # [1, 4, V]
    zeros = torch.zeros(1, 4, dtype=torch.long)
    batch = Batch(labels=zeros, y_star=zeros, informative=torch.ones(1, 4, dtype=torch.bool),
                  z0=z0)
    cap = capability(batch)
    assert cap["base/frac_p055"].item() == pytest.approx(0.25)
    assert cap["base/mean_p"].item() == pytest.approx((0.5 + 0.6 + 0.5 + 0.2) / 4)
