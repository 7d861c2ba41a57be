"""`probsft simulate`: run one simulator experiment (a named preset or a config file), save, draw.

    probsft simulate --preset crossover                        # -> runs/sim/crossover/
    probsft simulate --preset phase --seeds 0 1 --out /tmp/ph  # flags override preset fields
    probsft simulate --config my.json --out runs/mine          # any SimConfig (strict JSON)
    probsft simulate --list                                    # the presets

Results (results.csv / escape.csv and config.json) are written before the figure; rerunning the
same command resumes an interrupted sweep.
"""

from __future__ import annotations

import json
from pathlib import Path

from probsft.errors import UserError

# flag -> (config field, type); each overrides the preset's value
OVERRIDES = {
    "mode": ("mode", str), "objectives": ("objectives", str), "seeds": ("seeds", int),
    "prior_strengths": ("prior_strengths", float), "noise_rates": ("noise_rates", float),
    "vocab_size": ("vocab_size", int), "contexts": ("contexts", int), "steps": ("steps", int),
    "lr": ("lr", float), "optimizer": ("optimizer", str),
    "uninformative_frac": ("uninformative_frac", float), "noise_kind": ("noise_kind", str),
}
LISTS = {"objectives", "seeds", "prior_strengths", "noise_rates"}


def add_parser(sub):
    from probsft.sim.presets import PRESETS

    p = sub.add_parser("simulate", help="synthetic capability-continuum simulator (issue 3)")
    p.add_argument("--preset", choices=PRESETS, help="named experiment (one per figure)")
    p.add_argument("--config", help="JSON config file (SimConfig; EscapeConfig for escape)")
    p.add_argument("--out", help="results folder; the figure is drawn into it too (default runs/sim/<preset>)")
    p.add_argument("--full", action="store_true", help="preset's larger grid / more seeds")
    p.add_argument("--no-figure", action="store_true", help="save results only")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    for flag, (_, typ) in OVERRIDES.items():
        p.add_argument("--" + flag.replace("_", "-"), type=typ,
                       nargs="+" if flag in LISTS else None, help=f"override config field {flag}")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.sim import presets
    from probsft.sim.config import SimConfig
    from probsft.sim.escape import EscapeConfig
    from probsft.files import locked_output
    from probsft.reproduce.sim import run_preset

    if args.list:
        print(presets.__doc__.split("\n\n")[1])
        return 0
    if args.preset is None and args.config is None:
        raise UserError("give --preset NAME or --config FILE (see --list)")
    name = args.preset or "custom"
    if args.config:
        data = _load_json(args.config)
        is_escape = name == "escape"
        cfg = EscapeConfig.from_dict(data) if is_escape else SimConfig.from_dict(data)
    else:
        cfg = presets.preset(name, args.full)
    changes = {field: getattr(args, flag) for flag, (field, _) in OVERRIDES.items()
               if getattr(args, flag) is not None}
    if changes:
        if isinstance(cfg, EscapeConfig):
            raise UserError(f"the escape preset takes no sweep flags ({sorted(changes)}); "
                            "use --config with an EscapeConfig JSON")
        cfg = cfg.replace(**changes)
    out = Path(args.out) if args.out else Path("runs") / "sim" / name
    with locked_output(out, "--out"):
        for line in run_preset(name, cfg, out, figure_dir=None if args.no_figure else out):
            print(line)
    return 0


def _load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
