"""Where a probe's mean p sits on the capability continuum: the paper's three regions, stated once.

Regions (paper Tables 1-3, notes §6.9), placed by the base model's mean p of the answer tokens
(:data:`PLACEMENT`; the end-of-response token is a format token, see probsft.validate.probe):
model-weak [0, 0.25) (figfont ≈ 0.01), model-intermediate [0.25, 0.65) (medical ≈ 0.5),
model-strong [0.65, 1] (math ≈ 0.8). Each region names the Def. 3.3 class the theory expects to
win there (none in the middle). The probe reports a pair's region; the continuum experiment's
predictions (probsft.continuum.predictions) and figure build on the same objects.
"""

from __future__ import annotations

import dataclasses

PLACEMENT = "answer"              # place a position by its answer tokens' mean p (not eos)
CANDIDATES = ("nll", "p", "nll@p>=0.2", "alpha(10)")   # the paper's named objectives


@dataclasses.dataclass(frozen=True)
class Region:
    """One stretch of the continuum, as the paper reports it (Tables 1-3, notes §6.9)."""

    name: str
    lo: float                      # mean p in [lo, hi)
    hi: float
    reference: str                 # the paper's reference point
    ref_p: float                   # its mean p
    prefers: str | None            # Def. 3.3 class the theory expects to win (None: no winner)
    why: str

    @property
    def expected_winners(self) -> tuple[str, ...]:
        """CANDIDATES of the preferred Def. 3.3 class, by the same classifier as ``probsft
        describe`` (probsft.theory.classes.paper_class). No preference: the NLL vs −p contrast,
        neither expected to win."""
        import probsft
        from probsft.theory.classes import paper_class

        if self.prefers is None:
            return ("nll", "p")
        return tuple(s for s in CANDIDATES if paper_class(probsft.objective(s))[0] == self.prefers)


REGIONS = (
    Region("model-weak", 0.0, 0.25, "figfont ≈0.01 (Qwen2.5-7B 0.07)", 0.01, "prior-averse",
           "targets are improbable under the prior; prior-averse objectives (NLL, small alpha) put "
           "their gradient weight W_f(p) on low-p tokens, while -p's weight ~p stalls near p≈0 "
           "(figfont: NLL 82% Jaro-Winkler vs -p 10%)"),
    Region("model-intermediate", 0.25, 0.65, "medical ≈0.5", 0.5, None,
           "no objective is expected to win: -p and NLL were within ~2 points on the medical "
           "suite; gains must come from data or supervision rather than the loss"),
    Region("model-strong", 0.65, 1.0 + 1e-9, "math ≈0.8", 0.8, "prior-leaning",
           "the prior is reliable; prior-leaning objectives (-p, thresholded NLL) refine plausible "
           "tokens and ignore noisy low-p ones (math: -p 32.8% vs NLL 17.0% avg@16 on "
           "Qwen2.5-Math-1.5B)"),
)
BORDERS = tuple(r.hi for r in REGIONS[:-1])          # (0.25, 0.65): drawn by the figure


def region_of(mean_p: float) -> Region:
    return next(r for r in REGIONS if r.lo <= mean_p < r.hi)
