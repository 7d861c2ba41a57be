"""Subcommands of the `probsft` CLI; each module is thin and calls into theory/sim/validate."""
