"""ms-swift (>= 4.0) loss plugin: ``swift sft ... --external_plugins <plugin> --loss_type probsft``.

ms-swift looks a custom loss up by name in its registry ``swift.loss.loss_map`` (name -> a
``BaseLoss`` class built as ``cls(args, trainer)`` when the trainer is created) and calls it as
``loss(outputs, labels, num_items_in_batch=..., loss_scale=..., trainer=...)`` with the model's
logits and *unshifted* labels (-100 on prompt/pad; ms-swift rolls them by one, i.e. the usual
causal shift). This module registers one such class per spec; the loss is probsft.validate.hf's
:func:`causal_lm_loss`, the same function as the HF ``Trainer`` hook:

    loss = sum_{t counted} f(p_t) / num_items_in_batch       (or / #counted when it is None)

where ms-swift's ``num_items_in_batch`` counts the non-ignored shifted labels of the whole
optimizer step (all micro-batches, all ranks), as transformers' ``Trainer`` does; so ``nll`` is
ms-swift's own ``cross_entropy`` loss, also under gradient accumulation.

Two ways to name the spec:
  * the plugin file :mod:`probsft.integrations.swift_plugin` registers ``probsft`` with the spec in
    the environment variable ``PROBSFT_SPEC`` (``PROBSFT_SPEC=-p swift sft --external_plugins
    $(python -m probsft.integrations.swift_plugin) --loss_type probsft ...``);
  * your own plugin file calls ``register("-p", name="probsft_p")`` (several specs, several names).
A bad spec stops ms-swift while it parses its arguments (the plugin is imported there), with
probsft's one-line error. Refused at trainer creation: sequence parallelism, ``--enable_dft_loss``,
``--enable_channel_loss`` and Megatron-SWIFT; at the first step: a ``--loss_scale`` that weights
tokens (its 0/1 strategies ``default``, ``last_round``, ``all`` only choose the labels and are fine).
Probe-set specs must be resolved first.
"""

from __future__ import annotations

import os
import sys

from probsft.errors import ConfigError, UserError
from probsft.integrations import SPEC_ENV
from probsft.validate.hf import LogAccumulator, causal_lm_loss, hook_objective

NAME = "probsft"


def _refuse_unsupported(args, trainer):
    """ConfigError for ms-swift options that hand the loss something other than plain logits."""
    template = getattr(trainer, "template", None)
    if template is not None and getattr(template, "sequence_parallel_size", 1) > 1:
        raise ConfigError("probsft's ms-swift loss does not support sequence parallelism "
                          "(--sequence_parallel_size > 1)")
    for flag in ("enable_dft_loss", "enable_channel_loss"):
        if getattr(args, flag, False):
            raise ConfigError(f"--{flag} replaces the loss; drop it when using --loss_type {NAME}")


def loss_class(spec):
    """A ``swift.loss.BaseLoss`` subclass computing the objective ``spec`` (checked now)."""
    obj = hook_objective(spec)                # before the (slow) framework import
    from swift.loss import BaseLoss

    class ProbsftLoss(BaseLoss):
        objective = obj

        def __init__(self, args, trainer):
            super().__init__(args, trainer)
            if self.is_megatron:
                raise ConfigError("probsft's ms-swift loss runs with the transformers trainer, "
                                  "not Megatron-SWIFT")
            _refuse_unsupported(args, trainer)
            self.logs = LogAccumulator()

        def __call__(self, outputs, labels, *, num_items_in_batch=None, loss_scale=None, **kwargs):
            if loss_scale is not None:    # ms-swift turns 0/1 strategies into labels; weights stay
                raise ConfigError("probsft's ms-swift loss got per-token --loss_scale weights, which "
                                  "would change f; use a 0/1 strategy (default, last_round, all)")
            logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
            training = self.trainer is not None and self.trainer.model.training
            return causal_lm_loss(self.objective, logits, labels, num_items_in_batch,
                                  self.logs if training else None)

    ProbsftLoss.__name__ = ProbsftLoss.__qualname__ = "ProbsftLoss"
    return ProbsftLoss


def register(spec, name: str = NAME):
    """Registers the objective ``spec`` as ms-swift ``--loss_type name``; returns the class."""
    cls = loss_class(spec)
    from swift.loss import loss_map

    loss_map[name] = cls
    return cls


def register_from_env(environ=os.environ):
    """Registers ``probsft`` with the spec in $PROBSFT_SPEC; one-line exit on a missing/bad spec."""
    spec = environ.get(SPEC_ENV)
    try:
        if not spec:
            raise ConfigError(f"set {SPEC_ENV} to the objective spec (e.g. {SPEC_ENV}=-p) for "
                              f"--loss_type {NAME}")
        return register(spec)
    except UserError as err:
        sys.exit(f"probsft: error: {err}")
