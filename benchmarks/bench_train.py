"""Training throughput: our runner vs HF Trainer (default cross-entropy), and each objective vs NLL.

Same tiny Llama, same examples, same micro-batch, measured in the same run, interleaved and repeated
(the median of ``--repeats`` is reported, so load from other processes hits both sides alike):

* ``runner/hf``: tokens/s of probsft's runner (objective nll) over tokens/s of
  ``transformers.Trainer`` with the model's own cross-entropy loss (target >= 1.0);
* ``overhead``: step time of each registered objective over the step time of nll, minus 1
  (target <= 5%).

Tokens are the non-padding input tokens processed. Prints a table and writes ``bench_train.json``.

    python benchmarks/bench_train.py [--steps 30] [--repeats 3] [--out results/]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch


def build(hidden: int, layers: int, n_examples: int, seed: int = 0):
    import random

    from probsft.validate.data import tokenize_sft
    from probsft.validate.tiny import build_char_tokenizer, tiny_llama

    tok = build_char_tokenizer("abcdefghijklmnopqrstuvwxyz \n>")
    rng = random.Random(seed)
    records = []
    for _ in range(n_examples):
        w = " ".join("".join(rng.choice("abcdefghij") for _ in range(5)) for _ in range(rng.randint(4, 8)))
        records.append({"prompt": w + ">", "response": w[::-1]})
    examples = tokenize_sft(records, tok, 128)
    return tok, examples, lambda: tiny_llama(len(tok), hidden_size=hidden, layers=layers, heads=4,
                                             seed=seed)


def time_runner(new_model, tok, examples, spec, steps, batch_size):
    from probsft.validate.train import FinetuneConfig, finetune

    cfg = FinetuneConfig(model="tiny", data="-", objective=spec, batch_size=batch_size, max_steps=steps,
                         lr=1e-4, device="cpu", bf16=False)
    model = new_model()
    start = time.perf_counter()
    finetune(cfg, model, tok, progress=False, examples=examples)
    return time.perf_counter() - start


def time_hf_trainer(new_model, tok, examples, steps, batch_size):
    from transformers import Trainer, TrainingArguments

    from probsft.validate.data import collate

    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=batch_size, max_steps=steps,
                                 learning_rate=1e-4, report_to=[], save_strategy="no",
                                 logging_strategy="no", use_cpu=True, dataloader_drop_last=True,
                                 disable_tqdm=True, remove_unused_columns=False, lr_scheduler_type="cosine",
                                 warmup_steps=int(0.1 * steps), weight_decay=0.01, adam_beta2=0.95)
        trainer = Trainer(model=new_model(), args=args, train_dataset=list(examples),
                          data_collator=lambda feats: collate(feats, tok.pad_token_id))
        start = time.perf_counter()
        trainer.train()
        return time.perf_counter() - start


def main(argv=None) -> int:
    from probsft.theory.spec import registered

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench_out")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tok, examples, new_model = build(args.hidden, args.layers, args.steps * args.batch_size)
    # Every run sees the same batches (the runner's order is a pure function of seed and step, and
    # both sides use one epoch of the same examples), so tokens/s compares the same work.
    tokens = sum(len(e["input_ids"]) for e in examples)
    specs = list(registered())
    timings = {"hf_trainer_ce": [], **{s: [] for s in specs}}
    time_runner(new_model, tok, examples, "nll", 3, args.batch_size)           # warm-up
    time_hf_trainer(new_model, tok, examples, 3, args.batch_size)
    for _ in range(args.repeats):
        timings["hf_trainer_ce"].append(time_hf_trainer(new_model, tok, examples, args.steps,
                                                        args.batch_size))
        for spec in specs:
            timings[spec].append(time_runner(new_model, tok, examples, spec, args.steps, args.batch_size))
    med = {k: statistics.median(v) for k, v in timings.items()}
    results = {
        "config": vars(args), "tokens_per_run": tokens, "seconds_median": med,
        "tokens_per_s": {k: tokens / v for k, v in med.items()},
        "runner_over_hf_trainer": med["hf_trainer_ce"] / med["nll"],
        "overhead_vs_nll": {s: med[s] / med["nll"] - 1 for s in specs},
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
    }
    print(f"{'run':<16}{'tokens/s':>12}{'vs nll':>10}")
    print(f"{'hf_trainer_ce':<16}{results['tokens_per_s']['hf_trainer_ce']:>12.0f}"
          f"{med['hf_trainer_ce'] / med['nll']:>10.3f}")
    for s in specs:
        print(f"{s:<16}{results['tokens_per_s'][s]:>12.0f}{1 + results['overhead_vs_nll'][s]:>10.3f}")
    print(f"runner (nll) / HF Trainer (CE) throughput: {results['runner_over_hf_trainer']:.3f}x "
          f"(target >= 1.0)")
    worst = max(results["overhead_vs_nll"].items(), key=lambda kv: kv[1])
    print(f"largest objective overhead vs nll: {worst[0]} {100 * worst[1]:+.1f}% (target <= 5%)")
    from machine import save_result

    save_result(args.out, "bench_train.json", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
