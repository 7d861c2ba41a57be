"""The synthetic capability continuum: one dial, ``prior_strength`` s in [0, 1].

Base-model logits of a context whose true token is y* (paper §2.1, Assumption 6.1 made concrete):

    z0 = s * (kappa * c_x * e_{y*} + eps),   kappa = prior_margin * log V,
    c_x ~ LogNormal(-spread^2/2, spread)  (per-context difficulty),  eps ~ N(0, I_V)

s = 0 is the uniform base model (MW: q = 1/V); s = 1 puts most mass on y* (MS). The same
construction is used in both modes:

* theory mode: z0 *is* the state (identity Gram, App. E.3), one logit vector per context, [C, V];
* learning mode: contexts are features x = c_x * mu_{y*} + g / sqrt(d) with class means mu_v (unit
  vectors, the "teacher"), and the base model is the softmax regression W0 = s (kappa M + G), rows
  mu_v and G_v ~ N(0, I_d), so  W0 x  has the same margin-plus-noise structure as z0.

Mixed difficulty (``easy_frac`` > 0): a fraction easy_frac of the contexts (train and held-out) is
*easy*, the rest *hard*, in one batch, as real answers mix easy and hard tokens. Theory mode: an easy
context has prior strength 1, a hard one the dial's s. Learning mode: the base model is W0 = kappa M
+ G at full strength; an easy context is x = c_x mu_{y*} + g (the mapping the base model knows), a
hard one x = c_x nu_{y*} + g with fresh class means nu_v mixed in by the dial, normalise(s mu + (1-s)
nu), so at s = 0 the prior knows nothing about it. Both groups are fitted by the *same* weights W,
so an optimizer that normalises per parameter (Adam) still sees their gradients side by side.
Metrics are also reported per group.

Labels: with probability E the training label differs from y* (``uniform`` over the others, or drawn
from the base ``model`` without y*); a fraction ``uninformative_frac`` of positions are filler whose
label is uniform over V and which are never evaluated. All randomness comes from the seed alone, so
the same contexts, noise draws and features are shared across the whole (s, E) grid (common random
numbers), and a configuration gives the same result alone or inside a batch.

Every configuration is reported by the paper's capability statistics of the base model on its
training targets: mean p (Eq. 5) and the fraction with p > 0.55 (Table 6).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from probsft.sim.config import SimConfig


@dataclasses.dataclass
class Batch:
    """B configurations stacked on dim 0. Shapes: C train contexts, M eval contexts, V, d."""

    labels: torch.Tensor          # [B, C]   training label (noisy / filler)
    y_star: torch.Tensor          # [B, C]   true token of each training context
    informative: torch.Tensor     # [B, C]   bool, False for filler positions
    z0: torch.Tensor | None = None        # theory:   [B, C, V] base logits (the state)
    W0: torch.Tensor | None = None        # learning: [B, V, d] base weights
    X: torch.Tensor | None = None         # learning: [B, C, d] training features
    X_eval: torch.Tensor | None = None    # learning: [B, M, d]
    y_eval: torch.Tensor | None = None    # learning: [B, M]
    easy: torch.Tensor | None = None       # [B, C] bool, mixed difficulty only (else None)
    easy_eval: torch.Tensor | None = None  # [B, M] bool (theory mode: None, eval = train)

    def train_logits(self, W=None) -> torch.Tensor:
        """Logits of the training contexts, [B, C, V] (theory: z0; learning: X W^T)."""
        if self.X is None:
            return self.z0
        return torch.einsum("bcd,bvd->bcv", self.X, self.W0 if W is None else W)

    def eval_logits(self, state=None) -> torch.Tensor:
        """Logits of the evaluated contexts, [B, M, V]: theory mode the state z (default z0),
        learning mode X_eval W^T (default W0)."""
        if self.X is None:
            return self.z0 if state is None else state
        return torch.einsum("bmd,bvd->bmv", self.X_eval, self.W0 if state is None else state)


def _generator(seed: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed(1_000_003 * seed + stream)


def _draws(cfg: SimConfig, seed: int, dtype) -> dict:
    """All random numbers of one seed; independent of the (s, E) grid (common random numbers)."""
    V, C, M, d = cfg.vocab_size, cfg.contexts, cfg.eval_contexts, cfg.feature_dim
    g = _generator(seed, 1)
    sd = cfg.prior_spread

    def difficulty(n):
        return torch.exp(sd * torch.randn(n, generator=g, dtype=dtype) - sd * sd / 2)

    out = {
        "y_star": torch.randint(V, (C,), generator=g),
        "c_x": difficulty(C),
        "u_noise": torch.rand(C, generator=g, dtype=dtype),
        "u_wrong": torch.rand(C, generator=g, dtype=dtype),
        "u_fill": torch.rand(C, generator=g, dtype=dtype),
        "fill_label": torch.randint(V, (C,), generator=g),
    }
    if cfg.mode == "theory":
        out["eps"] = torch.randn(C, V, generator=g, dtype=dtype)
    else:
        mu = torch.randn(V, d, generator=g, dtype=dtype)
        out["mu"] = mu / mu.norm(dim=1, keepdim=True)                     # [V, d] class means
        out["G"] = torch.randn(V, d, generator=g, dtype=dtype)            # [V, d] prior noise
        out["g"] = torch.randn(C, d, generator=g, dtype=dtype) / math.sqrt(d)
        out["y_eval"] = torch.randint(V, (M,), generator=g)
        out["c_eval"] = difficulty(M)
        out["g_eval"] = torch.randn(M, d, generator=g, dtype=dtype) / math.sqrt(d)
    if cfg.easy_frac > 0:                          # drawn last: the streams above stay the same
        out["easy"] = torch.rand(C, generator=g, dtype=dtype) < cfg.easy_frac
        if cfg.mode == "learning":
            nu = torch.randn(V, d, generator=g, dtype=dtype)
            out["nu"] = nu / nu.norm(dim=1, keepdim=True)                 # [V, d] unknown means
            out["easy_eval"] = torch.rand(M, generator=g, dtype=dtype) < cfg.easy_frac
    return out


def _wrong_labels(z0: torch.Tensor, y_star: torch.Tensor, u: torch.Tensor, kind: str):
    """A label != y* per context [C], from u ~ U[0, 1) [C]: uniform over the V-1 other tokens, or
    drawn from the base model restricted to them (softmax of z0 [C, V] without column y*).

    Both kinds pick an index k in 0..V-2 among the *other* tokens and then skip y*, so y* can never
    be returned (not even when rounding leaves the last cdf entry below u, or when q0 puts all of
    its float mass on y*: the restricted softmax is taken of the other logits, never 0/0).
    """
    C, V = z0.shape
    if kind == "uniform":
        k = (u * (V - 1)).long()
    else:
        others = torch.ones_like(z0, dtype=torch.bool)
        others[torch.arange(C), y_star] = False
        w = torch.softmax(z0[others].reshape(C, V - 1), dim=-1)          # [C, V-1]
        cdf = torch.cumsum(w, dim=-1)
        k = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None].contiguous(), right=True).squeeze(-1)
    k = torch.clamp(k, 0, V - 2)                                          # 0..V-2
    return k + (k >= y_star).long()                                       # skip y*


def build(cfg: SimConfig, cells: list[tuple[float, float, int]]) -> Batch:
    """Stack the configurations ``cells`` = [(prior_strength, noise_rate, seed), ...]."""
    dtype = getattr(torch, cfg.dtype)
    kappa = cfg.prior_margin * math.log(cfg.vocab_size)
    mixed = cfg.easy_frac > 0
    cache: dict[int, dict] = {}
    parts = []
    for s, E, seed in cells:
        if seed not in cache:
            cache[seed] = _draws(cfg, seed, dtype)
        r = cache[seed]
        y = r["y_star"]
        if cfg.mode == "theory":
            one_hot = torch.nn.functional.one_hot(y, cfg.vocab_size).to(dtype)
            s_x = torch.where(r["easy"], 1.0, s).to(dtype)[:, None] if mixed else s   # [C, 1]
            z0 = s_x * (kappa * r["c_x"][:, None] * one_hot + r["eps"])  # [C, V]
            X = W0 = None
        else:
            X = _features(r, y, r["c_x"], r["g"], r.get("easy"), s)       # [C, d]
            W0 = (1.0 if mixed else s) * (kappa * r["mu"] + r["G"])       # [V, d]
            z0 = X @ W0.T
        wrong = _wrong_labels(z0, y, r["u_wrong"], cfg.noise_kind)
        labels = torch.where(r["u_noise"] < E, wrong, y)
        informative = r["u_fill"] >= cfg.uninformative_frac
        labels = torch.where(informative, labels, r["fill_label"])
        part = {"labels": labels, "y_star": y, "informative": informative}
        if mixed:
            part["easy"] = r["easy"]
        if cfg.mode == "theory":
            part["z0"] = z0
        else:
            part.update(W0=W0, X=X, y_eval=r["y_eval"], X_eval=_features(
                r, r["y_eval"], r["c_eval"], r["g_eval"], r.get("easy_eval"), s))
            if mixed:
                part["easy_eval"] = r["easy_eval"]
        parts.append(part)
    return Batch(**{k: torch.stack([p[k] for p in parts]) for k in parts[0]})


def _features(r: dict, y, c, g, easy, s: float) -> torch.Tensor:
    """Context features [N, d]: c mu_y + g; with mixed difficulty, hard contexts use the class
    direction normalise(s mu_y + (1 - s) nu_y) instead of mu_y."""
    if easy is None:
        return c[:, None] * r["mu"][y] + g
    hard_dir = s * r["mu"][y] + (1 - s) * r["nu"][y]
    hard_dir = hard_dir / hard_dir.norm(dim=1, keepdim=True)
    return c[:, None] * torch.where(easy[:, None], r["mu"][y], hard_dir) + g


def target_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """p of each label under softmax(logits): [..., V], [...] -> [...]."""
    return torch.softmax(logits, -1).gather(-1, labels[..., None]).squeeze(-1)


def capability(batch: Batch) -> dict[str, torch.Tensor]:
    """Base-model capability statistics per configuration, each [B].

    ``base/mean_p``: Eq. 5, mean base-model p of the training targets (the labels as given);
    ``base/frac_p055``: Table 6, fraction of training targets with p > 0.55;
    ``base/expected_acc``: mean q0(y*) on the training contexts (r^T q0, filler excluded);
    ``base/eval_acc``, ``base/eval_expected_acc``: the base model's held-out accuracy and r^T q0,
    the same metrics as the trained ``eval/*`` (learning mode; theory mode: the training contexts).
    """
    z0 = batch.train_logits()
    p = target_probs(z0, batch.labels)
    p_true = target_probs(z0, batch.y_star)
    inf = batch.informative.to(p.dtype)
    base = evaluate(batch, batch.eval_logits())
    return {"base/mean_p": p.mean(-1), "base/frac_p055": (p > 0.55).to(p.dtype).mean(-1),
            "base/expected_acc": (p_true * inf).sum(-1) / inf.sum(-1).clamp(min=1),
            "base/eval_acc": base["eval/acc"], "base/eval_expected_acc": base["eval/expected_acc"]}


def evaluate(batch: Batch, z_eval: torch.Tensor) -> dict[str, torch.Tensor]:
    """Accuracy and r^T q against the true token on the evaluated contexts, per configuration [B],
    overall and, with mixed difficulty (n_easy > 0), per group (``*_easy`` / ``*_hard``).

    z_eval: [B, M, V] logits of the held-out contexts (theory mode: of the training contexts).
    """
    if batch.X is None:
        y, keep, easy = batch.y_star, batch.informative, batch.easy
    else:
        y, keep = batch.y_eval, torch.ones_like(batch.y_eval, dtype=torch.bool)
        easy = batch.easy_eval
    hit = (z_eval.argmax(-1) == y).to(z_eval.dtype)
    q_true = target_probs(z_eval, y)
    out = {}
    groups = (("", keep),) if easy is None else (
        ("", keep), ("_easy", keep & easy), ("_hard", keep & ~easy))
    for suffix, mask in groups:
        m = mask.to(z_eval.dtype)
        n = m.sum(-1)
        out[f"eval/acc{suffix}"] = (hit * m).sum(-1) / n
        out[f"eval/expected_acc{suffix}"] = (q_true * m).sum(-1) / n
    return out
