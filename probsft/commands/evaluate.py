"""`probsft evaluate`: generation metrics and training fit of a (fine-tuned) model (validate/evaluate.py).

    probsft evaluate --model runs/p/model --data heldout.jsonl --extract raw --out runs/p/eval
    probsft evaluate --model runs/p/model --data math_test.jsonl --extract boxed --samples 16 \
        --temperature 1.0 --max-new-tokens 4096 --out runs/p/eval       # avg@16 as the paper
"""

from __future__ import annotations

from pathlib import Path

from probsft.commands import positive_int, probability, temperature


def add_parser(sub):
    from probsft.validate.train import DEVICES

    p = sub.add_parser("evaluate", help="exact match / Jaro-Winkler / avg@k and training likelihood")
    p.add_argument("--model", required=True, help="hub name or local path")
    p.add_argument("--data", required=True, help="held-out JSONL (prompt/response or messages)")
    p.add_argument("--train-data", help="also report the mean training-token p on this JSONL")
    p.add_argument("--extract", default="raw",
                   help="answer extraction: raw (first line), boxed, last_number, letter")
    p.add_argument("--samples", type=positive_int, default=1, help="k of avg@k (1 with temperature 0: greedy)")
    p.add_argument("--temperature", type=temperature, default=None,
                   help="sampling temperature >= 0 (default: 0, greedy, for one sample; 1.0, the "
                        "paper's avg@k protocol, for --samples > 1)")
    p.add_argument("--top-p", type=probability, default=1.0, help="nucleus mass in (0, 1]")
    p.add_argument("--max-new-tokens", type=positive_int, default=16)
    p.add_argument("--max-length", type=positive_int, default=1024)
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--out", help="folder for results.json and per_sample.csv")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.errors import UserError
    from probsft.files import locked_output
    from probsft.validate.data import read_jsonl

    temp = args.temperature if args.temperature is not None else (1.0 if args.samples > 1 else 0.0)
    if args.samples > 1 and temp == 0:
        raise UserError(f"--samples {args.samples} with --temperature 0 would repeat one greedy "
                        "answer; give --temperature > 0 (the paper's avg@k uses 1.0)")
    records = read_jsonl(args.data)
    train = read_jsonl(args.train_data) if args.train_data else None
    if not args.out:
        return _run(args, temp, records, train)
    with locked_output(args.out, "--out"):
        return _run(args, temp, records, train)


def _run(args, temp, records, train_records) -> int:
    from probsft.validate.data import tokenize_sft
    from probsft.validate.evaluate import evaluate
    from probsft.validate.loading import load_model_and_tokenizer
    from probsft.validate.store import atomic_write_csv, atomic_write_json
    from probsft.validate.train import pick_device

    device = pick_device(args.device)                 # a missing GPU fails before the model loads
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.to(device)
    train = None
    if train_records is not None:
        train = tokenize_sft(train_records, tokenizer, args.max_length)
    summary, rows = evaluate(model, tokenizer, records, extract=args.extract,
                             samples=args.samples, temperature=temp, top_p=args.top_p,
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
