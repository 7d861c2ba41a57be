"""`probsft backbone build [--size NAME]`: pretrain the embedded character-level Llama
(probsft.validate.backbone); an interrupted build run again into the same --out resumes after stage 1."""

from __future__ import annotations

import json

from probsft.commands import positive_int


def add_parser(sub):
    p = sub.add_parser("backbone", help="build the embedded backbone used by `probsft validate`")
    bsub = p.add_subparsers(dest="action", metavar="ACTION")
    bsub.required = True
    b = bsub.add_parser("build", help="pretrain the backbone: stage 1 (spelling), stage 2 (the dial)")
    b.add_argument("--out", default=None,
                   help="output folder (default: models/backbone in the current folder, which is "
                        "the shipped backbone when run at a checkout's root; models/backbone_SIZE "
                        "for another --size)")
    b.add_argument("--size", default="tiny",
                   help="named size (probsft.validate.backbone.SIZES): tiny (the shipped backbone, "
                        "0.83M parameters; default) or medium (8.9M, issue 24); the flags below "
                        "override its fields")
    b.add_argument("--steps", type=positive_int, default=None, help="stage-1 steps (default 700)")
    b.add_argument("--dial-steps", type=int, default=None, help="stage-2 (dial) steps (default 300)")
    b.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    b.add_argument("--threads", type=positive_int, default=None, help="torch threads (default 1)")
    b.add_argument("--stage1", default=None, help="start the dial from this stage-1 folder instead "
                   "of pretraining stage 1 again")
    b.add_argument("--save-at", nargs="+", type=int, default=(), metavar="STEP",
                   help="also save the model at these dial steps (0: before the dial) as "
                        "<out>/dial_step_<STEP>/, each with its dial probe in build.json: one "
                        "pretraining run read at several capability positions")
    b.add_argument("--no-eos", dest="eos", action="store_false",
                   help="end pretraining documents with a newline instead of </s> (the format "
                        "ablation: SFT must then teach the end-of-response token)")
    p.set_defaults(func=run)


def run(args) -> int:
    from probsft.files import locked_output
    from probsft.validate.backbone import build, size_config

    over = {k: v for k, v in (("steps", args.steps), ("seed", args.seed), ("threads", args.threads),
                              ("dial_steps", args.dial_steps)) if v is not None}
    over["eos"] = args.eos
    cfg = size_config(args.size, **over)
    folder = args.out or ("models/backbone" if args.size == "tiny" else f"models/backbone_{args.size}")
    with locked_output(folder, "--out") as out:
        record = build(cfg, out, stage1=args.stage1, save_at=args.save_at)
    print(json.dumps(record, indent=1))
    return 0
