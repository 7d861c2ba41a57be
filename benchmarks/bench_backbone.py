"""Build-time estimate of a backbone size: a few timed pretraining steps of each stage, extrapolated.

Times ``--steps`` optimizer steps of stage 1 (spelling, its batch size) and of the dial (its batch
size) at the shape of ``--size`` (probsft.validate.backbone.SIZES), on the pretraining documents of
a small pool (the same documents, fewer of them: the step cost depends on their lengths, not their
number), after one unmeasured warm-up step; then the dial probe (probsft.validate.backbone.
dial_report) on ``--probe-n`` items per task, scaled to the build's 128. The estimate of a build:

    stage-1 steps x s/step(stage 1) + dial steps x s/step(dial) + probe(128)

(the corpus of 6000 items per task adds about a minute, not timed here), in wall seconds and in
this process' CPU seconds. At one thread the CPU seconds are the wall seconds of an unloaded
machine, so they hold while other processes share the cores (the wall times then do not);
``--size tiny`` gives the same estimate for the shipped build, whose time build.json records.

    python benchmarks/bench_backbone.py --size medium --threads 2 [--steps 4] [--out bench_out]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import torch


def time_steps(cfg, tok, docs, mix, batch_size, steps) -> tuple[float, float]:
    """(wall, CPU) seconds per optimizer step of ``pretrain`` at ``cfg``'s shape (one warm-up step
    unmeasured). CPU seconds are this process' (all its threads)."""
    from probsft.validate.pretrain import pretrain
    from probsft.validate.tiny import tiny_llama

    model = tiny_llama(len(tok), cfg.hidden_size, cfg.layers, cfg.heads, cfg.seed, cfg.max_position,
                       cfg.intermediate_size)
    ticks = []
    pretrain(model, tok, docs, mix, steps + 1, batch_size, cfg.lr, cfg, cfg.seed,
             on_step=lambda k: ticks.append((time.perf_counter(), time.process_time())))
    return tuple((b - a) / steps for a, b in zip(ticks[0], ticks[-1]))


def measure(size: str, threads: int, steps: int, probe_n: int, pool: int = 300) -> dict:
    """Measured seconds per step of both stages, the probe's seconds and the extrapolated build."""
    from probsft.theory.fused_auto import cpu_features
    from probsft.validate.backbone import corpus, dial_report, size_config
    from probsft.validate.tasks import ALPHABET
    from probsft.validate.tiny import build_char_tokenizer, tiny_llama

    cfg = dataclasses.replace(size_config(size), threads=threads)
    torch.set_num_threads(threads)
    tok = build_char_tokenizer(ALPHABET, model_max_length=cfg.max_position)
    small = dataclasses.replace(cfg, pool=pool)
    docs = {**corpus(small), **corpus(small, cfg.dial_mix)}
    s1 = time_steps(cfg, tok, docs, cfg.mix, cfg.batch_size, steps)
    s2 = time_steps(cfg, tok, docs, cfg.dial_mix, cfg.dial_batch_size, steps)
    model = tiny_llama(len(tok), cfg.hidden_size, cfg.layers, cfg.heads, cfg.seed, cfg.max_position,
                       cfg.intermediate_size).eval()
    start = (time.perf_counter(), time.process_time())
    dial_report(model, tok, probe_n)
    probe = [(b - a) * 128 / probe_n for a, b in zip(start, (time.perf_counter(),
                                                              time.process_time()))]
    build = [cfg.steps * a + cfg.dial_steps * b + c for a, b, c in zip(s1, s2, probe)]
    return {"size": size, "threads": threads, "timed_steps": steps,
            "params": sum(p.numel() for p in model.parameters()),
            "stage1": {"steps": cfg.steps, "batch_size": cfg.batch_size,
                       "ms_per_step": 1e3 * s1[0], "cpu_ms_per_step": 1e3 * s1[1]},
            "dial": {"steps": cfg.dial_steps, "batch_size": cfg.dial_batch_size,
                     "ms_per_step": 1e3 * s2[0], "cpu_ms_per_step": 1e3 * s2[1]},
            "probe_s_at_128": probe[0], "probe_cpu_s_at_128": probe[1],
            "build_minutes_estimate": build[0] / 60, "build_cpu_minutes_estimate": build[1] / 60,
            "load_average": os.getloadavg(), "cpu": cpu_features(), "torch": torch.__version__}


def main(argv=None) -> int:
    from machine import cpu_line

    from probsft.validate.backbone import SIZES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="medium")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per stage (after 1 warm-up)")
    ap.add_argument("--probe-n", type=int, default=16, help="probe items per dial task (of 128)")
    ap.add_argument("--out", default=None, help="folder for bench_backbone_<size>.json")
    args = ap.parse_args(argv)
    r = measure(args.size, args.threads, args.steps, args.probe_n)
    print(cpu_line())
    print(f"size {r['size']}: {r['params']:,} parameters")
    print(f"{'':<20}{'wall ms/step':>13}{'CPU ms/step':>13}{'steps':>7}{'wall min':>10}"
          f"{'CPU min':>9}")
    for stage in ("stage1", "dial"):
        s = r[stage]
        print(f"  {stage:<7} batch {s['batch_size']:>3}{s['ms_per_step']:>15.1f}"
              f"{s['cpu_ms_per_step']:>13.1f}{s['steps']:>7}{s['ms_per_step'] * s['steps'] / 6e4:>10.1f}"
              f"{s['cpu_ms_per_step'] * s['steps'] / 6e4:>9.1f}")
    print(f"  probe (128 items per dial task){r['probe_s_at_128'] / 60:>25.1f}"
          f"{r['probe_cpu_s_at_128'] / 60:>9.1f}")
    print(f"  estimated build{r['build_minutes_estimate']:>41.1f}{r['build_cpu_minutes_estimate']:>9.1f}")
    print("  (at 1 thread the CPU minutes are the wall minutes of a machine nothing else loads)")
    if args.out:
        from probsft.files import atomic_write_json

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / f"bench_backbone_{args.size}.json", r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
