"""`probsft evaluate`: generation metrics and training fit of a (fine-tuned) model (validate/evaluate.py).

    probsft evaluate --model runs/p/model --data heldout.jsonl --extract raw --out runs/p/eval
    probsft evaluate --model runs/p/model --data math_test.jsonl --extract boxed --samples 16 \
        --temperature 1.0 --max-new-tokens 4096 --out runs/p/eval       # avg@16 as the paper
"""

from __future__ import annotations

from pathlib import Path

from probsft.commands import positive_int


def add_parser(sub):
    from probsft.validate.train import DEVICES

    p = sub.add_parser("evaluate", help="exact match / Jaro-Winkler / avg@k and training likelihood")
    p.add_argument("--model", required=True, help="hub name or local path")
    p.add_argument("--data", required=True, help="held-out JSONL (prompt/response or messages)")
    p.add_argument("--train-data", help="also report the mean training-token p on this JSONL")
    p.add_argument("--extract", default="raw",
                   help="answer extraction: raw (first line), boxed, last_number, letter")
    p.add_argument("--samples", type=positive_int, default=1, help="k of avg@k (1 with temperature 0: greedy)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--max-new-tokens", type=positive_int, default=16)
    p.add_argument("--max-length", type=positive_int, default=1024)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--out", help="folder for results.json and per_sample.csv")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.validate.data import read_jsonl, tokenize_sft
    from probsft.validate.evaluate import evaluate
    from probsft.validate.store import atomic_write_csv, atomic_write_json
    from probsft.validate.train import load_model_and_tokenizer, pick_device

    device = pick_device(args.device)                 # a missing GPU fails before the model loads
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.to(device)
    train = None
    if args.train_data:
        train = tokenize_sft(read_jsonl(args.train_data), tokenizer, args.max_length)
    summary, rows = evaluate(model, tokenizer, read_jsonl(args.data), extract=args.extract,
                             samples=args.samples, temperature=args.temperature, top_p=args.top_p,
                             max_new_tokens=args.max_new_tokens, seed=args.seed,
                             train_examples=train, batch_size=args.batch_size)
    summary = {"model": args.model, "data": args.data, **summary}
    for k, v in summary.items():
        print(f"{k:<22} {v:.4f}" if isinstance(v, float) else f"{k:<22} {v}")
    if args.out:
        atomic_write_json(Path(args.out) / "results.json", summary)
        atomic_write_csv(Path(args.out) / "per_sample.csv", rows)
        print(f"wrote {args.out}/results.json and per_sample.csv")
    return 0
