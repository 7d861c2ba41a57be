"""GPU fine-tune benchmark: a locally built Llama (random init) trained with two objectives in bf16.

For each section -- the baseline ``hf-trainer`` (transformers.Trainer with the model's own
cross-entropy, same model, batch and steps), then ``nll``, ``p`` (the paper's -p), and ``p``
through the fused linear+f(p) loss (``--fused``, skipped with a note if probsft.theory.fused is
missing) -- it runs probsft's runner
(``probsft.validate.train.finetune``) for ``--steps`` optimizer steps on synthetic SFT sequences
(prompt masked) and records training tokens/s (all non-padding input tokens, after 2 warm-up steps)
and the peak GPU memory; sections run interleaved ``--repeats`` times and the best is reported. Each section is guarded: a failure is printed and the next one runs.
Prints a results table and writes ``gpu_finetune.json`` to ``--out``.

    python benchmarks/gpu_finetune.py --out results/gpu          # H100: ~200M params, well under 90 s
    python benchmarks/gpu_finetune.py --device cpu --out /tmp/g  # tiny sizes, for checking the script
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

import torch

SIZES = {   # hidden, layers, heads, vocab, seq_len, micro_batch, grad_accum, steps
    "cuda": dict(hidden=1024, layers=8, heads=16, vocab=32768, seq=512, batch=8, accum=2, steps=30),
    "cpu": dict(hidden=64, layers=2, heads=4, vocab=512, seq=64, batch=4, accum=2, steps=4),
}


def build_model(s, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=s["vocab"], hidden_size=s["hidden"], num_hidden_layers=s["layers"],
                      num_attention_heads=s["heads"], num_key_value_heads=s["heads"],
                      intermediate_size=4 * s["hidden"], max_position_embeddings=s["seq"],
                      pad_token_id=0, eos_token_id=2, tie_word_embeddings=False,
                      attn_implementation="sdpa" if device == "cuda" else "eager")
    torch.manual_seed(0)
    with torch.device(device):                      # initialise on the GPU: seconds faster per build
        return LlamaForCausalLM(cfg)


def synthetic_examples(s, n, seed=0):
    """n sequences of seq tokens: the first quarter is the prompt (labels -100), the rest supervised."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, s["vocab"], (n, s["seq"]), generator=g)
    out = []
    for row in ids.tolist():
        cut = s["seq"] // 4
        out.append({"input_ids": row, "labels": [-100] * cut + row[cut:]})
    return out


class _Pad:
    """The runner needs only ``pad_token_id`` from a tokenizer when examples are pre-tokenised."""

    pad_token_id = 0


def _now(device):
    """Wall clock after the device's queued work is done."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _reset_peak(device):
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device):
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def _tokens_per_s(times, s):
    """Steady-state tokens/s from per-step end times, skipping up to two warm-up steps."""
    warm = min(2, len(times) - 1)
    return s["batch"] * s["accum"] * s["seq"] * (len(times) - 1 - warm) / (times[-1] - times[warm])


def run_section(name, spec, fused, s, device):
    from probsft.validate.train import FinetuneConfig, finetune

    model = build_model(s, device)
    n = s["batch"] * s["accum"] * s["steps"]
    examples = synthetic_examples(s, n)
    cfg = FinetuneConfig(model="local-llama", data="-", objective=spec, batch_size=s["batch"],
                         grad_accum=s["accum"], max_steps=s["steps"], lr=5e-5, device=device,
                         bf16=device == "cuda", fused=fused, save_model=False)
    times = []

    def tick(step, record):
        times.append(_now(device))

    _reset_peak(device)
    start = time.perf_counter()
    metrics = finetune(cfg, model, _Pad(), progress=False, examples=examples, callback=tick)
    wall = time.perf_counter() - start
    return {"section": name, "objective": spec, "fused": fused,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "tokens_per_s": _tokens_per_s(times, s), "peak_mem_GiB": _peak_gib(device),
            "final_loss": metrics["train/loss"], "skipped": metrics["train/skipped_nonfinite"],
            "wall_s": wall}


def run_hf_trainer(name, s, device):
    """Baseline: transformers.Trainer with the model's own cross-entropy, same model/batch/steps."""
    import tempfile

    from transformers import Trainer, TrainerCallback, TrainingArguments

    from probsft.validate.data import collate

    model = build_model(s, device)
    examples = synthetic_examples(s, s["batch"] * s["accum"] * s["steps"])
    times = []

    class Tick(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(_now(device))

    _reset_peak(device)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=s["batch"],
                                 gradient_accumulation_steps=s["accum"], max_steps=s["steps"],
                                 learning_rate=5e-5, bf16=device == "cuda", use_cpu=device == "cpu",
                                 report_to=[], save_strategy="no", logging_strategy="no",
                                 disable_tqdm=True, remove_unused_columns=False,
                                 dataloader_drop_last=True, adam_beta2=0.95, weight_decay=0.01)
        trainer = Trainer(model=model, args=args, train_dataset=examples,
                          data_collator=lambda feats: collate(feats, 0), callbacks=[Tick()])
        start = time.perf_counter()
        out = trainer.train()
        wall = time.perf_counter() - start
    return {"section": name, "objective": "HF Trainer CE", "fused": False,
            "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
            "tokens_per_s": _tokens_per_s(times, s), "peak_mem_GiB": _peak_gib(device),
            "final_loss": out.training_loss, "skipped": 0, "wall_s": wall}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    choices=["cuda", "cpu"])
    ap.add_argument("--out", default="gpu_out/finetune")
    ap.add_argument("--steps", type=int, help="override the number of optimizer steps")
    ap.add_argument("--repeats", type=int, default=2,
                    help="interleaved repeats of every section; the table shows the best")
    args = ap.parse_args(argv)
    s = dict(SIZES[args.device])
    if args.steps:
        s["steps"] = args.steps
    env = {"torch": torch.__version__, "device": args.device, "sizes": s,
           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    try:
        import transformers
        env["transformers"] = transformers.__version__
    except Exception as err:                                    # noqa: BLE001 - report, go on
        env["transformers"] = f"missing: {err}"
    print(json.dumps(env))
    try:                                  # unmeasured: CUDA context, kernels, allocator warm-up
        run_section("warm-up", "nll", False, {**s, "steps": 3}, args.device)
    except Exception:                                           # noqa: BLE001 - sections report it
        traceback.print_exc()
    results = []
    sections = [("hf-trainer", None, False), ("nll", "nll", False), ("-p", "p", False),
                ("-p fused", "p", True)]
    for name, spec, fused in [sec for _ in range(args.repeats) for sec in sections]:
        print(f"== {name}", flush=True)
        try:
            if fused:
                import probsft.theory.fused  # noqa: F401 - skip the section when it is missing
            if spec is None:
                results.append(run_hf_trainer(name, s, args.device))
            else:
                results.append(run_section(name, spec, fused, s, args.device))
            print(json.dumps(results[-1]), flush=True)
        except ImportError as err:
            print(f"skipped {name}: {err}")
            results.append({"section": name, "skipped": str(err)})
        except Exception as err:                                # noqa: BLE001 - survive a section
            traceback.print_exc()
            results.append({"section": name, "error": repr(err)})
    best = {}                             # per section: the repeat with the highest tokens/s
    for r in results:
        if r["section"] not in best or r.get("tokens_per_s", 0) > best[r["section"]].get("tokens_per_s", 0):
            best[r["section"]] = r
    print(f"\n{'section':<12}{'params(M)':>10}{'tokens/s':>12}{'peak GiB':>10}{'loss':>9}{'wall s':>8}")
    for r in best.values():
        if "tokens_per_s" in r:
            mem = f"{r['peak_mem_GiB']:.2f}" if r["peak_mem_GiB"] is not None else "-"
            print(f"{r['section']:<12}{r['params_M']:>10.1f}{r['tokens_per_s']:>12.0f}{mem:>10}"
                  f"{r['final_loss']:>9.4f}{r['wall_s']:>8.1f}")
        else:
            print(f"{r['section']:<12}  {r.get('error') or 'skipped: ' + r['skipped']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "gpu_finetune.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"env": env, "best": list(best.values()), "results": results}, indent=2))
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
