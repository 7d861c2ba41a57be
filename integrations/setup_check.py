"""``probsft check-setup --framework F``: before a long job, three optimizer steps of a tiny model
inside the framework F, through probsft's adapter for F, and a verdict on three things.

1. loss     the loss the framework back-propagates for the spec equals probsft's float64 reference
            (``Objective.loss_numpy``, sum f(p) / num_items) on the same logits and labels, for
            every micro-batch: |loss - ref| <= TOL·max(1, |ref|).
2. scaling  with gradient accumulation (GA micro-batches per step) ``nll`` through the adapter
            reproduces the framework's own cross-entropy: per micro-batch to TOL (relative), and
            the weights after the steps equal those of the framework's default CE run to TOL of
            how far they moved; so the accumulation scaling (num_items_in_batch, dp_size) is the
            framework's own.
3. fused    the fused path gives the loss and gradient of the logits path: for ``trl`` TRL's fused
            LM head through the adapter (weights after the steps); elsewhere
            ``probsft.fused_linear_loss`` on the tiny model's hidden states and LM head (to TOL,
            relative), the loss to use where a framework lets you hand it hidden states.
The weights must also move with the spec (a loss that is not back-propagated fails step 1's run).

Each framework's runner (``FRAMEWORKS``: name -> "module:function") runs the framework and returns
the raw :class:`Measured` numbers; this module builds the tiny model (probsft.validate.tiny: a
character tokenizer and a 2-layer Llama, hidden 32, saved locally, no hub), judges, and prints.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import random
import string
from pathlib import Path

import torch

import probsft
from probsft.errors import ConfigError
from probsft.theory.losses import IGNORE_INDEX, shift_for_causal_lm

TOL = 1e-5
# TRL's fused LM head is compared through the weights after the steps, relative to how far they
# moved: its chunked float32 GEMMs sum in another order than the logits path (measured ~6e-6).
FUSED_WEIGHTS_TOL = 1e-4
STEPS, BATCH, GA = 3, 2, 2              # optimizer steps, micro-batch size, accumulation steps
LEARNING_RATE = 1e-2                    # plain SGD, constant: weights move by lr · gradient

FRAMEWORKS = {
    "hf": "probsft.integrations.check_hf:check_hf",
    "trl": "probsft.integrations.check_hf:check_trl",
    "llamafactory": "probsft.integrations.check_hf:check_llamafactory",
    "axolotl": "probsft.integrations.check_hf:check_axolotl",
    "swift": "probsft.integrations.check_swift:check",
    "verl": "probsft.integrations.check_verl:check",
}


@dataclasses.dataclass
class Measured:
    """What a framework run measured (relative errors; None where a step could not run)."""

    loss_err: float                 # step 1: max over micro-batches
    scaling_err: float              # step 2: max over micro-batches, adapter nll vs framework CE
    param_err: float                # step 2: max |w_nll - w_ce| / max |w_ce - w_0|
    moved: float                    # max |w_spec - w_0| after the steps
    fused_err: float | None         # step 3
    fused_what: str                 # what step 3 compared
    fused_tol: float                # its tolerance (TOL, or FUSED_WEIGHTS_TOL for weights)
    micro_batches: int              # loss calls seen with the spec
    notes: list[str] = dataclasses.field(default_factory=list)


def tiny_model_dir(workdir: Path, seed: int = 0) -> Path:
    """A character tokenizer (printable ASCII) and a random tiny Llama saved under workdir/model."""
    from probsft.validate.tiny import build_char_tokenizer, tiny_llama

    out = Path(workdir) / "model"
    if not (out / "config.json").exists():
        tok = build_char_tokenizer(string.printable)
        model = tiny_llama(len(tok), hidden_size=32, layers=2, heads=4, seed=seed)
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return out


def records(n: int = BATCH * GA * STEPS, seed: int = 0) -> list[dict]:
    """Prompt ``w`` and response ``reversed(w)``, words of 2-6 letters (lengths vary)."""
    rng = random.Random(seed)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 6))) for _ in range(n)]
    return [{"prompt": w, "response": w[::-1]} for w in words]


def load_weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(model_dir) / "model.safetensors"))


def weights_of(model) -> dict:
    return {k: v.detach().float().clone() for k, v in model.state_dict().items()}


def max_abs_diff(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in b if k in a)


def reference_loss(spec, logits, labels, num_items_in_batch=None) -> float:
    """float64 reference: sum f(p) over the shifted labels / num_items_in_batch (or the mean)."""
    lg, y = shift_for_causal_lm(logits.detach().double().cpu(), labels.cpu())
    n = None if num_items_in_batch is None else float(num_items_in_batch)
    return float(probsft.objective(spec).loss_numpy(lg.numpy(), y.numpy(), IGNORE_INDEX, "mean", n))


def rel_err(got, want) -> float:
    return abs(float(got) - float(want)) / max(1.0, abs(float(want)))


def fused_err(spec, model_dir: Path) -> float:
    """Relative gap of probsft.fused_linear_loss to the logits loss (value and hidden/weight grads)
    on one batch of the tiny model."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ids = torch.randint(4, model.config.vocab_size, (BATCH, 12), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :4] = IGNORE_INDEX
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state
    W = model.lm_head.weight.detach()
    h_shift, y = hidden[:, :-1], labels[:, 1:]
    obj = probsft.objective(spec)
    grads = []
    for fused in (False, True):
        h, w = h_shift.clone().requires_grad_(), W.clone().requires_grad_()
        loss = (probsft.fused_linear_loss(h, w, y, obj) if fused else obj.loss(h @ w.T, y))
        loss.backward()
        grads.append((loss.detach(), h.grad, w.grad))
    (l0, h0, w0), (l1, h1, w1) = grads
    return max(rel_err(l1, l0), float((h1 - h0).abs().max() / h0.abs().max().clamp_min(1e-30)),
               float((w1 - w0).abs().max() / w0.abs().max().clamp_min(1e-30)))


def judge(m: Measured) -> list[tuple[str, bool, str]]:
    """(step, ok, detail) for the three steps."""
    fused_ok = m.fused_err is not None and m.fused_err <= m.fused_tol
    return [
        ("loss", m.loss_err <= TOL and m.moved > 0 and m.micro_batches == STEPS * GA,
         f"max rel. error {m.loss_err:.1e} over {m.micro_batches} micro-batches "
         f"(expected {STEPS * GA}); weights moved by up to {m.moved:.1e}"),
        ("scaling", m.scaling_err <= TOL and m.param_err <= TOL,
         f"nll vs the framework's CE: {m.scaling_err:.1e} per micro-batch, weights after "
         f"{STEPS} steps x {GA} accumulated micro-batches {m.param_err:.1e} of their movement"),
        ("fused", fused_ok, (f"{m.fused_what}: {m.fused_err:.1e}" if m.fused_err is not None
                             else f"not run: {m.fused_what}")),
    ]


def run_check(framework: str, spec: str, workdir: Path) -> tuple[Measured, list]:
    """Runs ``framework``'s check for ``spec`` in ``workdir``; returns (measured, judged steps)."""
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; one of {', '.join(FRAMEWORKS)}")
    from probsft.validate.hf import hook_objective

    hook_objective(spec)                    # a bad spec stops here, before the framework loads
    module, func = FRAMEWORKS[framework].split(":")
    torch.manual_seed(0)
    try:
        measured = getattr(importlib.import_module(module), func)(spec, Path(workdir))
    except ModuleNotFoundError as err:        # the framework (or a module it needs) is missing
        raise ConfigError(f"check-setup --framework {framework} needs {err.name!r} installed "
                          f"(see docs/integrations.md)") from err
    return measured, judge(measured)


def report(framework: str, spec: str, measured: Measured, steps) -> str:
    lines = [f"probsft check-setup --framework {framework} --spec {spec}"]
    lines += [f"  {'ok  ' if ok else 'FAIL'} {name:8s} {detail}" for name, ok, detail in steps]
    lines += [f"  note: {n}" for n in measured.notes]
    return "\n".join(lines)


def as_json(measured: Measured, steps) -> str:
    return json.dumps({"measured": dataclasses.asdict(measured),
                       "steps": {name: ok for name, ok, _ in steps}}, default=float)
