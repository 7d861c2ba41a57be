"""`probsft simulate`: run one simulator experiment (a named preset or a config file), save, draw.

    probsft simulate --preset crossover                        # -> runs/sim/crossover/
    probsft simulate --preset phase --seeds 0 1 --out /tmp/ph  # flags override preset fields
    probsft simulate --config my.json --out runs/mine          # any SimConfig (strict JSON)
    probsft simulate --list                                    # the presets

Results (results.csv / escape.csv and config.json) are written before the figure; rerunning the
same command resumes an interrupted sweep.
"""

from __future__ import annotations

from pathlib import Path

from probsft.errors import UserError


def add_parser(sub):
    from probsft.config import add_config_flags
    from probsft.sim.config import SimConfig
    from probsft.sim.presets import PRESETS

    p = sub.add_parser("simulate", help="synthetic capability-continuum simulator")
    p.add_argument("--preset", choices=PRESETS, help="named experiment (one per figure)")
    p.add_argument("--config", help="JSON config file (SimConfig; EscapeConfig for escape)")
    p.add_argument("--out", help="results folder; the figure is drawn into it too (default runs/sim/<preset>)")
    p.add_argument("--full", action="store_true", help="preset's larger grid / more seeds")
    p.add_argument("--no-figure", action="store_true", help="save results only")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    add_config_flags(p.add_argument_group("SimConfig fields (each overrides the preset's value)"),
                     SimConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.config import flag_values, load_config
    from probsft.sim import presets
    from probsft.sim.config import SimConfig
    from probsft.sim.escape import EscapeConfig
    from probsft.reproduce.sim import run_preset

    if args.list:
        print(presets.__doc__.split("\n\n")[1])
        return 0
    if args.preset is None and args.config is None:
        raise UserError("give --preset NAME or --config FILE (see --list)")
    name = args.preset or "custom"
    if args.config:
        cfg = load_config(EscapeConfig if name == "escape" else SimConfig, args.config)
    else:
        cfg = presets.preset(name, args.full)
    changes = flag_values(SimConfig, args)
    if changes:
        if isinstance(cfg, EscapeConfig):
            raise UserError(f"the escape preset takes no sweep flags ({sorted(changes)}); "
                            "use --config with an EscapeConfig JSON")
        cfg = cfg.replace(**changes)
    out = Path(args.out) if args.out else Path("runs") / "sim" / name
    for line in run_preset(name, cfg, out, figure_dir=None if args.no_figure else out):
        print(line)
    return 0
