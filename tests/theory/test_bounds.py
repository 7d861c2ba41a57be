"""Specs that would cost without bound: refused with one clear line, or answered within bounds.
Run: python -m pytest tests/theory/test_bounds.py

Every case here used to hang in sympy (memory past 9 GB), raise a RecursionError traceback, or
answer with a misleading message. Work that could still hang on a regression runs through
``bounded`` (a forked child with a time and memory cap), so a failing test fails instead of hanging.
"""

import contextlib
import io
import json
import math
import time

import numpy as np
import pytest
import scipy.optimize  # noqa: F401 - imported once here rather than in every guarded child
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from probsft.theory.bounded import bounded, tractable
from probsft.theory.expr import MAX_EXPONENT

import probsft
from probsft.cli import main
from probsft.errors import SpecError

HUGE = ["alpha(1e9)", "alpha(1e308)", "alpha(-1e308)", "GeneralFamily-1e9", "-p^1e9", "alpha=1e9",
        "focal(1e9)", "alpha(1e999999999)", "OnlyTopP-1e999999999", "(1-p)*10**400"]
DID_NOT_FINISH = "did not finish within the guard's time and memory"


def _within_guard(fn, *args):
    """fn(*args), or DID_NOT_FINISH when it runs past 120 s or 1 GiB (a regression, not a timing)."""
    return bounded(fn, *args, default=DID_NOT_FINISH, limit=120)


def _spec_error(spec):
    """The SpecError message of parsing ``spec``, or None when it parses."""
    try:
        probsft.objective(spec)
    except SpecError as err:
        return str(err)
    return None


@pytest.mark.parametrize("spec", HUGE)
def test_huge_numbers_are_refused_at_parse(spec):
    message = _within_guard(_spec_error, spec)      # 1e999999999 must never be built as an integer
    assert message not in (None, DID_NOT_FINISH)
    first = message.splitlines()[0]
    assert "must lie in" in first or "digits" in first


@pytest.mark.parametrize("spec, name", [("alpha(nan)", "α"), ("alpha(inf)", "α"), ("alpha(-inf)", "α"),
                                        ("GeneralFamily-nan", "α"), ("focal(nan)", "γ"),
                                        ("huber(inf)", "δ"), ("OnlyTopP-nan", "q")])
def test_non_finite_parameters_are_named(spec, name):
    with pytest.raises(SpecError, match=f"{name} must be a finite number"):
        probsft.objective(spec)


@pytest.mark.parametrize("spec", ["1-p" + "+0" * 3000, "p" * 100_000, "-" * 999 + "p",
                                  "p" + "**p" * 300, "log(" * 100 + "p" + ")" * 100,
                                  "(" * 300 + "p" + ")" * 300])
def test_long_or_deep_specs_give_one_short_spec_error(spec):
    with pytest.raises(SpecError) as err:
        probsft.objective(spec)
    message = str(err.value)
    assert len(message.splitlines()[0]) < 400          # the spec is clipped, never echoed whole
    assert message.count(spec[:200]) == 0


@settings(max_examples=80, deadline=None)
@given(a=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.integers(-10**400, 10**400), st.sampled_from(["1e-400", "1/0", "1e+99999"])))
def test_alpha_of_any_number_parses_or_refuses(a):
    message = _spec_error(f"alpha({a})")          # numbers of at most ~400 digits: cheap to build
    if message is not None:
        assert "α" in message.splitlines()[0]
        return
    assert math.isfinite(float(a)) and abs(float(a)) <= MAX_EXPONENT
    assert probsft.objective(f"alpha({a})").family in ("alpha", "nll", "p")


def _run_cli(argv):
    """(exit code, stdout, stderr) of ``probsft ARGV`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _describe_and_compile(spec):
    """`probsft describe SPEC --json`, and whether f's log-space form kept its expm1 rewrite."""
    from sympy.codegen.cfunctions import expm1

    from probsft.theory.numeric import compile_in_logp

    code, out, _ = _run_cli(["describe", spec, "--json"])
    return code, out, compile_in_logp(probsft.objective(spec).f_expr).expr.has(expm1)


@pytest.mark.parametrize("spec", ["alpha(10000)", "alpha(-10000)", "(1-p**9999)/9999",
                                  "focal(1000)", "alpha(1000.5)"])
def test_large_exponents_are_described_numerically(spec):
    result = _within_guard(_describe_and_compile, spec)
    assert result != DID_NOT_FINISH
    code, out, stable = result
    assert code == 0 and json.loads(out)["peak_exact"] is None   # numeric: no closed form tried
    assert stable     # 1 - p^a as -expm1(a log p), rewritten without sympy's factor()


def _confident_batch():
    """Logits whose target is the argmax with log p in about [-1e-3, -1e-5], so p^a is not 0."""
    torch.manual_seed(0)
    logits = (torch.randn(6, 7, dtype=torch.float64) * 2 + 14 * torch.eye(7)[:6]).requires_grad_()
    return logits, torch.arange(6)


def _alpha_loss_and_grad(spec):
    logits, labels = _confident_batch()
    loss = probsft.objective(spec).loss(logits, labels)
    loss.backward()
    return loss.item(), logits.grad.numpy()


@pytest.mark.parametrize("a", [10000, 700.5])
def test_large_alpha_loss_matches_float64_reference(a):
    result = _within_guard(_alpha_loss_and_grad, f"alpha({a})")
    assert result != DID_NOT_FINISH
    loss, grad = result
    logits, labels = _confident_batch()
    logp = torch.log_softmax(logits, -1).gather(-1, labels[:, None])[:, 0]
    ref = (-torch.expm1(a * logp) / a).mean()          # f = (1 - p^a)/a in log space
    ref.backward()
    assert 0 < a * -logp.max().item() and ref.item() < 0.99 / a     # p^a is far from 0 and 1
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, logits.grad.numpy(), rtol=1e-10, atol=1e-16)


@pytest.mark.parametrize("command", [["weights", "nll", "alpha(1e308)", "--out", "OUT"],
                                     ["describe", "GeneralFamily-1e9"],
                                     ["finetune", "--model", "OUT", "--data", "OUT/d.jsonl",
                                      "--objective=alpha(1e9)", "--output", "OUT/run"]])
def test_commands_refuse_huge_alpha_before_any_work(command, tmp_path):
    result = _within_guard(_run_cli, [a.replace("OUT", str(tmp_path)) for a in command])
    assert result != DID_NOT_FINISH
    code, _, err = result
    assert code == 2 and err.startswith(f"probsft {command[0]}: error:") and "Traceback" not in err
    first = err.splitlines()[0]
    assert "α must lie in" in first or "α has more than" in first
    assert not list(tmp_path.iterdir())


def test_tractable_bounds_size_and_degree():
    assert tractable(probsft.objective("focal(2)").f_expr)
    assert not tractable(probsft.objective("alpha(10000)").f_expr)          # degree 10000
    assert not tractable(probsft.objective("-p**(1/7)-p**(1/11)-p**(1/13)").f_expr)  # in p^(1/1001)


def _sleep_then_answer(seconds):
    time.sleep(seconds)
    return "answered"


def _allocate(size):
    return len(bytearray(size))


def test_bounded_returns_its_default_past_the_time_or_memory_limit():
    assert bounded(_sleep_then_answer, 0, default="late") == "answered"
    assert bounded(_sleep_then_answer, 60, default="late", limit=0.2) == "late"
    assert bounded(_allocate, 1 << 20, default="capped") == 1 << 20
    assert bounded(_allocate, 2 << 30, default="capped") == "capped"   # past the 1 GiB cap
    assert bounded(math.sqrt, -1, default="failed") == "failed"         # an error in the child
