"""GPU: the continuum experiment scaled up — a larger backbone pretrained on the GPU from the same
corpus, then the objective grid (NLL, −p, −p^10, NLL·1{p≥0.2}, α=0.5; clean and noisy; seeds).

No network and no reasoning_gym / pyfiglet on the GPU machine: the corpus, SFT and held-out sets are
pre-generated here into data/validate/ (``--make-data``, needs reasoning_gym) and only
read on the GPU. Each section is guarded (an error is printed and the script goes on); a final table
is printed and ``<out>/results.json`` written.

    python3 benchmarks/gpu_validate.py --out gpu_out/validate              # H100, ~4 min
    python benchmarks/gpu_validate.py --device cpu --tiny --out /tmp/gv    # CPU fallback, ~2 min
    python benchmarks/gpu_validate.py --make-data                          # regenerate the data
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from probsft import paths  # noqa: E402

DATA = paths.DATA / "validate"
SIZES = {"pretrain": {"spell_backward": 8000, "letter_jumble": 4000}, "train": 512, "heldout": 128}


def make_data():
    from probsft.validate.tasks import TASKS, sample, write_jsonl

    for name, n in SIZES["pretrain"].items():
        write_jsonl(DATA / name / "pretrain.jsonl",
                    sample(TASKS[name], "pretrain", n, 0, unique=TASKS[name].pretrain_unique))
    for name in TASKS:
        for split in ("train", "heldout"):
            write_jsonl(DATA / name / f"{split}.jsonl", sample(TASKS[name], split, SIZES[split], 0))
    print("wrote", DATA)


def section(name, results, fn):
    start = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as err:  # noqa: BLE001 - one failing section must not stop the others
        traceback.print_exc()
        results[name] = {"error": f"{type(err).__name__}: {err}"}
    print(f"[{name}] {time.perf_counter() - start:.1f} s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_out/validate")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small sizes for the CPU fallback")
    ap.add_argument("--budget", type=float, default=None, help="grid seconds (default 170; tiny 60)")
    ap.add_argument("--make-data", action="store_true")
    args = ap.parse_args()
    if args.make_data:
        return make_data()
    import torch

    from probsft.validate import backbone as bb
    from probsft.validate import experiment as ex
    from probsft.validate.data import read_jsonl

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu --tiny"); return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tiny": args.tiny}
    bcfg = bb.BackboneConfig(hidden_size=256, layers=6, heads=8, intermediate_size=704, steps=1500,
                             batch_size=128, lr=2e-3, warmup=100, threads=4)
    ecfg = ex.ExperimentConfig(seeds=(0, 1, 2), steps=120, batch_size=32, n_train=512,
                               n_heldout=128, device=args.device, threads=4)
    if args.tiny:
        bcfg = bb.BackboneConfig(steps=150, threads=2)
        ecfg = dataclasses.replace(ecfg, seeds=(0,), steps=10, batch_size=16, n_heldout=16,
                                   objectives=("nll", "p"), threads=2)
    budget = args.budget or (60 if args.tiny else 170)
    # The grid reads <out>/grid/data/<task>/{train,heldout}.jsonl: copy the pre-generated sets there.
    for name in ecfg.tasks:
        for split, n in (("train", ecfg.n_train), ("heldout", ecfg.n_heldout)):
            dst = out / "grid" / "data" / name / f"{split}.jsonl"
            dst.parent.mkdir(parents=True, exist_ok=True)
            lines = (DATA / name / f"{split}.jsonl").read_text().splitlines()[:n]
            dst.write_text("\n".join(lines) + "\n")

    def build():
        docs = {name: [bb.document(r, bcfg) for r in read_jsonl(DATA / name / "pretrain.jsonl")]
                for name, _ in bcfg.mix}
        probe_sets = {name: read_jsonl(out / "grid" / "data" / name / "train.jsonl")[:128]
                      for name in ecfg.tasks}
        return bb.build(bcfg, out / "backbone", progress=False, docs=docs, probe_sets=probe_sets,
                        device=args.device)

    section("backbone", results, build)

    def grid():
        path = ex.run_grid(ecfg, out / "grid", model_path=out / "backbone", progress=False,
                           deadline_s=budget)
        table, verdicts = ex.summarize(ex.read_rows(path), ecfg.min_gap)
        print("\n".join(table + [""] + ex.verdict_lines(verdicts)))
        return {"cells": len(ex.read_rows(path)), "verdicts": verdicts, "table": table}

    section("grid", results, grid)
    shutil.copy(out / "grid" / "results.csv", out / "results.csv") if (out / "grid" / "results.csv").exists() else None
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("== summary")
    print(json.dumps({k: v for k, v in results.items() if k != "grid"}, indent=1, default=str))
    for v in results.get("grid", {}).get("verdicts", []):
        print(f"{v['task']:15s} noise {v['noise']:.1f} {v['region']:18s} p={v['probe_mean_p']:.2f} "
              f"pred {v['prediction']:10s} meas {v['measured']:4s} Δ={100 * v['delta_p_minus_nll']:+.1f} "
              f"agree={v['agrees']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
