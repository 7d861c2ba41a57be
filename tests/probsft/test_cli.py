"""The top-level CLI: every registered command parses, and bad counts are argparse errors."""

import pytest

from probsft.cli import COMMANDS, build_parser, main


def test_every_command_is_registered_once():
    parser = build_parser()
    names = [a for a in parser._subparsers._group_actions[0].choices]  # noqa: SLF001
    assert len(names) == len(set(names)) == len(COMMANDS)


@pytest.mark.parametrize("argv", [
    ["probe", "--model", "m", "--data", "d", "--batch-size", "0"],
    ["evaluate", "--model", "m", "--data", "d", "--samples", "-1"],
    ["validate", "--seeds", "zero"],
    ["validate", "--lr", "0"],
    ["validate", "--lr", "nan"],
    ["validate", "--workers", "0"],
    ["validate", "--optimizers", "lbfgs"],
    ["validate", "--supervision", "dirty"],
    ["probe", "--model", "m", "--data", "d", "--placement", "eos"],
])
def test_bad_counts_exit_2_before_any_work(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_validate_lr_flag_parses():
    args = build_parser().parse_args(["validate", "--lr", "1e-4", "--steps", "3"])
    assert args.lr == 1e-4 and args.steps == 3


def test_validate_axis_flags_narrow_the_grid(tmp_path, capsys):
    """--objectives/--optimizers/--supervision parse; an objective list without the nll reference
    or with a bad spec is one clear error (exit 2) before any run."""
    args = build_parser().parse_args(["validate", "--full", "--objectives", "nll", "deft",
                                      "--optimizers", "sgd", "--supervision", "plausible",
                                      "--workers", "2"])
    assert args.objectives == ["nll", "deft"] and args.optimizers == ["sgd"]
    assert args.supervision == ["plausible"] and args.workers == 2
    for objectives in (["p", "dft"], ["nll", "bogus(("]):
        assert main(["validate", "--out", str(tmp_path / "v"), "--objectives", *objectives]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2 and "Traceback" not in err
    assert not (tmp_path / "v" / "results.csv").exists()
