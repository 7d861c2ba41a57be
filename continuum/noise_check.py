"""Does the probe's noise estimate (probsft.validate.noise) find noise put there on purpose?

For each model folder (default: the shipped backbone) and dial position, the SFT-train records
(n = 256, the continuum grids' data) are given supervision noise of a known kind and rate the way
the grids give it (probsft.continuum.experiment.supervised: ``clean``; ``token``, a fraction of
answer tokens replaced; ``answer``, a fraction of records given another record's answer), probed
once (probsft.validate.probe.token_statistics), and the estimate is compared with the truth: a
target is wrong where its id differs from the clean answer's at the same position (a token the
clean answer does not have is wrong), a record where any of its answer targets is.

Written to ``<out>/estimates.csv`` (one row per model, position, kind, rate and seed) and
``<out>/summary.json``: per band of the position's clean answer p (probsft.validate.regions: the
model's place on the continuum, not the noisy data's lower p) and per model, how many rows the
probe called uninformative, and on the others the interval's coverage of the true token rate, the
mean absolute error and bias, the same for the record share, and how often the verdict named the
true kind (and how often a wrong one rather than "cannot tell"). About 40 s of CPU per model.

    python -m probsft.continuum.noise_check [MODEL_DIR ...] [--out results/noise_check]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

POSITIONS = ("t_nov", "t_sh1", "t_rol", "t_swp", "t_sh3")
KINDS = ("clean", "token", "answer")
RATES = (0.1, 0.2, 0.3)
SEEDS = (0, 1, 2)
N_RECORDS = 256
FIELDS = ["model", "task", "clean_answer_p", "band", "probe_answer_p", "kind", "noise_rate", "seed",
          "true_token_rate", "true_record_rate", "estimate", "ci_low", "ci_high", "covered",
          "record_estimate", "record_ci_low", "record_ci_high", "record_covered",
          "whole_answer_share", "confident_share", "confident_wrong_share", "informative",
          "verdict", "verdict_right"]


def answer_targets(examples) -> list[list[int]]:
    """The supervised target ids of each tokenised example, in order."""
    from probsft.validate.data import IGNORE_INDEX

    return [[y for y in e["labels"][1:] if y != IGNORE_INDEX] for e in examples]


def wrong_targets(clean, noisy) -> np.ndarray:
    """bool [N_tokens] over the supervised tokens of ``noisy`` (token_statistics' order): the target
    differs from the clean example's target at the same position, or the clean one has none."""
    out = []
    for c, n in zip(answer_targets(clean), answer_targets(noisy), strict=True):
        out += [k >= len(c) or c[k] != y for k, y in enumerate(n)]
    return np.array(out, dtype=bool)


def check_position(model, tok, name: str, task: str, records, kinds=KINDS, rates=RATES,
                   seeds=SEEDS) -> list[dict]:
    """The rows of one (model, position): the clean data once, each noisy kind per rate and seed."""
    from probsft.continuum.experiment import REDUCED, supervised
    from probsft.validate.data import tokenize_sft
    from probsft.validate.noise import estimate_noise
    from probsft.validate.probe import token_statistics
    from probsft.validate.regions import region_of

    clean = tokenize_sft(records, tok, 256)
    st_clean = token_statistics(model, clean, tok.pad_token_id, batch_size=64)
    clean_p = float(st_clean["p"][st_clean["ids"] != tok.eos_token_id].mean())
    settings = [("clean", 0.0, 0)] * ("clean" in kinds) + [
        (k, r, s) for k in kinds if k != "clean" for r in rates for s in seeds]
    rows = []
    for kind, rate, seed in settings:
        if kind == "clean":
            data, st = clean, st_clean
        else:
            data, _ = supervised(kind, records, clean, model, tok,
                                 dataclasses.replace(REDUCED, noise_rate=rate), seed)
            st = token_statistics(model, data, tok.pad_token_id, batch_size=64)
        answer = (st["ids"] != tok.eos_token_id).numpy()
        wrong = wrong_targets(clean, data)[answer]
        record = st["record"].numpy()[answer]
        est = estimate_noise(st, keep=answer)
        true_records = float(np.mean(np.bincount(record, wrong)[np.unique(record)] > 0))
        lo, hi = est["interval"]
        rlo, rhi = est["record_interval"]
        rows.append({
            "model": name, "task": task, "clean_answer_p": clean_p,
            "band": region_of(clean_p).name,
            "probe_answer_p": float(st["p"].numpy()[answer].mean()),
            "kind": kind, "noise_rate": rate, "seed": seed,
            "true_token_rate": float(wrong.mean()), "true_record_rate": true_records,
            "estimate": est["token_rate"], "ci_low": lo, "ci_high": hi,
            "covered": int(lo <= wrong.mean() <= hi), "record_estimate": est["record_share"],
            "record_ci_low": rlo, "record_ci_high": rhi,
            "record_covered": int(rlo <= true_records <= rhi),
            "whole_answer_share": est["whole_answer_share"],
            "confident_share": est["confident_share"],
            "confident_wrong_share": est["confident_wrong_share"],
            "informative": int(est["informative"]), "verdict": est["kind"],
            "verdict_right": int(est["kind"] == kind)})
    return rows


def summarise(rows, by: str = "band") -> dict:
    """{group: statistics} over ``rows`` (:data:`FIELDS`) grouped by the column ``by`` (bands in
    the continuum's order; "all" for every row), the statistics of the module docstring; means over
    the informative rows (None where there are none)."""
    def stats(rs):
        inf = [r for r in rs if int(r["informative"])]
        mean = lambda f: float(np.mean([f(r) for r in inf])) if inf else None      # noqa: E731
        return {"rows": len(rs), "informative": len(inf),
                "coverage": mean(lambda r: int(r["covered"])),
                "mae": mean(lambda r: abs(float(r["estimate"]) - float(r["true_token_rate"]))),
                "bias": mean(lambda r: float(r["estimate"]) - float(r["true_token_rate"])),
                "record_coverage": mean(lambda r: int(r["record_covered"])),
                "record_mae": mean(lambda r: abs(float(r["record_estimate"])
                                                 - float(r["true_record_rate"]))),
                "kind_right": mean(lambda r: int(r["verdict_right"])),
                "kind_wrong": mean(lambda r: int(r["verdict"] not in (r["kind"], "cannot tell")))}

    from probsft.validate.regions import REGIONS

    groups = [r.name for r in REGIONS] if by == "band" else sorted({x[by] for x in rows})
    out = {g: stats([x for x in rows if x[by] == g]) for g in groups}
    out["all"] = stats(list(rows))
    return out


def summary_text(summary: dict) -> str:
    """The summary as an aligned table, one line per band."""
    pct = lambda v: "-" if v is None else f"{v:.0%}"          # noqa: E731
    num = lambda v: "-" if v is None else f"{v:.3f}"          # noqa: E731
    lines = [f"{'band (clean p)':<20} {'rows':>5} {'informative':>11} {'coverage':>8} {'MAE':>6} "
             f"{'bias':>7} {'rec cov':>7} {'rec MAE':>7} {'kind right':>10} {'kind wrong':>10}"]
    for band, s in summary.items():
        lines.append(f"{band:<20} {s['rows']:>5} {s['informative']:>11} {pct(s['coverage']):>8} "
                     f"{num(s['mae']):>6} {num(s['bias']):>7} {pct(s['record_coverage']):>7} "
                     f"{num(s['record_mae']):>7} {pct(s['kind_right']):>10} "
                     f"{pct(s['kind_wrong']):>10}")
    return "\n".join(lines)


def run(models=(None,), out="results/noise_check", positions=POSITIONS, kinds=KINDS, rates=RATES,
        seeds=SEEDS, n_records: int = N_RECORDS, threads: int = 1, progress: bool = True) -> dict:
    """Check every (model, position) (see the module docstring); writes estimates.csv and
    summary.json under ``out`` and returns the summary."""
    import torch

    from probsft.files import atomic_write_csv, atomic_write_json, output_folder
    from probsft.paths import DATA
    from probsft.validate import backbone
    from probsft.validate.tasks import read_prefix, write_task_data

    out = output_folder(out)
    torch.set_num_threads(threads)                # a tiny model: more threads only wait (grids: 1)
    torch.set_flush_denormal(True)                # as the grids (probsft.validate.backbone.build)
    paths = write_task_data(DATA / "validate", positions, n_records, 200)
    rows, names = [], []
    for path in models:
        start = time.perf_counter()
        model, tok = backbone.load(path)
        names.append(name := Path(path or backbone.SHIPPED).name)
        for task in positions:
            rows += check_position(model, tok, name, task, read_prefix(paths[task]["train"],
                                                                        n_records),
                                   kinds, rates, seeds)
        if progress:
            print(f"{name}: {len(positions)} positions in {time.perf_counter() - start:.1f} s",
                  flush=True)
    atomic_write_csv(out / "estimates.csv", rows, FIELDS)
    summary = summarise(rows)
    atomic_write_json(out / "summary.json", {"models": names, "positions": list(positions),
                                             "kinds": list(kinds), "rates": list(rates),
                                             "seeds": list(seeds), "records": n_records,
                                             "bands": summary,
                                             "by_model": summarise(rows, "model")})
    return summary


def main(argv=None) -> None:
    import argparse

    from probsft.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.noise_check",
                                 description="the probe's noise estimate against known noise")
    ap.add_argument("models", nargs="*", help="model folders (default: the shipped backbone)")
    ap.add_argument("--out", default="results/noise_check")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = ap.parse_args(argv)
    try:
        summary = run(args.models or [None], args.out, seeds=tuple(args.seeds),
                      threads=args.threads)
    except (UserError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    print(summary_text(summary))
    print(f"wrote {Path(args.out) / 'estimates.csv'} and summary.json")


if __name__ == "__main__":
    main()
