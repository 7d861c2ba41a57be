"""The `probsft` command line: a thin dispatcher over probsft/commands/*.

Each command module defines ``add_parser(subparsers)`` which registers its subcommand and sets
``func`` (a callable taking the parsed args and returning an exit code). A user mistake raises
probsft.errors.UserError and is reported as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys

from probsft.errors import UserError

# A full disk, a quota or a read-only file system met while writing: one line, not a traceback.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}

# One line per subcommand module; the order is the order of `probsft --help`.
COMMANDS = [
    "probsft.commands.reproduce",
    "probsft.commands.describe",
    "probsft.commands.weights",
    "probsft.commands.simulate",
    "probsft.commands.probe",
    "probsft.commands.recommend",
    "probsft.commands.finetune",
    "probsft.commands.evaluate",
    "probsft.commands.backbone",
    "probsft.commands.validate",
    "probsft.commands.check_setup",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="probsft",
        description="Probability-based SFT objectives f(p): theory, simulation, validation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"probsft {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in WRITE_ERRNOS:
            raise
        where = f": {err.filename}" if err.filename else ""
        print(f"probsft {args.command}: error: {err.strerror}{where} (finished work is kept; rerun "
              "to resume once there is room or permission)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"probsft {args.command}: interrupted (partial results are kept; rerun to resume)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
