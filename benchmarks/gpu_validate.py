"""GPU: the continuum experiment scaled up — a larger backbone pretrained on the GPU from the same
two-stage corpus (spelling, then the dial's transformations at their doses), probed at the same
positions (probsft.continuum.experiment.POSITIONS), then the paired −p vs NLL grid (clean and token
noise, 5 seeds) and its verdict counts.

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
import sys
import time
import traceback
from pathlib import Path

from probsft import paths  # noqa: E402

DATA = paths.DATA / "validate"
SIZES = {"pretrain": 6000, "train": 256, "heldout": 200}


def make_data():
    from probsft.validate.backbone import BackboneConfig
    from probsft.continuum.experiment import POSITIONS
    from probsft.validate.tasks import TASKS, sample, write_jsonl

    cfg = BackboneConfig()
    for name in dict(cfg.mix + cfg.dial_mix):
        write_jsonl(DATA / name / "pretrain.jsonl", sample(
            TASKS[name], "pretrain", SIZES["pretrain"], 0, unique=TASKS[name].pretrain_unique))
    for name in POSITIONS:
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
    from probsft.continuum import experiment as ex
    from probsft.continuum import analysis as an
    from probsft.validate.data import read_jsonl

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: use --device cpu --tiny"); return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "tiny": args.tiny}
    bcfg = bb.BackboneConfig(hidden_size=512, layers=8, heads=8, intermediate_size=1408,
                             steps=1500, batch_size=128, lr=1e-3, warmup=100, dial_steps=600,
                             dial_batch_size=128, dial_lr=5e-4, threads=4)      # ~25M parameters
    ecfg = ex.ExperimentConfig(device=args.device, threads=4)           # the reduced grid
    if args.tiny:
        bcfg = bb.BackboneConfig(steps=150, dial_steps=50, threads=2)
        ecfg = dataclasses.replace(ecfg, seeds=(0, 1), steps=10, n_heldout=16, threads=2)
    budget = args.budget or (60 if args.tiny else 300)

    def build():
        docs = {name: [bb.document(r, bcfg) for r in read_jsonl(DATA / name / "pretrain.jsonl")]
                for name in dict(bcfg.mix + bcfg.dial_mix)}
        probe_sets = {name: {split: read_jsonl(DATA / name / f"{split}.jsonl")[:128]
                             for split in ("train", "heldout")} for name in ecfg.tasks}
        return bb.build(bcfg, out / "backbone", progress=False, docs=docs, probe_sets=probe_sets,
                        device=args.device)

    section("backbone", results, build)

    def grid():
        path = ex.run_grid(ecfg, out / "grid", model_path=out / "backbone", progress=False,
                           deadline_s=budget)
        analysis = an.write_analysis(ex.read_rows(path), out / "grid")
        return {"runs": len(ex.read_rows(path)), "counts": analysis["counts"],
                "crossover": analysis["crossover"]}

    section("grid", results, grid)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("== summary")
    print(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
