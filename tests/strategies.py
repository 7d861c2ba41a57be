"""Shared hypothesis strategies: objective specs, logits/labels batches with masks, probabilities.

Import as ``from tests.strategies import ...`` (tests/theory/conftest.py puts the repo root on
sys.path). Sizes stay small so property tests are fast on 2 CPU cores, but logit scales up to 12
with V up to 32 reach extreme p (target probabilities from ~1e-40 to 1 - 1e-15).
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from probsft.theory.spec import registered

USER_EXPRESSIONS = ["(1-p**3)/3", "-log(p) + (1-p)", "exp(-p)", "-sqrt(p)", "(1-p)**2"]
THRESHOLDED = ["nll@p<=0.5", "alpha(5)@0.1<=p<=0.9", "focal(2)@p>0.3", "p@(0.2,0.8]"]
AUTHOR_KEYS = {"original": "nll", "logp": "nll", "p": "p", "GeneralFamily-8": "alpha(8)",
               "GeneralFamily-0.5": "alpha(0.5)", "GeneralFamily-1": "p", "GeneralFamily-0": "nll",
               "OnlyTopP-0.2": "p@p>=0.2", "OnlyBottomP-0.5": "p@p<=0.5",
               "OnlyTopLogP-0.2": "nll@p>=0.2", "OnlyBottomLogP-0.5": "nll@p<=0.5"}
ALL_SPECS = registered() + ["alpha(-0.5)", "alpha(2)", "focal(0.5)", "huber(1)", "huber(0.2)",
                            *[f"expr:{e}" for e in USER_EXPRESSIONS], *THRESHOLDED]


# objectives whose f depends on more than p: a per-token statistic of q (not derivable in p alone)
ADAPTIVE = ["deft", "deft@p>=0.2", "deft@p<=0.5"]
LOSS_SPECS = ALL_SPECS + ADAPTIVE


def loss_specs() -> st.SearchStrategy[str]:
    """Every spec of :func:`specs` plus the adaptive (token-statistic) objectives."""
    return st.sampled_from(LOSS_SPECS)


def specs() -> st.SearchStrategy[str]:
    """Every registered objective plus negative/other alphas, user expressions and thresholds."""
    return st.sampled_from(ALL_SPECS)


@st.composite
def batches(draw, max_n: int = 12, max_v: int = 32, mask: bool = True, scale: float = 12.0):
    """(logits [N, V] float64, labels [N] with some -100) as torch tensors."""
    n = draw(st.integers(1, max_n))
    v = draw(st.integers(2, max_v))
    seed = draw(st.integers(0, 2**31 - 1))
    s = draw(st.floats(0.1, scale))
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=gen, dtype=torch.float64) * s
    labels = torch.randint(0, v, (n,), generator=gen)
    if mask:
        masked = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        labels[torch.tensor(masked)] = -100
    return logits, labels


@st.composite
def simplex(draw, max_contexts: int = 5, max_v: int = 8, concentration: float = 1.0):
    """(q [C, V] probabilities, y_star [C], y_label [C]) as numpy arrays."""
    c = draw(st.integers(1, max_contexts))
    v = draw(st.integers(2, max_v))
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    q = rng.dirichlet(np.full(v, concentration), size=c)
    q = np.clip(q, 1e-6, None)
    q /= q.sum(-1, keepdims=True)
    return q, rng.integers(0, v, c), rng.integers(0, v, c)


probabilities = st.floats(1e-6, 1 - 1e-6)
