"""`probsft probe`: teacher-forced base-model statistics and continuum placement (validate/probe.py).

    probsft probe --model Qwen/Qwen2.5-Math-1.5B --data math.jsonl [--json probe.json]
"""

from __future__ import annotations


from probsft.commands import emit, positive_int


def add_parser(sub):
    from probsft.validate.train import DEVICES

    p = sub.add_parser("probe", help="where a (model, SFT data) pair sits on the capability continuum")
    p.add_argument("--model", required=True, help="hub name or local path of a causal LM")
    p.add_argument("--data", required=True, help="SFT JSONL (prompt/response or messages)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="print the result as JSON (or write it to PATH, atomically)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--max-length", type=positive_int, default=1024)
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.add_argument("--placement", default="all", choices=["all", "answer"],
                   help="place by every response token (Eq. 5, default) or by those other than eos")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.files import output_file
    from probsft.validate.data import read_jsonl
    from probsft.validate.loading import load_model_and_tokenizer
    from probsft.validate.probe import format_table, probe
    from probsft.validate.train import pick_device

    if args.json and args.json != "-":
        output_file(args.json, "--json")             # before the work, not after it
    records = read_jsonl(args.data)                  # a bad line fails before the model loads
    device = pick_device(args.device)                # a missing GPU fails before the model loads
    model, tokenizer = load_model_and_tokenizer(args.model)
    model.to(device)
    stats = probe(model, tokenizer, records, batch_size=args.batch_size, max_length=args.max_length,
                  placement=args.placement)
    stats = {"model": args.model, "data": args.data, **stats}
    emit(stats, format_table(stats), args.json)
    return 0
