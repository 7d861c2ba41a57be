"""Fuzz the command line: whatever a user types into the cheap subcommands (describe, weights,
simulate --list, reproduce --only, plus random flags), probsft exits 0 or 2 and never prints a
traceback. Bounded: small spec fragments (no huge numbers or powers, whose symbolic cost is bounded
elsewhere), few examples, no deadline on slow machines."""

import io
import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probsft.cli import main
from tests.strategies import ALL_SPECS

FRAGMENTS = ["p", "nll", "alpha(", "focal(", "huber(", "GeneralFamily-", "OnlyTopP-", "expr:", "(",
             ")", "0.5", "2", "-1", "0", "nan", "inf", "1-", "+", "-", "/", "log(", "exp(", "sqrt(",
             "@p>=", "@p<", "@", "[", "]", ",", "Q90", "Q", "0.2<=p<=0.9", "x", " ", "é", "\x00",
             "=", ";", "__import__(", "1/p"]
FLAGS = ["--json", "--tau", "--vocab", "--out", "--normalise", "--no-normalise", "--list", "--only",
         "--preset", "--seeds", "--full", "-h", "--bogus", "0.5", "-1", "0", "nan", "2", "x", "nll"]

spec_text = st.one_of(st.sampled_from(ALL_SPECS),
                      st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join))
numbers = st.sampled_from(["0.5", "0", "1", "-1", "2", "nan", "inf", "1e9", "x", ""])


def _run(argv):
    """(exit code, stderr) of ``probsft argv``; any exception but SystemExit fails the test."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_info:
            code = exit_info.code
    return code, err.getvalue()


@st.composite
def argvs(draw, out_dir):
    command = draw(st.sampled_from(["describe", "weights", "simulate", "reproduce", "random"]))
    if command == "describe":
        argv = ["describe", draw(spec_text)]
        if draw(st.booleans()):
            argv.append("--json")
        if draw(st.booleans()):
            argv += ["--tau", draw(numbers)]
        if draw(st.booleans()):
            argv += ["--vocab", draw(numbers)]
    elif command == "weights":
        argv = ["weights", draw(spec_text), "--out", out_dir]
    elif command == "simulate":
        argv = ["simulate", "--list", *draw(st.lists(st.sampled_from(FLAGS[:8]), max_size=2))]
    elif command == "reproduce":
        argv = ["reproduce", "--only", draw(st.sampled_from(["foo", "", "theory sim", "--full"])),
                "--out", out_dir]
        argv = argv if "theory" not in argv[2] else argv[:2] + ["bogus"] + argv[3:]
    else:
        argv = draw(st.lists(st.sampled_from(FLAGS + ["describe", "weights", "probe"]),
                             max_size=4))
    return argv


def test_cli_exits_0_or_2_and_never_prints_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # a bare `weights` writes into ./runs: keep it here
    out_dir = str(tmp_path / "out")

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(argv=argvs(out_dir))
    def check(argv):
        code, err = _run(argv)
        assert code in (0, 2), (argv, code, err)
        assert "Traceback" not in err, (argv, err)
        if code == 2:
            assert err.strip(), argv                        # an error always says something

    check()
