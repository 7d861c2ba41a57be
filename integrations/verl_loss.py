"""verl (>= 0.7) SFT: a loss with the signature of ``verl.workers.utils.losses.sft_loss``.

verl's engine-based SFT trainer (``verl.trainer.sft_trainer``, FSDP/FSDP2 engine) calls its loss
per micro-batch as ``loss_fn(model_output=..., data=micro_batch, dp_group=...)`` and back-propagates
the returned ``(loss, metrics)`` straight away (no division by the number of micro-batches). The
engine gives only per-token log-probs ``model_output["log_probs"]`` (no logits), and puts in ``data``
the token count of the *whole* global batch over all data-parallel ranks (``batch_num_tokens``) and
``dp_size``. verl's own loss is

    sft_loss = -sum_{t in mask} log p_t / batch_num_tokens * dp_size

(times dp_size because FSDP averages the ranks' gradients). :func:`sft_loss_fn` returns the same
with f in place of -log p:

    loss = sum_{t counted} f(p_t) / batch_num_tokens * dp_size

through probsft.validate.hf's :func:`logprob_token_values` (value f(p), gradient -s_f(p) in log p,
i.e. Lemma 3.1's s_f(p)(q - e_y) on the logits). So ``nll`` is verl's ``sft_loss`` and the gradient
over an optimizer step is the token mean of the global batch. Token masks follow verl: with
``pad_mode`` no_padding (nested tensors) the ``loss_mask`` is rolled left by one to align with the
log-probs; otherwise ``response_mask``. Objectives with token statistics of the whole next-token
distribution (``deft``) need logits and are refused; probe-set specs must be resolved first.

Run verl's trainer with it (the spec from $PROBSFT_SPEC, checked before verl starts):

    PROBSFT_SPEC=-p torchrun --nproc_per_node=8 -m probsft.integrations.verl_loss <verl hydra overrides>
"""

from __future__ import annotations

import os
import sys

from probsft.errors import ConfigError, SpecError, UserError
from probsft.integrations import SPEC_ENV
from probsft.validate.hf import hook_objective, logprob_token_values


def token_logp_and_mask(model_output, data):
    """verl's per-token log p and loss mask of a micro-batch, aligned (as verl's ``sft_loss``)."""
    import torch
    from verl.utils import tensordict_utils as tu
    from verl.utils.dataset.dataset_utils import DatasetPadMode

    log_prob = model_output["log_probs"]
    pad_mode = tu.get_non_tensor_data(data=data, key="pad_mode", default=DatasetPadMode.NO_PADDING)
    if pad_mode == DatasetPadMode.NO_PADDING:
        # nested [bsz, j]: log_prob[i] scores token i+1, so the loss mask is rolled left by one
        mask = torch.roll(data["loss_mask"].values(), shifts=-1, dims=0)
        return log_prob.values(), mask.bool()
    return log_prob, data["response_mask"].bool()


def sft_loss_fn(spec):
    """``loss_fn(config=None, model_output=..., data=..., dp_group=None) -> (loss, metrics)`` for
    the objective ``spec`` (checked now), a drop-in for verl's ``sft_loss``."""
    obj = hook_objective(spec)
    if obj.token_stats:
        raise SpecError(f"{obj.spec} needs {', '.join(obj.token_stats)} of the whole next-token "
                        "distribution, but verl's engine hands the loss only log p of the label")

    def probsft_sft_loss(config=None, model_output=None, data=None, dp_group=None):
        logp, mask = token_logp_and_mask(model_output, data)
        values, _ = logprob_token_values(obj, logp.float(), mask)
        loss = values.sum() / data["batch_num_tokens"] * data["dp_size"]
        return loss, {}

    probsft_sft_loss.objective = obj
    return probsft_sft_loss


def trainer_class(spec):
    """verl's ``SFTTrainer`` with its loss replaced by :func:`sft_loss_fn` (``spec``)."""
    loss_fn = sft_loss_fn(spec)
    from verl.trainer.sft_trainer import SFTTrainer

    class ProbsftSFTTrainer(SFTTrainer):
        def _build_engine(self):
            super()._build_engine()
            self.loss_fn = loss_fn
            self.training_client.set_loss_fn(loss_fn=loss_fn)

    ProbsftSFTTrainer.__name__ = ProbsftSFTTrainer.__qualname__ = "ProbsftSFTTrainer"
    return ProbsftSFTTrainer


def main(environ=os.environ):
    """verl's SFT entry point (hydra overrides on the command line) with the $PROBSFT_SPEC loss;
    a missing or bad spec exits with one line before verl loads anything."""
    spec = environ.get(SPEC_ENV)
    try:
        if not spec:
            raise ConfigError(f"set {SPEC_ENV} to the objective spec (e.g. {SPEC_ENV}=-p)")
        cls = trainer_class(spec)
    except UserError as err:
        sys.exit(f"probsft: error: {err}")
    from verl.trainer import sft_trainer

    sft_trainer.SFTTrainer = cls          # run_sft builds the trainer by this module-level name
    sft_trainer.main()


if __name__ == "__main__":
    main()
