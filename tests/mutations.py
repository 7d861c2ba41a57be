"""Hand mutations that the test suite must notice (issue 15): apply each, run its tests, report.

Each row of MUTATIONS is one small change a real bug could make (an edited line, a dropped step).
The script copies the checkout (tracked and untracked, non-ignored files) to a temporary folder,
then for each mutation rewrites one file in that copy, runs the named test files there with
``python -m pytest`` and restores the file. A mutation is *killed* when some test fails and
*survives* when all pass (a failing test that also fails unmutated does not count). The working
tree is never touched. This file is not collected by pytest (no ``test_`` prefix): it is a tool,
and a slow one (each row is one pytest run of its test files).

    python tests/mutations.py                 # every row; exit 1 when one survives
    python tests/mutations.py --list          # the rows
    python tests/mutations.py --only indicator-lo hf-mean-sum

A row whose ``old`` text no longer occurs exactly once in its file is reported as *stale*: the code
moved, so the row must be updated to the new code (stale rows also make the exit status 1).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str                  # file, relative to the repository root
    old: str                   # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]     # pytest arguments (files or node ids) that must catch it
    why: str                   # the bug it stands for


MUTATIONS = [
    Mutation("tost-margin", "probsft/verdicts.py",
             "return -margin < interval[0] and interval[1] < margin",
             "return -2 * margin < interval[0] and interval[1] < 2 * margin",
             ("tests/validate/test_stats.py", "tests/continuum/test_predictions.py",
              "tests/probsft/test_verdicts.py"),
             "a tie is accepted with twice the equivalence margin (the old max(gap, 2 SE) kind of slack)"),
    Mutation("tie-by-no-difference", "probsft/verdicts.py",
             'return "confirmed" if equiv else "refuted" if (pos or neg) else "inconclusive"',
             'return "refuted" if (pos or neg) else "confirmed"',
             ("tests/validate/test_stats.py", "tests/continuum/test_predictions.py",
              "tests/probsft/test_verdicts.py"),
             "a predicted tie is confirmed by failing to find a difference, not by TOST"),
    Mutation("nll-or-tie", "continuum/predictions.py",
             '("model-strong", "clean"): "nll_or_tie"', '("model-strong", "clean"): "tie"',
             ("tests/continuum/test_predictions.py",),
             "the clean strong-task prediction loses its NLL side"),
    Mutation("placement", "validate/regions.py",
             'PLACEMENT = "answer"', 'PLACEMENT = "all"',
             ("tests/continuum/test_predictions.py", "tests/continuum/test_experiment.py"),
             "the grid places the probed positions by all response tokens, eos included"),
    Mutation("indicator-lo", "theory/objective.py",
             "above = (x >= lo) if self.lo_closed else (x > lo)",
             "above = (x > lo) if self.lo_closed else (x >= lo)",
             ("tests/theory/test_spec.py", "tests/theory/test_losses.py"),
             "open and closed lower bounds swapped (nll@p>=0.5 vs nll@p>0.5 at p = 0.5)"),
    Mutation("indicator-hi", "theory/objective.py",
             "below = (x <= hi) if self.hi_closed else (x < hi)",
             "below = (x < hi) if self.hi_closed else (x <= hi)",
             ("tests/theory/test_spec.py", "tests/theory/test_losses.py"),
             "open and closed upper bounds swapped"),
    Mutation("no-c99-rewrite", "theory/numeric.py",
             "        in_ell = optimize(in_ell, optims)\n", "",
             ("tests/theory/test_losses.py",),
             "f(log p) without expm1/log1p: float32 alpha(1e-6) at p = 0.99 is 0, not 0.01"),
    Mutation("resume-rng", "validate/train.py",
             '        _set_rng_state(state["rng"])\n', "",
             ("tests/validate/test_train.py::test_resume_is_bitwise_equal",),
             "a resumed run draws other dropout masks than an uninterrupted one"),
    Mutation("wrong-label-uniform", "sim/continuum.py",
             "return k + (k >= y_star).long()", "return k",
             ("tests/sim",),
             "the uniform wrong-label sampler may return the true token y*"),
    Mutation("wrong-label-skip", "sim/continuum.py",
             "return k + (k >= y_star).long()", "return k + (k > y_star).long()",
             ("tests/sim",),
             "the wrong-label samplers (uniform and q0) skip y* off by one and may return it"),
    Mutation("frac-p055", "sim/continuum.py",
             '"base/frac_p055": (p > 0.55)', '"base/frac_p055": (p > 0.45)',
             ("tests/sim",),
             "the Table 6 statistic uses the wrong threshold"),
    Mutation("hf-mean-sum", "validate/hf.py",
             'return reduce_tokens(values, counted, "mean")',
             'return reduce_tokens(values, counted, "sum")',
             ("tests/validate/test_hf.py",),
             "without num_items_in_batch the HF loss is a sum, not a token mean"),
    Mutation("trl-num-processes", "validate/hf.py",
             "loss = loss * self.accelerator.num_processes", "loss = loss",
             ("tests/validate/test_hf.py",),
             "multi-process TRL gradients shrink by the number of processes"),
    Mutation("bandwidth-ties-wide", "continuum/rule.py",
             "best = max(bandwidths, key=lambda h: (lopo[h][0], -h))",
             "best = max(bandwidths, key=lambda h: (lopo[h][0], h))",
             ("tests/continuum/test_recommend.py",),
             "the rule's kernel width breaks leave-one-out ties towards the wider kernel"),
    Mutation("lopo-sees-itself", "continuum/rule.py",
             "if n != pos and (kind(s2), o2) == (kind(sup), opt)]",
             "if (kind(s2), o2) == (kind(sup), opt)]",
             ("tests/continuum/test_recommend.py",),
             "leave-one-position-out decides a position from itself too"),
    Mutation("band-tie-unbroken", "continuum/rule.py",
             'return max(measured, key=lambda s: (measured[s]["band"], measured[s]["delta"]))',
             'return max(measured, key=lambda s: measured[s]["band"])',
             ("tests/continuum/test_recommend.py",),
             "the band rule breaks ties by the order of the objectives, not by the larger gain"),
    Mutation("band-share-unweighted", "continuum/rule.py",
             '"band": float(np.dot(w, [hit for _, hit in rs]) / w.sum()),',
             '"band": float(np.mean([hit for _, hit in rs])),',
             ("tests/continuum/test_recommend.py",),
             "the band share ignores the kernel (every position counts the same at any p)"),
    Mutation("pooled-leaks-clean", "continuum/rule_variants.py",
             'return "noisy" if sup in NOISY else sup',
             'return "noisy"',
             ("tests/continuum/test_rule_variants.py",),
             "the pooled variant pools the clean kind with the noisy ones"),
    Mutation("regret-uncapped", "continuum/rule_variants.py",
             "[min(reg, cap) for _, _, reg in rs]", "[reg for _, _, reg in rs]",
             ("tests/continuum/test_rule_variants.py",),
             "capped regret forgets its cap (it becomes the delta rule's mean)"),
    Mutation("noise-labels-clean", "continuum/features.py",
             'add_label_noise(records, 1.0, seed, "answer")', 'records',
             ("tests/continuum/test_features.py",),
             "the p of whole-answer noise labels is measured on the true labels"),
    Mutation("deft-weight-alpha-one", "continuum/features.py",
             '"deft_weight": float((p ** s * (1 - p)).mean()) / room,',
             '"deft_weight": float((p * (1 - p)).mean()) / room,',
             ("tests/continuum/test_features.py",),
             "DEFT's kept weight uses alpha 1 (that of -p) instead of sum q^2"),
    Mutation("class-boundary-averse", "theory/classes.py",
             "    if abs(x - 0.5) <= PEAK_TOL:\n        return LEANING, (",
             "    if abs(x - 0.5) <= PEAK_TOL:\n        return AVERSE, (",
             ("tests/theory/test_classes.py",),
             "a W_f peak at exactly 1/2 (-p, DFT, Huber) counted averse, not the paper's leaning"),
    Mutation("asft-anchor-backward", "theory/losses.py",
             "grad = q * (coef + a)[:, None] - r * a[:, None]",
             "grad = q * coef[:, None] - r * a[:, None]",
             ("tests/theory/test_ecosystem.py",),
             "the KL anchor's gradient loses its lambda·q part"),
    Mutation("eaft-full-entropy", "theory/statistics.py",
             "top = topk_values(z, min(k, z.shape[-1]))",
             "top = z",
             ("tests/theory/test_ecosystem.py",),
             "EAFT's entropy over the whole vocabulary instead of the top K logits"),
    Mutation("eaft-full-entropy-from-exp", "theory/statistics.py",
             "top = topk_values(e, min(k, e.shape[-1]))",
             "top = e",
             ("tests/theory/test_statistics.py",),
             "the fused pass's EAFT entropy (from e) over the whole vocabulary, not the top K"),
    Mutation("topk-one-block-short", "theory/statistics.py",
             "best = torch.topk(maxima, k, dim=-1).indices",
             "best = torch.topk(maxima, max(1, k - 1), dim=-1).indices",
             ("tests/theory/test_statistics.py",),
             "the two-stage top-k keeps k - 1 blocks, losing a top value alone in its block"),
    Mutation("weight-zero-rows-kept", "theory/fused.py",
             "    return _cpu_rows(weight != 0)\n",
             "    return None\n",
             ("tests/theory/test_fused.py::test_tokens_of_weight_zero_are_left_out_of_the_gradient_gemms",),
             "tokens of gradient weight 0 run the dhidden and dW GEMMs after all (exact, slower)"),
    Mutation("weight-zero-compaction-skipped", "theory/fused.py",
             "            block[:, :k] = block.index_select(1, rows)",
             "            pass",
             ("tests/theory/test_fused.py::test_tokens_of_weight_zero_are_left_out_of_the_gradient_gemms",),
             "a vocab-major chunk's live columns are not moved to the front before the GEMMs"),
    Mutation("token-buffer-kept-into-vocab-pass", "theory/fused.py",
             "        del scratch                  # freed before the vocabulary pass allocates its own buffer\n",
             "",
             ("tests/theory/test_fused_memory.py::test_bf16_working_memory_is_at_most_a_tenth_of_naive",),
             "the token pass's logits buffer stays alive through the vocabulary pass (bf16: 0.12x naive)"),
    Mutation("upcast-slices-large", "theory/fused.py",
             "_SLICE_ELEMENTS = 1 << 21 ",
             "_SLICE_ELEMENTS = 1 << 23 ",
             ("tests/theory/test_fused_memory.py::test_bf16_working_memory_is_at_most_a_tenth_of_naive",),
             "float32 upcasts of W in slices 4x larger: the bf16 working memory passes 0.1x naive"),
    Mutation("token-fits-ignores-accumulator", "theory/fused.py",
             "return 4 * (V * H + min(V",
             "return 4 * (min(V",
             ("tests/theory/test_fused.py::test_plan_says_what_runs_and_keeps_bf16_within_the_memory_bound",),
             "the bf16 token schedule's budget forgets its float32 [V, H] accumulator"),
    Mutation("bf16-token-schedule-always", "theory/fused_auto.py",
             "    elif low and cpu and token_fits:",
             "    elif low and cpu:",
             ("tests/theory/test_fused_memory.py::test_bf16_working_memory_is_at_most_a_tenth_of_naive",),
             "bf16 weights on CPU take the token schedule even where its accumulator breaks the bound"),
    Mutation("bf16-token-schedule-never", "theory/fused_auto.py",
             "    elif low and cpu and token_fits:",
             "    elif False:",
             ("tests/theory/test_fused_memory.py::test_bf16_takes_the_token_schedule_where_its_accumulator_fits",),
             "bf16 weights on CPU keep the vocabulary schedule (one GEMM more) where the token one fits"),
    Mutation("cpu-chunk-cap-for-bf16-too", "theory/fused.py",
             'wide = lm_head_weight.device.type == "cpu" and lm_head_weight.dtype.itemsize >= 4',
             'wide = lm_head_weight.device.type == "cpu"',
             ("tests/theory/test_fused.py::test_plan_says_what_runs_and_keeps_bf16_within_the_memory_bound",),
             "bf16 chunks grow to 2^26 logits as well, pushing back where the token schedule fits"),
    Mutation("cuda-bf16-token-accumulator", "theory/fused_auto.py",
             '        schedules = ("vocab",) if low else ("token",)',
             '        schedules = ("vocab",) if low and cpu else ("token",)',
             ("tests/theory/test_fused.py::test_auto_rule_follows_the_cpu_features",),
             "bf16 on CUDA takes the token schedule, whose float32 accumulator is 2x the gradient"),
]


def copy_checkout(dest: Path) -> None:
    """Tracked and untracked, non-ignored files of the checkout (symlinks kept as links)."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, names):
        src, dst = ROOT / name, dest / name
        if not os.path.lexists(src):          # deleted in the working tree, not yet committed
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_file():
            shutil.copy2(src, dst)


def _pytest(repo: Path, args, timeout: float):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=repo, capture_output=True, text=True, timeout=timeout)


def run_one(m: Mutation, repo: Path, timeout: float) -> tuple[str, str, float]:
    """(status, detail, seconds): killed / survived / stale / timeout / baseline-fails.

    A failing test counts as a kill only if it passes on the unmutated copy (the failures are rerun
    there), so a test that fails anyway never hides a surviving mutation."""
    path = repo / m.path
    original = path.read_text()
    if original.count(m.old) != 1:
        return "stale", f"{m.old!r} occurs {original.count(m.old)} times in {m.path}", 0.0
    path.write_text(original.replace(m.old, m.new))
    start = time.perf_counter()
    try:
        proc = _pytest(repo, m.tests, timeout)
    except subprocess.TimeoutExpired:
        return "timeout", f"no verdict within {timeout:.0f} s", time.perf_counter() - start
    finally:
        path.write_text(original)
    seconds = time.perf_counter() - start
    failed = [ln.split(" - ")[0].split(" ", 1)[1] for ln in proc.stdout.splitlines()
              if ln.startswith(("FAILED ", "ERROR "))]
    if proc.returncode == 0:
        return "survived", "all tests pass", seconds
    if not failed:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or ["?"]
        return "killed", f"pytest exit {proc.returncode}: {tail[0]}", seconds
    unmutated = _pytest(repo, failed, timeout).stdout
    killers = [t for t in failed if f"FAILED {t}" not in unmutated and f"ERROR {t}" not in unmutated]
    if not killers:
        return "baseline-fails", f"{', '.join(failed)} fail(s) without the mutation too", seconds
    return "killed", f"{killers[0]}" + (f" (+{len(killers) - 1} more)" if len(killers) > 1 else ""), \
        seconds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these rows only")
    ap.add_argument("--list", action="store_true", help="print the rows and exit")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per row (default 900)")
    args = ap.parse_args(argv)
    rows = MUTATIONS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTATIONS}
        if unknown:
            print(f"unknown mutation(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        rows = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in rows:
            print(f"{m.name:22s} {m.path:24s} {m.why}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="probsft-mutations-") as tmp:
        repo = Path(tmp)
        copy_checkout(repo)
        for m in rows:
            status, detail, seconds = run_one(m, repo, args.timeout)
            results.append((m, status))
            print(f"{m.name:22s} {status:8s} {seconds:6.0f} s  {detail}", flush=True)
    bad = [m.name for m, status in results if status != "killed"]
    print(f"\n{len(results) - len(bad)}/{len(results)} mutations killed"
          + (f"; not killed: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
