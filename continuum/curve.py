"""The measured curve `probsft recommend` reads: the pooled grids' cells, summarised once.

A curve is a small, versioned JSON table built from the registered grids' ``paired.csv`` files
(probsft.continuum.grids.CURVE, positions tagged by folder): per cell the columns the rule reads
(:data:`COLUMNS`), and per rule (probsft.continuum.rule.RULES) the kernel width chosen by
leave-one-position-out on all of them. The width choice (a minute of work on five grids) is done
here, when the curve is built, never when a user asks for a recommendation.

``probsft reproduce --only validate`` rebuilds it into the shipped data folder
(:data:`DEFAULT`, ``data/curves/measured.json``), so it ships with the package; ``recommend``
takes a :class:`Curve` (or a path to one) as an argument and never reads a results folder.

    python -m probsft.continuum.curve results/validate_full/paired.csv ... --out curve.json
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from probsft.continuum.cells import MARGIN, read_grids
from probsft.errors import UserError
from probsft.files import atomic_write, rounded
from probsft.paths import DATA

FORMAT = "probsft-measured-curve"
VERSION = 1
COLUMNS = ("position", "probe_answer_p", "supervision", "optimizer", "objective", "delta",
           "ci_low", "ci_high", "verdict")
DEFAULT = DATA / "curves" / "measured.json"
# the curves shipped with probsft, by name (`probsft recommend --curve NAME`): the registered grids
# pooled (every position a different task), and the within-task dial (probsft.continuum.dial,
# frozen for its registered held-out test, probsft.continuum.heldout)
SHIPPED = {"measured": DEFAULT, "dial": DATA / "curves" / "dial.json"}


@dataclasses.dataclass(frozen=True)
class Curve:
    """Measured cells (dicts of :data:`COLUMNS`) and the kernel width each rule was fitted with."""

    cells: tuple[dict, ...]
    widths: dict[str, float]          # rule -> kernel width in p (math.inf: the plain mean)
    grids: tuple[str, ...]            # where the cells came from (folder names)
    margin: float = MARGIN
    position: dict | None = None      # probsft.continuum.position.position_test of the default rule

    def width(self, rule: str) -> float:
        if rule not in self.widths:
            raise UserError(f"the curve has no width for rule {rule!r} (it has "
                            f"{', '.join(self.widths)})")
        return self.widths[rule]

    def to_json(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "grids": list(self.grids),
                "margin": self.margin,
                "widths": {r: ("inf" if math.isinf(h) else h) for r, h in self.widths.items()},
                "position_test": self.position, "columns": list(COLUMNS),
                "rows": [[c[k] for k in COLUMNS] for c in self.cells]}


def build(paths, rules=None) -> Curve:
    """The curve of ``paths`` (paired.csv files, pooled), each rule's width chosen by
    leave-one-position-out on all their positions (probsft.continuum.rule.choose_bandwidth), and
    whether position matters there (probsft.continuum.position.position_test, default rule)."""
    from probsft.continuum.position import position_test
    from probsft.continuum.rule import RULE, RULES, choose_bandwidth

    paths = [Path(p) for p in paths]
    cells = read_grids(paths)
    widths = {r: choose_bandwidth(cells, rule=r)["bandwidth"] for r in (rules or RULES)}
    rows = tuple({k: c[k] for k in COLUMNS} for c in cells)
    test = rounded(position_test(cells, RULE)) if len({c["position"] for c in cells}) >= 3 else None
    return Curve(rows, widths, tuple(p.parent.name for p in paths), position=test)


def save(curve: Curve, path=DEFAULT) -> Path:
    """Write ``curve`` as JSON, one cell per line (small diffs when a grid grows); floats to
    probsft.files.SIGNIFICANT digits."""
    doc = rounded(curve.to_json())
    rows = doc.pop("rows")
    head = json.dumps(doc, indent=1)[:-2]
    body = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in rows)
    return atomic_write(path, f'{head},\n "rows": [\n{body}\n ]\n}}\n')


def load(path=DEFAULT) -> Curve:
    """A saved curve; a file of another format or version is one UserError naming both versions."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no measured curve at {path} (`probsft reproduce --only validate` "
                        "builds it; --curve none uses the theory alone)") from None
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable curve file ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path}: not a probsft measured curve (expected format {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise UserError(f"{path}: curve format version {doc.get('version')!r}; this probsft reads "
                        f"version {VERSION} (rebuild it with `probsft reproduce --only validate`)")
    if doc.get("columns") != list(COLUMNS):
        raise UserError(f"{path}: columns {doc.get('columns')} differ from {list(COLUMNS)}")
    cells = tuple(dict(zip(COLUMNS, row)) for row in doc["rows"])
    widths = {r: math.inf if h == "inf" else float(h) for r, h in doc["widths"].items()}
    return Curve(cells, widths, tuple(doc["grids"]), float(doc["margin"]), doc.get("position_test"))


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.curve",
                                 description="build a measured curve from paired.csv files")
    ap.add_argument("paired", nargs="+", help="paired.csv files of the continuum experiment")
    ap.add_argument("--out", required=True, help="the curve file to write (JSON)")
    args = ap.parse_args(argv)
    try:
        print(f"wrote {save(build(args.paired), args.out)}")
    except (UserError, OSError) as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
