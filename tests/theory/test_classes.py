"""The paper's class of each objective (probsft.theory.classes.paper_class), derived from W_f:
where it peaks relative to p = 1/2 (Prop. 3.2), which end a threshold cuts (Def. 3.3 with the
threshold as tau), and, for an adaptive objective, whether its members agree.
Run: python -m pytest tests/theory/test_classes.py
"""

import numpy as np
import pytest
from probsft.theory.classes import paper_class, peak

import probsft
from probsft.cli import main

AVERSE, LEANING, ADAPTIVE = "prior-averse", "prior-leaning", "adaptive"

# The paper's table (notes §1.2) and §5, key by key.
PAPER = {
    "nll": AVERSE, "alpha(0.1)": AVERSE, "alpha(0.5)": AVERSE, "alpha(0.8)": AVERSE,
    "-p": LEANING, "1-p": LEANING, "alpha(5)": LEANING, "alpha(10)": LEANING,
    "log(1-p)": LEANING, "focal(2)": AVERSE, "huber(0.5)": LEANING, "dft": LEANING,
    "nll@p>=0.2": LEANING, "OnlyTopP-0.2": LEANING, "OnlyTopLogP-0.3": LEANING,
    "OnlyBottomP-0.8": AVERSE, "OnlyBottomLogP-0.5": AVERSE, "nll@p>=Q90": LEANING,
    "deft": ADAPTIVE, "alpha(auto)": ADAPTIVE,
}


@pytest.mark.parametrize("spec, klass", sorted(PAPER.items()))
def test_the_class_is_the_paper_s(spec, klass):
    assert paper_class(spec)[0] == klass


@pytest.mark.parametrize("a", [0.05, 0.3, 0.9, 0.999, 1.001, 2.0, 7.0])
def test_alpha_class_follows_its_peak_a_over_1_plus_a(a):
    """W = p^a (1 - p) peaks at a/(1+a): below 1/2 exactly when a < 1 (convex f, Prop. 3.2)."""
    assert paper_class(f"alpha({a})")[0] == (AVERSE if a < 1 else LEANING)


def test_a_band_is_classified_by_its_peak_and_thresholds_override_the_shape():
    assert paper_class("nll@[0.2,0.6]")[0] == AVERSE       # W = 1 - p peaks at the band's low end
    assert paper_class("p@[0.3,0.9]")[0] == LEANING        # p(1 - p) peaks at 1/2 inside the band
    assert paper_class("alpha(10)@p<=0.95")[0] == AVERSE   # cut at the top: all mass below 0.95
    assert paper_class("alpha(0.1)@p>0.01")[0] == LEANING  # cut at the bottom: all mass above
    assert paper_class("huber(1)")[0] == AVERSE            # W = p(1-p)^2 peaks at 1/3 (δ > 2/3)


def test_the_peak_it_reads_is_the_argmax_of_W():
    x = np.linspace(1e-4, 1 - 1e-4, 20001)
    for spec in ("alpha(0.5)", "focal(2)", "huber(0.5)", "(1-p**3)/3"):
        at = peak(probsft.objective(spec), 0.0, 1.0)[0]
        assert at == pytest.approx(x[np.argmax(probsft.objective(spec).W(x))], abs=1e-3), spec


def test_adaptive_reasons_name_the_members():
    klass, reason = paper_class("deft")
    assert klass == ADAPTIVE and "sumsq = 1" in reason and AVERSE in reason and LEANING in reason
    klass, reason = paper_class("eaft")       # (H/C)^A (1 - p): NLL's shape at every entropy
    assert klass == AVERSE and "entropy_top20" in reason
    assert "KL anchor" in paper_class("asft")[1]


@pytest.mark.parametrize("argv, klass", [
    (["describe", "nll", "--json"], AVERSE), (["describe", "--json", "--", "-p"], LEANING),
    (["describe", "alpha(10)", "--json"], LEANING), (["describe", "alpha(0.1)", "--json"], AVERSE),
    (["describe", "deft", "--json"], ADAPTIVE), (["describe", "alpha(auto)", "--json"], ADAPTIVE),
])
def test_describe_prints_the_paper_s_class(argv, klass, capsys):
    import json

    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["class"] == klass and out["class_reason"]
    assert "class_vs_nll" in out and "w_mean_p" in out and "class_tau" in out    # kept, stable
