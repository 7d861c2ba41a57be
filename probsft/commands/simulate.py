"""`probsft simulate`: run one simulator experiment (a registered key or a config file), save, draw.

    probsft simulate --preset crossover                        # -> runs/sim/crossover/{sgd,adam}/
    probsft simulate --preset phase --scale quick --out /tmp/ph
    probsft simulate --config my.json --out runs/mine          # any SimConfig (strict JSON)
    probsft simulate --config my.json --seeds 0 1 --steps 50   # flags override config fields
    probsft simulate --list                                    # the experiments

Results (results.csv / escape.csv / winners.csv and config.json) are written before the figures,
which go into the --out folder itself; rerunning the same command resumes.
"""

from __future__ import annotations

from pathlib import Path

from probsft.errors import UserError


def add_parser(sub):
    from probsft.config import add_config_flags
    from probsft.sim.config import SimConfig
    from probsft.sim.experiments import EXPERIMENTS, SCALES

    p = sub.add_parser("simulate", help="synthetic capability-continuum simulator")
    p.add_argument("--preset", choices=list(EXPERIMENTS), help="a registered experiment")
    p.add_argument("--config", help="JSON config file (a SimConfig sweep)")
    p.add_argument("--out", help="results and figures folder (default runs/sim/<preset>)")
    p.add_argument("--scale", choices=SCALES, default="default", help="experiment size")
    p.add_argument("--no-figure", action="store_true", help="save results only")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    add_config_flags(p.add_argument_group("SimConfig fields (each overrides the --config file's "
                                          "value)"), SimConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.config import flag_values, load_config
    from probsft.reproduce.sim import run_experiment
    from probsft.files import locked_output
    from probsft.sim.config import SimConfig
    from probsft.sim.experiments import EXPERIMENTS, run_config

    if args.list:
        for key, exp in EXPERIMENTS.items():
            print(f"{key:<18} {exp.claim}")
        return 0
    if (args.preset is None) == (args.config is None):
        raise UserError("give exactly one of --preset NAME or --config FILE (see --list)")
    changes = flag_values(SimConfig, args)
    out = Path(args.out) if args.out else Path("runs") / "sim" / (args.preset or "custom")
    figures = None if args.no_figure else out
    if args.preset and changes:
        raise UserError(f"flags {sorted(changes)} override a --config file; to change a "
                        "preset, save its config.json and pass it with --config")
    cfg = None if args.preset else load_config(SimConfig, args.config)
    with locked_output(out, "--out"):
        if args.preset:
            lines = run_experiment(EXPERIMENTS[args.preset], args.scale, out, figures)
        else:
            cfg = cfg.replace(**changes) if changes else cfg
            run_config(cfg, out)
            lines = run_experiment_custom(cfg, out, figures)
    for line in lines:
        print(line)
    return 0


def run_experiment_custom(cfg, out: Path, figures) -> list[str]:
    """A config file's sweep: the crossover figure and the crossover verdicts."""
    from probsft.reproduce.sim import seed_mean_table, verdict_table
    from probsft.sim.experiments import crossover_verdicts
    from probsft.sim.sweep import at_step, read_rows

    lines = []
    if figures is not None:
        from probsft.figures.sim_crossover import draw

        lines += [f"figure: {p}" for p in draw(out, figures, "sim_custom")]
    rows = at_step(read_rows(out / "results.csv"))
    metric = "eval/acc" if cfg.mode == "learning" else "eval/expected_acc"
    for E in cfg.noise_rates:
        lines += [f"E={E:g}, seed-mean {metric}:", *seed_mean_table(rows, metric, E), ""]
    return lines + verdict_table(crossover_verdicts(out))

