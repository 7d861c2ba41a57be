"""The fine-tune runner vs Hugging Face's Trainer on a backbone size: tokens/s and peak memory.

The same SFT on both sides, measured in the same process, interleaved ``--repeats`` times (medians
reported, so load from other processes hits both alike): the same model (a backbone folder
``--model``, or a random-init Llama of ``--size``'s shape, probsft.validate.backbone.SIZES), the
same examples (``--task``'s SFT-train items, char tokenizer), batch size, optimizer steps, AdamW
(lr, betas 0.9/0.95, weight decay 0.01), cosine schedule with 10% warm-up, clipping at 1.0:

* ``trainer``     transformers.Trainer with the model's own cross-entropy (the NLL);
* ``runner_nll``  probsft.validate.train.finetune, objective ``nll``;
* ``runner_p``    the same runner, objective ``p`` (the paper's -p); with ``--objectives`` one
  ``runner_<spec>`` per spec instead (``all``: every registered objective), each also as its
  overhead over the runner's nll (steady step time / nll's, minus 1; target <= 5%).

The examples are exactly ``steps x batch_size``: each side trains one epoch, every example once,
so both see the same tokens (counted on each side: the Trainer's batches through its collator, the
runner's from its own ``train/tokens_seen``). Tokens/s = non-padding input tokens / wall seconds
of the training call (set-up included, after one unmeasured warm-up run per side).
Peak memory, beyond the model's weights (made before the measure starts): on CUDA
``torch.cuda.max_memory_allocated`` less the allocation before; on CPU the resident set's
high-water mark (VmHWM, reset through /proc/self/clear_refs, after malloc_trim) less VmRSS before
-- the process' whole memory, torch's allocations included (tracemalloc sees none of them); where
the mark cannot be reset, the growth of ``getrusage`` ru_maxrss (a lower bound). ``memory_method``
says which. Ratios are runner / Trainer (tokens/s: > 1 is a faster runner; memory: < 1 is less).

    python benchmarks/bench_trainer.py --size medium --steps 40 [--model models/backbone_medium]
        [--batch-size 16] [--repeats 3] [--threads 1] [--device auto] [--out bench_out]
        [--objectives p | SPEC ... | all]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import resource
import statistics
import tempfile
import time

import torch



def sections(objectives) -> dict[str, str | None]:
    """{section: objective} (None: the Trainer): the Trainer, the runner's nll, then the runner
    with each of ``objectives`` (``["all"]``: every registered objective)."""
    if list(objectives) == ["all"]:
        from probsft.theory.spec import registered

        objectives = list(registered())
    return {"trainer": None, "runner_nll": "nll",
            **{f"runner_{o}": o for o in objectives if o != "nll"}}


def _status_mib(key: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


class PeakMemory:
    """Peak memory (MiB) of the block beyond what was allocated before it (see module docstring)."""

    def __init__(self, device):
        self.device, self.method, self.mib = device, None, None

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.base, self.method = torch.cuda.memory_allocated() / 2**20, "cuda_max_allocated"
            return self
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)          # return freed heap to the OS
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")                                # reset VmHWM to the current RSS
            self.base, self.method = _status_mib("VmRSS:"), "rss_hwm"
        except OSError:
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.method = "ru_maxrss_growth"
        return self

    def __exit__(self, *exc):
        if self.method == "cuda_max_allocated":
            peak = torch.cuda.max_memory_allocated() / 2**20
        elif self.method == "rss_hwm":
            peak = _status_mib("VmHWM:")
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.mib = peak - self.base
        return False


def setup(size: str, model_path, task: str, n: int, seed: int = 0):
    """(new_model, tokenizer, examples): ``new_model()`` gives the same float32 model every call."""
    from probsft.validate.data import tokenize_sft
    from probsft.validate.tasks import TASKS, sample

    if model_path:
        from probsft.validate.loading import load_model_and_tokenizer

        _, tok = load_model_and_tokenizer(model_path)
        new_model = lambda: load_model_and_tokenizer(model_path)[0]
    else:
        from probsft.validate.backbone import size_config
        from probsft.validate.tasks import ALPHABET
        from probsft.validate.tiny import build_char_tokenizer, tiny_llama

        cfg = size_config(size)
        tok = build_char_tokenizer(ALPHABET, model_max_length=cfg.max_position)
        new_model = lambda: tiny_llama(len(tok), cfg.hidden_size, cfg.layers, cfg.heads, seed,
                                       cfg.max_position, cfg.intermediate_size)
    records = sample(TASKS[task], "train", n, seed)
    if len(records) < n:
        raise SystemExit(f"--task {task} has {len(records)} SFT-train items, fewer than steps x "
                         f"batch size = {n}")
    return new_model, tok, tokenize_sft(records, tok, 256)


def _now(device) -> float:
    """Wall clock once the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def run_trainer(model, tok, examples, args, device) -> dict:
    """transformers.Trainer, one epoch of ``examples``; the tokens its batches held, the end time
    of every optimizer step and the mean step loss."""
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from probsft.validate.data import collate

    seen, ticks = {"input": 0, "supervised": 0}, []

    def collator(feats):
        batch = collate(feats, tok.pad_token_id)
        seen["input"] += int(batch["attention_mask"].sum())
        seen["supervised"] += int((batch["labels"] != -100).sum())
        return batch

    class Tick(TrainerCallback):
        def on_step_end(self, targs, state, control, **kw):
            ticks.append(_now(device))

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
            learning_rate=args.lr, lr_scheduler_type="cosine", warmup_steps=int(0.1 * args.steps),
            weight_decay=0.01, adam_beta2=0.95, max_grad_norm=1.0, bf16=device.type == "cuda",
            optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",  # the runner's
            use_cpu=device.type == "cpu", report_to=[], save_strategy="no",
            logging_strategy="no", disable_tqdm=True, remove_unused_columns=False,
            dataloader_drop_last=True, seed=0)
        trainer = Trainer(model=model, args=targs, train_dataset=list(examples),
                          data_collator=collator, callbacks=[Tick()])
        trainer.remove_callback(PrinterCallback)               # its end-of-run metrics line
        start = _now(device)
        out = trainer.train()
        seconds = _now(device) - start
    return {"seconds": seconds, "ticks": ticks, "input_tokens": seen["input"],
            "supervised_tokens": seen["supervised"], "mean_loss": out.training_loss}


def run_runner(model, tok, examples, args, device, objective) -> dict:
    """probsft's runner, one epoch of ``examples`` (every example once: its input tokens are all
    of theirs); the supervised tokens it counted, step end times and the mean step loss."""
    from probsft.validate.train import FinetuneConfig, finetune

    cfg = FinetuneConfig(model="bench", data=None, objective=objective, batch_size=args.batch_size,
                         max_steps=args.steps, lr=args.lr, device=device.type, save_model=False)
    ticks, losses = [], []

    def tick(step, record):
        ticks.append(_now(device))
        losses.append(record["train/loss"])

    start = _now(device)
    metrics = finetune(cfg, model, tok, progress=False, examples=examples, callback=tick)
    seconds = _now(device) - start
    return {"seconds": seconds, "ticks": ticks,
            "input_tokens": sum(len(e["input_ids"]) for e in examples),
            "supervised_tokens": metrics["train/tokens_seen"],
            "mean_loss": sum(losses) / len(losses)}


def measure(objective, new_model, tok, examples, args, device) -> dict:
    """One run of the runner with ``objective`` (None: the Trainer) on a fresh model: tokens/s over the whole training call and over
    the steps after the first two (set-up and first-step costs left out; the mean tokens per
    step over the mean step time), and the peak memory."""
    model = new_model().to(device)
    with PeakMemory(device) as mem:
        got = (run_trainer(model, tok, examples, args, device) if objective is None else
               run_runner(model, tok, examples, args, device, objective))
    ticks = got.pop("ticks")
    steady = None
    if len(ticks) >= 4:
        step_s = (ticks[-1] - ticks[1]) / (len(ticks) - 2)
        steady = got["input_tokens"] / len(ticks) / step_s
    return {**got, "tokens_per_s": got["input_tokens"] / got["seconds"],
            "steady_tokens_per_s": steady, "peak_mib": mem.mib, "memory_method": mem.method}


def main(argv=None) -> int:
    from machine import cpu_line, save_result

    from probsft.validate.backbone import SIZES
    from probsft.validate.train import pick_device

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="tiny")
    ap.add_argument("--model", default=None, help="a built backbone folder (default: random init "
                    "of --size's shape, so no build is needed)")
    ap.add_argument("--task", default="t_sh1", help="SFT-train items of this task")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--objectives", nargs="+", default=["p"], metavar="SPEC",
                    help="runner objectives beside nll (default p; all: every registered one)")
    ap.add_argument("--out", default="bench_out", help="folder for bench_trainer.json")
    args = ap.parse_args(argv)
    try:
        secs = sections(args.objectives)
        import probsft

        for o in secs.values():
            if o is not None:
                probsft.objective(o)
    except ValueError as err:
        raise SystemExit(f"error: --objectives: {err}") from None
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(cpu_line() + (f" | {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""))
    new_model, tok, examples = setup(args.size, args.model, args.task, args.steps * args.batch_size)
    warm = argparse.Namespace(**{**vars(args), "steps": 2})
    for objective in secs.values():                            # unmeasured: first-call costs
        measure(objective, new_model, tok, examples[:2 * args.batch_size], warm, device)
    runs = {s: [] for s in secs}
    for _ in range(args.repeats):
        for section, objective in secs.items():
            runs[section].append(measure(objective, new_model, tok, examples, args, device))
    pick = lambda rs, k: statistics.median(r[k] for r in rs) if rs[0][k] is not None else None
    med = {s: {**{k: pick(rs, k) for k in ("tokens_per_s", "steady_tokens_per_s", "seconds",
                                            "peak_mib", "mean_loss")},
               **{k: rs[0][k] for k in ("input_tokens", "supervised_tokens", "memory_method")}}
           for s, rs in runs.items()}
    base = med["trainer"]
    ratio = lambda s, k: (med[s][k] / base[k] if base[k] else None)
    runner = [s for s in secs if secs[s] is not None]
    nll = med["runner_nll"]["steady_tokens_per_s"]
    results = {
        "config": {**vars(args), "device": str(device)}, "cpu": cpu_line(),
        "params": sum(p.numel() for p in new_model().parameters()), "sections": med, "runs": runs,
        "tokens_per_s_over_trainer": {s: ratio(s, "tokens_per_s") for s in runner},
        "steady_tokens_per_s_over_trainer": {s: ratio(s, "steady_tokens_per_s") for s in runner},
        "peak_memory_over_trainer": {s: ratio(s, "peak_mib") for s in runner},
        "overhead_vs_nll": {s: (nll / med[s]["steady_tokens_per_s"] - 1 if nll and
                                med[s]["steady_tokens_per_s"] else None) for s in runner[1:]},
        "same_tokens": len({(m["input_tokens"], m["supervised_tokens"]) for m in med.values()}) == 1,
    }
    print(f"{results['params']:,} parameters, {args.steps} steps x batch {args.batch_size}, "
          f"{base['input_tokens']} input tokens per run ({base['supervised_tokens']} supervised); "
          f"medians of {args.repeats}; memory: {base['memory_method']} (MiB beyond the weights)")
    fmt = lambda x, spec: format(x, spec) if x is not None else format("-", spec.split(".")[0])
    w = max(map(len, med)) + 2
    print(f"{'section':<{w}}{'tokens/s':>10}{'vs Trainer':>11}{'steady':>9}{'vs Trainer':>11}"
          f"{'peak MiB':>10}{'vs Trainer':>11}{'mean loss':>10}")
    for s, m in med.items():
        r = {k: results[k].get(s, 1.0) for k in ("tokens_per_s_over_trainer",
             "steady_tokens_per_s_over_trainer", "peak_memory_over_trainer")}
        print(f"{s:<{w}}{m['tokens_per_s']:>10.0f}{fmt(r['tokens_per_s_over_trainer'], '>11.3f')}"
              f"{fmt(m['steady_tokens_per_s'], '>9.0f')}"
              f"{fmt(r['steady_tokens_per_s_over_trainer'], '>11.3f')}{m['peak_mib']:>10.1f}"
              f"{fmt(r['peak_memory_over_trainer'], '>11.3f')}{m['mean_loss']:>10.4f}")
    if results["overhead_vs_nll"]:
        worst = max(results["overhead_vs_nll"].items(), key=lambda kv: kv[1] or 0.0)
        print(f"largest objective overhead vs the runner's nll (steady step time): {worst[0][7:]} "
              + ("-" if worst[1] is None else f"{100 * worst[1]:+.1f}%") + " (target <= 5%)")
    if not results["same_tokens"]:
        print("warning: the sides trained on different token counts; the ratios do not compare")
    save_result(args.out, "bench_trainer.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
