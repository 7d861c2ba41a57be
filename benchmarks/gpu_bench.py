"""The one GPU benchmark (issue 26): the fused linear + f(p) loss against cut-cross-entropy, Liger's
fused linear cross-entropy and TRL's chunked log-prob head, and probsft's runner against HF Trainer.

Sections (each with its own time budget; a baseline that is missing is a row "not installed"):
  fused     benchmarks/gpu_fused.py: naive, ours, cce, liger, trl, ours-token, ours-half, ours-cce,
            ours-compile at N 8192 on the Qwen2.5-0.5B head (H 896, V 151,936) and the
            Llama-3.2-1B head (H 2048, V 128,256), bf16, for the specs nll, p, alpha(5), deft:
            time, peak memory, loss and gradient error vs naive. Targets, per shape and f: ours
            <= 1.2x CCE's time and <= 1.5x CCE's memory (CCE computes NLL only: its NLL run is the
            reference for every f).
  finetune  benchmarks/gpu_finetune.py: tokens/s and peak memory of the runner (nll, -p, -p fused)
            vs transformers.Trainer on ``--model`` (default models/backbone_medium, the shipped
            8.9M backbone of issue 24; or another folder with a config.json, or a preset).
Writes ONE ``results.json`` and ONE ``results.md`` into ``--out`` (default $OUT, else gpu_out),
rewritten after every row, so a run stopped by a timeout still leaves its table.

    bash benchmarks/gpu_all.sh                      # on the GPU machine: install + this, <= 8 min
    python benchmarks/gpu_bench.py --dry-run --out /tmp/gb   # CPU, tiny sizes, float32, < 60 s
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_finetune  # noqa: E402
import gpu_fused  # noqa: E402
from gpu_report import markdown, summarise  # noqa: E402

SPECS = ("nll", "p", "alpha(5)", "deft")
GPU_SHAPES = {"qwen2.5-0.5b": (8192, 896, 151_936), "llama-3.2-1b": (8192, 2048, 128_256)}
DRY_SHAPES = {"tiny": (64, 32, 512)}
PACKAGES = ("torch", "transformers", "trl", "cut-cross-entropy", "liger-kernel", "triton")


def environment(device):
    from probsft.theory.fused_auto import cpu_features

    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": device.type,
           "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
           "cpu": cpu_features(), "threads": torch.get_num_threads()}
    for pkg in PACKAGES:
        try:
            env[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env


class Results:
    """results.json + results.md in ``out``, rewritten (atomically) after every row."""

    def __init__(self, out, env, config):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.data = {"env": env, "config": config, "fused": [], "finetune": []}

    def add(self, section, row):
        self.data[section].append(row)
        print(f"[{section}] " + json.dumps(row), flush=True)
        self.save()

    def save(self):
        self.data.update(summarise(self.data))
        for name, text in (("results.json", json.dumps(self.data, indent=1)),
                           ("results.md", markdown(self.data))):
            tmp = self.out / (name + ".tmp")
            tmp.write_text(text)
            tmp.replace(self.out / name)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu_out")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, tiny sizes, float32: the same code path in well under a minute")
    ap.add_argument("--model", help="fine-tune model: a preset "
                    f"({', '.join(gpu_finetune.PRESETS)}) or a folder with config.json "
                    "(default models/backbone_medium; dry run: tiny)")
    ap.add_argument("--specs", default=",".join(SPECS))
    ap.add_argument("--methods", help="fused methods (default all; dry run: all but ours-compile, "
                    "whose CPU compile alone takes a minute)")
    ap.add_argument("--sections", default="fused,finetune")
    ap.add_argument("--reps", type=int, help="timed fused runs per case, median (default 3; dry 1)")
    ap.add_argument("--repeats", type=int, help="interleaved fine-tune repeats, best (default 2; "
                    "dry run 1)")
    ap.add_argument("--steps", type=int, help="fine-tune optimizer steps (default 30; dry run 4)")
    ap.add_argument("--fused-budget", type=float, default=240,
                    help="seconds; after it only naive, ours and cce still run")
    ap.add_argument("--finetune-budget", type=float, default=120, help="seconds")
    args = ap.parse_args(argv)
    dry = args.dry_run
    methods = (args.methods or ",".join(m for m in gpu_fused.METHODS
                                        if not (dry and m == "ours-compile"))).split(",")
    unknown = set(methods) - set(gpu_fused.METHODS)
    if unknown:
        ap.error(f"--methods: unknown {sorted(unknown)}; known: {', '.join(gpu_fused.METHODS)}")
    reps = args.reps or (1 if dry else 3)
    repeats = args.repeats or (1 if dry else 2)
    if dry:
        device, dtype, shapes, model = torch.device("cpu"), torch.float32, DRY_SHAPES, "tiny"
    elif torch.cuda.is_available():
        device, dtype, shapes, model = (torch.device("cuda"), torch.bfloat16, GPU_SHAPES,
                                        gpu_finetune.MEDIUM)
    else:
        ap.error("no CUDA device: run with --dry-run (CPU, tiny sizes)")
    model = args.model or model
    specs = args.specs.split(",")
    config = {"dry_run": dry, "dtype": str(dtype).removeprefix("torch."), "specs": specs,
              "shapes": shapes, "model": model, "reps": reps, "repeats": repeats,
              "methods": methods}
    results = Results(args.out, environment(device), config)
    print(json.dumps(results.data["env"]), flush=True)
    start = time.monotonic()
    if "fused" in args.sections:
        gpu_fused.run(shapes, specs, methods, device, dtype, reps,
                      time.monotonic() + args.fused_budget, lambda row: results.add("fused", row))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if "finetune" in args.sections:
        gpu_finetune.run(model, device.type, repeats, args.steps,
                         time.monotonic() + args.finetune_budget,
                         lambda row: results.add("finetune", row))
    results.data["wall_s"] = time.monotonic() - start
    results.save()
    print(markdown(results.data))
    print(f"wrote {results.out / 'results.json'} and {results.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
