"""`probsft recommend`: which objective for this model and this data (probsft.continuum.recommend).

    probsft recommend --model models/backbone --data data/validate/letter_jumble/train.jsonl
    probsft recommend --model M --data D --noise 0.1 --sample-tokens 20000 --json rec.json
"""

from __future__ import annotations


from probsft.commands import emit, positive_int


def _noise(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"the noise rate must lie in [0, 1), got {text}")
    return value


def idle_threads() -> int:
    """CPU threads worth using now: the CPUs this process may use less the 1-minute load average
    (threads beyond the idle CPUs only wait on each other: on a 2-core machine at load 7 the
    default 2 threads took 4 min of CPU where 1 took 47 s), at most torch's default, at least 1."""
    import os

    import torch

    from probsft.validate.train import usable_cpus

    cpus = usable_cpus()
    try:
        load = os.getloadavg()[0]
    except OSError:                     # not available on this platform
        load = 0.0
    return max(1, min(torch.get_num_threads(), int(cpus - load + 0.5)))


def add_parser(sub):
    p = sub.add_parser("recommend", help="which objective for this model and data: a dry run "
                                         "(probe + theory + measured dose-response)")
    p.add_argument("--model", required=True, help="hub name or local path of a causal LM")
    p.add_argument("--data", required=True, help="SFT JSONL (prompt/response or messages)")
    p.add_argument("--noise", type=_noise, default=0.0,
                   help="assumed label-noise rate E in [0, 1) (default 0: clean)")
    p.add_argument("--supervision", default="token", choices=["token", "answer", "plausible"],
                   help="noise kind to look up in the measured results when --noise > 0")
    p.add_argument("--optimizer", default="adamw", choices=["adamw", "sgd"])
    p.add_argument("--sample-tokens", type=positive_int, default=100_000,
                   help="response tokens to probe (default 100000)")
    p.add_argument("--curve", nargs="+", metavar="FILE",
                   help="the measured curve: a shipped one by name (measured: the registered "
                        "grids, each position a different task; dial: the within-task dial), "
                        "a curve file (.json, `python -m "
                        "probsft.continuum.curve`) or paired.csv file(s) of the continuum "
                        "experiment, pooled with positions tagged by folder (slower: the kernel "
                        "width is chosen now); default: the curve shipped with probsft "
                        "(data/curves/measured.json, built from the registered grids)")
    p.add_argument("--rule", choices=["band", "delta"], default="band",
                   help="how measured results pick: band (default: the objective most often "
                        "within the 2-point band of each position's best) or delta (largest "
                        "smoothed gain over NLL beyond the margin, else nll)")
    p.add_argument("--theory-only", action="store_true", help="ignore the measured curve")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="sequences per forward pass (default 64; lower it for large models)")
    p.add_argument("--max-length", type=positive_int, default=1024)
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads for torch (default: the CPUs not busy now, from the "
                        "1-minute load average, at most torch's default; at least 1)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="print the result as JSON (or write it to FILE, atomically)")
    p.add_argument("--plot", metavar="STEM",
                   help="also save the result as STEM.json and draw the measured curve around this "
                        "data's p into STEM.png and STEM.svg (from the saved JSON)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from probsft.files import output_file
    from probsft.continuum.recommend import recommend
    from probsft.continuum.recommend_text import format_report

    if args.json and args.json != "-":
        output_file(args.json, "--json")             # before the work, not after it
    if args.plot:
        output_file(f"{args.plot}.json", "--plot")
    torch.set_num_threads(args.threads or idle_threads())

    out = recommend(args.model, args.data, noise=args.noise, sample_tokens=args.sample_tokens,
                    device=args.device, curve=False if args.theory_only else args.curve,
                    supervision=args.supervision, optimizer=args.optimizer,
                    batch_size=args.batch_size, max_length=args.max_length,
                    progress=args.progress, rule=args.rule)
    emit(out, format_report(out), args.json)
    if args.plot:
        from probsft.figures.recommend import draw
        from probsft.files import atomic_write_json

        saved = atomic_write_json(f"{args.plot}.json", out)      # results first, then the picture
        for path in draw(saved, args.plot):
            print(f"wrote {path}")
    return 0
