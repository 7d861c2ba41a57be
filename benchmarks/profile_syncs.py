"""Host syncs per optimizer step of the fine-tune runner (and of HF Trainer), counted with
torch.profiler on CPU: calls of aten::item / aten::_local_scalar_dense (a device -> host read: a
sync on GPU), aten::nonzero and aten::is_nonzero (boolean masks / `if tensor`: a sync on GPU).

On CPU these ops cost nothing, but each one blocks the host on a GPU until the queue drains, so
the count is what matters for GPU throughput. Calls inside optimizer.step are left out (CPU AdamW
reads a step counter per parameter; CUDA's fused AdamW does not), and so is the CPU-only mask
read of the fused loss (theory/fused.py leaves masked tokens out on CPU only). The tiny backbone's
shape, random init (bench_trainer.py's set-up), nll and a thresholded objective, with and without
--fused, 2 micro-batches per step.

    python benchmarks/profile_syncs.py [--steps 4] [--hf]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trainer import run_trainer, setup  # noqa: E402

OPS = ("aten::item", "aten::_local_scalar_dense", "aten::nonzero", "aten::is_nonzero")


def _in_optimizer(ev):
    """Inside optimizer.step: CPU AdamW reads its step counters (.item() per parameter); CUDA's
    fused AdamW, which both the runner and HF Trainer use there, does not. Not counted."""
    while ev is not None:
        if ev.name.startswith("Optimizer.step"):
            return True
        ev = ev.cpu_parent
    return False


def count(fn, steps):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    calls = collections.Counter()
    for ev in prof.events():
        if ev.name in OPS and not _in_optimizer(ev):
            calls[ev.name] += 1
    return {k: calls[k] / steps for k in OPS}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--hf", action="store_true", help="also count HF Trainer (its own CE)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from probsft.theory import fused
    from probsft.validate.train import FinetuneConfig, finetune

    # the fused loss leaves masked tokens (and tokens of gradient weight 0) out on CPU only (a mask
    # read per micro-batch and chunk, free there); on CUDA it keeps them and reads nothing: count
    # the CUDA path
    fused._cpu_rows = lambda mask: None

    new_model, tok, examples = setup("tiny", None, "t_sh1", 64)
    rows = {}
    for spec in ("nll", "p@p>=0.2"):
        for fused in (False, True):
            cfg = FinetuneConfig(model="tiny", data="-", objective=spec, batch_size=4, grad_accum=2,
                                 max_steps=args.steps, lr=1e-4, device="cpu", bf16=False,
                                 fused=fused, log_every=args.steps)
            model = new_model()
            rows[f"runner {spec}{' --fused' if fused else ''}"] = count(
                lambda: finetune(cfg, model, tok, progress=False, examples=examples), args.steps)
    if args.hf:
        hf = argparse.Namespace(steps=args.steps, batch_size=8, lr=1e-4)
        rows["HF Trainer (its CE)"] = count(
            lambda: run_trainer(new_model(), tok, examples, hf, torch.device("cpu")), args.steps)
    print(f"{'per optimizer step':28s} " + " ".join(f"{k[6:]:>18s}" for k in OPS))
    for name, c in rows.items():
        print(f"{name:28s} " + " ".join(f"{c[k]:18.1f}" for k in OPS))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
