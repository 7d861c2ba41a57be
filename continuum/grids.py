"""The registry of measured continuum grids: one entry per grid, looked up by key.

A grid is one backbone's dial experiment (probsft.continuum.experiment): the backbone (a folder of
models/, built by `probsft backbone build --seed S`), its positions (dial tasks), the noise kinds
it ran, its results folder, and, for the grids run as held-out tests of the recommendation rule,
the grids the rule was set on and the rules registered before the grid ran. Adding a backbone is one
entry here; the report (probsft.reproduce.validate), the measured curve that `probsft recommend`
reads (probsft.continuum.curve) and the tests all read this table.

Positions of the other backbones were chosen by build probe p alone, before any of their fine-tunes
ran: the dial tasks whose answer p lies nearest :data:`TARGETS`, one task each
(probsft.validate.backbone.positions_near).

    >>> from probsft.continuum.grids import GRIDS, grid
    >>> grid("e").command()        # the command that runs (or resumes) the fifth backbone's grid
"""

from __future__ import annotations

import dataclasses
import shlex

from probsft.continuum import experiment as ex
from probsft.errors import UserError
from probsft.paths import MODELS

TARGETS = (0.05, 0.2, 0.45, 0.65, 0.8)    # build-probe answer p the other backbones' positions sit near


@dataclasses.dataclass(frozen=True)
class Grid:
    """One measured grid (see the module docstring)."""

    key: str
    folder: str                          # results/<folder>
    model: str                           # models/<model>; "backbone" is the shipped one
    tasks: tuple[str, ...]               # the positions, as run
    full: bool = True                    # ExperimentConfig FULL (else REDUCED), with tasks/supervision
    objectives: tuple[str, ...] = ()     # the objectives run (() : the config's own)
    supervision: tuple[str, ...] = ()    # the noise kinds run (() : the config's own)
    build_seed: int = 0                  # `probsft backbone build --seed`
    build_threads: int | None = None     # `--threads` of that build (None: the default)
    targets: tuple[float, ...] | None = None   # positions chosen by positions_near(targets)
    rule_grids: tuple[str, ...] = ()     # keys of the grids the rule is set on (pooled) for its test
    registered: tuple[str, ...] = ()     # rules committed before this grid ran (the first: its test)
    title: str = ""

    @property
    def model_path(self):
        return MODELS / self.model

    @property
    def shipped(self) -> bool:
        """Run on the shipped backbone (models/backbone)."""
        return self.model == "backbone"

    def config(self) -> ex.ExperimentConfig:
        base = ex.FULL if self.full else ex.REDUCED
        over = {"tasks": self.tasks, **({"supervision": self.supervision} if self.supervision else {}),
                **({"objectives": self.objectives} if self.objectives else {})}
        return dataclasses.replace(base, **over)

    def command(self) -> str:
        """The command that runs (or resumes) this grid."""
        if self.shipped and self.tasks == ex.POSITIONS and not self.objectives:
            return "probsft reproduce --only validate" + (" --full" if self.full else "")
        sup = f" --supervision {' '.join(self.supervision)}" if self.supervision else ""
        objs = (f" --objectives {' '.join(shlex.quote(o) for o in self.objectives)}"
                if self.objectives else "")
        return (f"probsft validate{' --full' if self.full else ''} --model models/{self.model} "
                f"--tasks {' '.join(self.tasks)}{sup}{objs} --out results/{self.folder}")

    def build_command(self) -> str:
        threads = f" --threads {self.build_threads}" if self.build_threads else ""
        return f"probsft backbone build --seed {self.build_seed}{threads} --out models/{self.model}"


def _other(key, seed, threads, tasks, supervision, rule_grids, registered, title) -> Grid:
    """Another backbone's grid: models/backbone_<key>, results/validate_<key>, positions near TARGETS."""
    return Grid(key, f"validate_{key}", f"backbone_{key}", tasks, supervision=supervision,
                build_seed=seed, build_threads=threads, targets=TARGETS, rule_grids=rule_grids,
                registered=registered, title=title)


GRIDS: dict[str, Grid] = {g.key: g for g in (
    Grid("reduced", "validate", "backbone", ex.POSITIONS, full=False,
         title="The reduced grid (the main job's)"),
    Grid("full", "validate_full", "backbone", ex.POSITIONS, title="The full grid"),
    Grid("ecosystem", "validate_ecosystem", "backbone", ex.POSITIONS, full=False,
         objectives=ex.ECOSYSTEM_GRID.objectives,
         title="The ecosystem's objectives (EAFT, CHORD-phi, ASFT) on the shipped backbone"),
    # `--seed 1`: new (model, data) pairs on which the rule set on the full grid is scored
    _other("b", 1, None, ("t_sh2", "t_swp", "t_rol", "t_nov", "t_sh1"), ("clean", "token"),
           ("full",), ("delta",), "A second backbone: held-out positions for the recommendation rule"),
    # the band rule's registered held-out test, under all four noise kinds
    _other("c", 2, 2, ("t_sh3", "t_cpy", "t_swp", "t_rol", "t_sh1"), (),
           ("full", "b"), ("band", "delta"), "A third backbone: the band rule's registered test"),
    # whole-answer noise only, the kind the third backbone's test missed
    _other("d", 3, 2, ("t_sh2", "t_srt", "t_nov", "t_swp", "t_rol"), ("answer",),
           ("full", "b", "c"), ("band",),
           "A fourth backbone: whole-answer noise, the kind the third missed"),
    # registered with an informativeness gate on the build probe (a task at p >= 0.7, another in
    # [0.4, 0.65]; seed 4 passed), all four noise kinds
    _other("e", 4, 2, ("t_sh3", "t_srt", "t_swp", "t_nov", "t_sh1"), (),
           ("full", "b", "c", "d"), ("band", "delta"),
           "A fifth backbone: the band rule set on four grids, all four noise kinds"),
)}

OTHERS = tuple(g for g in GRIDS.values() if not g.shipped)    # held-out backbones, in build order
CURVE = ("full", *(g.key for g in OTHERS))   # the grids pooled into recommend's measured curve


def grid(key: str) -> Grid:
    """The registered grid of ``key``; an unknown key is a UserError naming the known ones."""
    if key not in GRIDS:
        raise UserError(f"unknown grid {key!r}; registered: {', '.join(GRIDS)}")
    return GRIDS[key]
