"""The objective inside Hugging Face ``Trainer`` and TRL ``SFTTrainer``: one plug-in point each.

Both call the same function, :func:`causal_lm_loss`, which is the objective's own torch loss
(``probsft.objective(spec).loss``, closed-form backward) after the causal shift:

    loss = sum_{t counted} f(p_t) / num_items_in_batch       (or / #counted when it is None)

* HF ``Trainer`` (transformers 5.x): ``Trainer(..., compute_loss_func=trainer_loss(spec))``. The
  Trainer calls ``compute_loss_func(outputs, labels, num_items_in_batch=...)``, where
  ``num_items_in_batch`` is the number of non-ignored *shifted* labels over all the micro-batches of
  the optimizer step (and over all ranks with ``average_tokens_across_devices``, the default); it then
  skips its own division by the accumulation steps. So the accumulated gradient is the token mean
  over the global batch, as in our runner.
* TRL ``SFTTrainer`` (1.x deprecates ``compute_loss_func`` for SFT; it recommends subclassing and
  overriding ``compute_loss``): :func:`objective_sft_trainer` returns such a subclass. Its
  ``compute_loss`` runs one forward for the logits, applies :func:`causal_lm_loss`, and scales by
  the number of processes exactly as TRL does for ``average_tokens_across_devices``. With
  ``fused_lm_head=True`` it instead takes TRL's fused LM head's per-token log-probs (the logits are
  never materialised) and applies f through :func:`logprob_token_values`, whose gradient in log p is
  -s_f(p): the same Lemma 3.1 gradient on the logits.

Logs: next to the loss, both hooks report ``train/nll`` and ``train/wshare_p<0.1`` ... (the NLL of
the same tokens and the share of the gradient weight W_f by p bucket, probsft.validate.logstats),
averaged over the logging window: the TRL subclass in its ``log``; with ``Trainer`` pass
``callbacks=[loss_func.log_callback]`` (they then land in ``trainer.state.log_history``).

One difference from our runner, by construction of ``num_items_in_batch``: Hugging Face counts
*valid* tokens, so a thresholded objective (``nll@p>=0.2``) is divided by the valid-token count
there, while our runner and the authors divide by the tokens inside the threshold.

    >>> trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator,
    ...                   compute_loss_func=trainer_loss("-p"))
    >>> trainer = objective_sft_trainer("-p")(model=model, args=SFTConfig(...), train_dataset=ds)
"""

from __future__ import annotations

import torch

import probsft
from probsft.theory.losses import (IGNORE_INDEX, reduce_tokens, shift_for_causal_lm, token_terms,
                                   token_values_and_terms)
from probsft.validate.logstats import log_terms, summarise


class LogAccumulator:
    """Device-side sums of probsft.validate.logstats terms over the micro-batches since the last
    log; ``pop()`` reads them once (one host sync per log, none per step) and starts again."""

    def __init__(self):
        self.terms = None

    def add(self, terms):
        self.terms = terms if self.terms is None else self.terms + terms

    def pop(self) -> dict:
        if self.terms is None:
            return {}
        out, self.terms = summarise(self.terms), None
        return out


def causal_lm_loss(obj, logits, labels, num_items_in_batch=None, logs: LogAccumulator | None = None):
    """f-loss of causal-LM logits [B, T, V] and unshifted labels [B, T] (prompt/pad = -100):
    sum of f(p) over counted tokens / num_items_in_batch (or / #counted, as ``obj.loss``'s mean).
    ``logs``: also add the step's NLL and W_f-by-p sums there (from the same per-token tensors)."""
    lg, y = shift_for_causal_lm(logits, labels)                     # [B, T-1, V], [B, T-1]
    values, counted, logp, weight = token_values_and_terms(obj, lg, y, IGNORE_INDEX)
    if logs is not None:
        logs.add(log_terms(logp, weight, y != IGNORE_INDEX))
    if num_items_in_batch is None:
        return reduce_tokens(values, counted, "mean")
    return reduce_tokens(values, counted, "sum", num_items_in_batch)


def _log_callback(acc: LogAccumulator):
    """A TrainerCallback adding train/nll and train/wshare_* to each training log of the Trainer
    (its ``log_history``, and the ``logs`` dict the callbacks after it see)."""
    from transformers import TrainerCallback

    class ObjectiveLogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is None or "loss" not in logs:
                return
            extra = acc.pop()
            logs.update(extra)
            if state.log_history:
                state.log_history[-1].update(extra)

    return ObjectiveLogCallback()


def hook_objective(spec, needs_logits: bool = True):
    """The objective for a hook, refusing (one clear error) what the hook cannot compute.

    A probe-set objective (``alpha(auto)``, ``Q<pct>``) must be resolved first, e.g.
    ``probsft.objective("alpha(auto)").resolve(token_probs(model, examples, pad_id))``; an objective
    with token statistics (``deft``) needs the whole next-token distribution, i.e. the logits."""
    obj = probsft.objective(spec)
    if obj.needs_reference:
        raise probsft.SpecError(
            f"{obj.spec} anchors to the base model: it needs the base model's logits on every batch "
            "(obj.loss(logits, labels, ref_logits=...)), which this hook does not have")
    if obj.needs_probe:
        raise probsft.SpecError(
            f"{obj.spec} is set from the base model's probe: pass "
            f"probsft.objective({obj.spec!r}).resolve(token_probs(model, examples, pad_id)) "
            "(probsft.validate.probe.token_probs) to the hook instead of the spec")
    if obj.token_stats and not needs_logits:
        raise probsft.SpecError(
            f"{obj.spec} needs {', '.join(obj.token_stats)} of the whole next-token distribution, "
            "which TRL's fused LM head does not return (only log p): use fused_lm_head=False")
    return obj


def trainer_loss(spec):
    """A ``compute_loss_func`` for transformers' ``Trainer``: (outputs, labels, num_items_in_batch)."""
    obj = hook_objective(spec)

    logs = LogAccumulator()

    def compute_loss_func(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        return causal_lm_loss(obj, logits, labels, num_items_in_batch,
                              logs if torch.is_grad_enabled() else None)

    compute_loss_func.objective = obj
    compute_loss_func.logs = logs
    compute_loss_func.log_callback = _log_callback(logs)
    return compute_loss_func


def logprob_token_values(obj, logp, mask):
    """f(p)·1{counted} from per-token log p [...] (no logits), with d/d log p = -s_f(p)·1{counted}.

    Through d log p / dz = e_y - q this is Lemma 3.1's gradient s_f(p)(q - e_y) on the logits, for
    every objective (DFT's stop-gradient weight included). Returns (values, counted), shape of logp.
    """
    values, counted, _ = _logprob_terms(obj, logp, mask)
    return values, counted


def _logprob_terms(obj, logp, mask):
    """:func:`logprob_token_values` plus s_f(p)·1{counted} (detached), for the training logs."""
    with torch.no_grad():
        counted, f, s = token_terms(obj, logp, mask)          # the loss path's own f, s and mask
    return f - s * (logp - logp.detach()), counted, s


def objective_sft_trainer(spec, fused_lm_head: bool = False):
    """A ``trl.SFTTrainer`` subclass whose ``compute_loss`` is the objective ``spec`` (TRL 1.x).

    ``fused_lm_head=True`` uses TRL's fused LM head (per-token log-probs, no [B, T, V] logits) and
    :func:`logprob_token_values`; otherwise one ordinary forward and :func:`causal_lm_loss`.
    """
    from trl import SFTTrainer

    obj = hook_objective(spec, needs_logits=not fused_lm_head)

    class ObjectiveSFTTrainer(SFTTrainer):
        objective = obj

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = dict(inputs)
            labels = inputs.pop("labels")
            if not hasattr(self, "_objective_logs"):
                self._objective_logs = LogAccumulator()
            logs = self._objective_logs if model.training else None
            if fused_lm_head:
                outputs = model(**inputs, labels=labels, use_cache=False, fused_lm_head=True)
                logp, mask = outputs.log_probs.float(), outputs.label_mask.bool()
                values, counted, s = _logprob_terms(self.objective, logp, mask)
                if logs is not None:
                    logs.add(log_terms(logp.detach(), s, mask))
                loss = reduce_tokens(values, counted, "mean", num_items_in_batch)
            else:
                outputs = model(**inputs, use_cache=False)
                loss = causal_lm_loss(self.objective, outputs.logits, labels, num_items_in_batch,
                                      logs)
            # Trainer divides by the accumulation steps unless the loss is already a global mean.
            self.loss_is_scaled_for_ga = num_items_in_batch is not None
            # As TRL/Trainer: num_items_in_batch counts every rank's tokens and DDP averages ranks.
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            """Adds train/nll and train/wshare_* (read once per log) to the training logs."""
            if "loss" in logs and hasattr(self, "_objective_logs"):
                logs.update(self._objective_logs.pop())
            return super().log(logs, *args, **kwargs)

    ObjectiveSFTTrainer.__name__ = ObjectiveSFTTrainer.__qualname__ = "ObjectiveSFTTrainer"
    return ObjectiveSFTTrainer
