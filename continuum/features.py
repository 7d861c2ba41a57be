"""What the base model says about each position of a validation grid, before any fine-tune.

For every position (task) of a saved grid (``results/<grid>/config.json``), on the grid's own
SFT-train items and the base model the grid fine-tuned:

* the probe's statistics on the answer tokens (probsft.validate.probe: mean p, the share above
  0.55, mean entropy, mean sum_j q_j^2, top-1 accuracy, the share confidently wrong);
* ``deft_weight``: DEFT's mean gradient weight p^(sum q^2) (1 - p) over NLL's, mean (1 - p), i.e. how
  much of NLL's push DEFT keeps at the base model (−p's is ``negp_weight``, p (1 - p) over 1 - p);
* ``noise_label_p``: the mean p of the answer tokens when every response is replaced by another
  item's (the whole-answer noise of the grid at rate 1): the prior mass on the *labelled* token under
  that noise, the other quantity the paper's theory turns on;
* ``base_exact_match``: greedy exact match on the grid's held-out items.

They are candidates for a second probe coordinate beside mean p (README, "recommend"). Saved to
``results/<grid>/features.json``:

    python -m probsft.continuum.features results/validate_c --model models/backbone_c

Does any of them track an objective's measured gain? ``--correlate SPEC`` prints, per noise kind and
optimizer, the Spearman correlation over the positions of the given grids (pooled) between each
feature and SPEC's paired Δ against NLL:

    python -m probsft.continuum.features results/validate_full results/validate_c --correlate deft
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

FEATURES = ("answer_p", "frac_p_gt_0.55", "mean_entropy", "mean_sumsq", "top1_accuracy",
            "frac_confident_wrong", "deft_weight", "negp_weight", "noise_label_p",
            "base_exact_match")


def _answer_tokens(model, tok, examples):
    from probsft.validate.probe import token_statistics

    st = token_statistics(model, examples, tok.pad_token_id, batch_size=64)
    keep = st["ids"] != tok.eos_token_id
    return {k: v[keep] for k, v in st.items()}


def position_features(model, tok, records, heldout, seed: int = 0, max_new_tokens: int = 10
                      ) -> dict[str, float]:
    """{feature: value} (:data:`FEATURES`) of one position: its SFT-train ``records`` and held-out
    ``heldout`` records under the base ``model``."""
    from probsft.validate.data import add_label_noise, tokenize_sft
    from probsft.validate.evaluate import evaluate
    from probsft.validate.probe import frac_confident_wrong

    st = _answer_tokens(model, tok, tokenize_sft(records, tok, 256))
    p, s = st["p"], st["sumsq"]
    noisy = _answer_tokens(model, tok, tokenize_sft(add_label_noise(records, 1.0, seed, "answer"),
                                                    tok, 256))
    summary, _ = evaluate(model, tok, heldout, max_new_tokens=max_new_tokens, batch_size=64)
    room = float((1 - p).mean())
    return {"answer_p": float(p.mean()),
            "frac_p_gt_0.55": float((p > 0.55).double().mean()),
            "mean_entropy": float(st["entropy"].mean()), "mean_sumsq": float(s.mean()),
            "top1_accuracy": float(st["top1"].double().mean()),
            "frac_confident_wrong": frac_confident_wrong(st),
            "deft_weight": float((p ** s * (1 - p)).mean()) / room,
            "negp_weight": float((p * (1 - p)).mean()) / room,
            "noise_label_p": float(noisy["p"].mean()),
            "base_exact_match": float(summary["eval/exact_match"])}


def grid_features(grid: Path, model_path, progress: bool = True) -> dict[str, dict[str, float]]:
    """{position: features} of every position of the saved grid in folder ``grid``, written to
    ``grid/features.json``; ``model_path`` must be the grid's base model (its sha256 is checked)."""
    from tqdm.auto import tqdm

    from probsft.errors import ConfigError
    from probsft.files import atomic_write, json_text
    from probsft.paths import DATA
    from probsft.validate import backbone
    from probsft.continuum.experiment import model_fingerprint
    from probsft.validate.tasks import read_prefix, write_task_data

    grid = Path(grid)
    cfg_path = grid / "config.json"
    if not cfg_path.exists():
        raise ConfigError(f"no saved grid in {grid} (no config.json)")
    cfg = json.loads(cfg_path.read_text())
    if model_fingerprint(model_path) != cfg.get("model_sha256"):
        raise ConfigError(f"{model_path} is not the model the grid in {grid} fine-tuned")
    model, tok = backbone.load(model_path)
    paths = write_task_data(DATA / "validate", cfg["tasks"], cfg["n_train"], cfg["n_heldout"])
    out = {}
    for t in tqdm(cfg["tasks"], desc=f"features {grid.name}", disable=not progress):
        out[t] = position_features(model, tok, read_prefix(paths[t]["train"], cfg["n_train"]),
                                   read_prefix(paths[t]["heldout"], cfg["n_heldout"]),
                                   max_new_tokens=cfg["max_new_tokens"])
    atomic_write(grid / "features.json", json_text(out, indent=1))
    return out


def correlations(grids, spec: str, features=FEATURES, average: bool = False) -> dict:
    """{(supervision, optimizer): {"n": positions, feature: Spearman ρ}} between each saved
    feature of the positions of ``grids`` (folders with paired.csv and features.json, pooled,
    positions tagged by folder as probsft.continuum.cells.read_grids) and ``spec``'s paired Δ
    against NLL; ρ is None where it is undefined (fewer than 3 positions, or a constant).
    ``average``: one key ("mean", "mean"), each position's Δ averaged over its measured noise kinds
    and optimizers first."""
    from scipy.stats import spearmanr

    from probsft.errors import UserError
    from probsft.continuum.cells import canonical, grid_tags, read_grids

    grids = [Path(g) for g in grids]
    for g in grids:
        if not (g / "features.json").exists():
            raise UserError(f"no features.json in {g}; compute it with "
                            f"`python -m probsft.continuum.features {g} --model MODEL`")
    paths = [g / "paired.csv" for g in grids]
    cells = read_grids(paths)
    feats = {(f"{tag}:{t}" if tag else t): f for g, tag in zip(grids, grid_tags(paths))
             for t, f in json.loads((g / "features.json").read_text()).items()}
    want = canonical(spec)
    by: dict = {}
    for c in cells:
        if canonical(c["objective"]) == want and c["position"] in feats:
            by.setdefault((c["supervision"], c["optimizer"]), []).append(c)
    if not by:
        raise UserError(f"{spec} was not measured at any position of {', '.join(map(str, grids))}")
    if average:
        at: dict = {}
        for c in (c for cs in by.values() for c in cs):
            at.setdefault(c["position"], []).append(c["delta"])
        by = {("mean", "mean"): [{"position": pos, "delta": sum(d) / len(d)}
                                 for pos, d in at.items()]}
    out = {}
    for key, cs in by.items():
        y = [c["delta"] for c in cs]
        row: dict = {"n": len(cs)}
        for f in features:
            x = [feats[c["position"]][f] for c in cs]
            ok = len(cs) >= 3 and len(set(x)) > 1 and len(set(y)) > 1
            row[f] = float(spearmanr(x, y)[0]) if ok else None
        out[key] = row
    return out


def main(argv=None) -> None:
    from probsft.errors import UserError

    ap = argparse.ArgumentParser(prog="python -m probsft.continuum.features", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("grids", nargs="+", help="saved grid folder(s) (results/validate_c)")
    ap.add_argument("--model", help="compute: the grid's base model folder (one grid)")
    ap.add_argument("--correlate", metavar="SPEC",
                    help="instead: Spearman ρ of each saved feature with SPEC's Δ against NLL")
    ap.add_argument("--average", action="store_true",
                    help="with --correlate: each position's Δ averaged over its noise kinds and "
                         "optimizers first (one row)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    names = list(FEATURES)
    try:
        if args.correlate:
            table = correlations(args.grids, args.correlate, average=args.average)
            print(f"Spearman ρ with {args.correlate}'s Δ against NLL, over positions")
            print("kind       optimizer  n   " + "  ".join(names))
            for (sup, opt), row in sorted(table.items()):
                print(f"{sup:10s} {opt:9s} {row['n']:3d} " + "  ".join(
                    f"{row[n]:+.2f}" if row[n] is not None else "   -" for n in names))
            return
        if args.model is None or len(args.grids) != 1:
            raise UserError("computing features needs one grid folder and --model")
        torch.set_num_threads(args.threads)
        out = grid_features(Path(args.grids[0]), args.model, progress=not args.no_progress)
    except UserError as e:
        raise SystemExit(f"error: {e}")
    print("position  " + "  ".join(names))
    for t, f in out.items():
        print(f"{t:8s}  " + "  ".join(f"{f[n]:.3f}" for n in names))


if __name__ == "__main__":
    main()
