"""axolotl plugin: the objective through transformers' ``compute_loss_func`` (probsft.integrations.hf_path).

In the axolotl YAML:

    plugins:
      - probsft.integrations.axolotl_plugin.ProbsftPlugin
    probsft_spec: "-p"

axolotl imports this module itself (it alone imports axolotl at import time; ``import probsft``
never does). ``register`` runs while axolotl loads the config, so a missing or bad spec stops
axolotl there with probsft's error line; ``post_trainer_create`` sets
``trainer.compute_loss_func`` to probsft.validate.hf's ``trainer_loss(spec)`` with the scaling
axolotl's own cross-entropy has under gradient accumulation: sum f(p) / num_items_in_batch when the
trainer passes the model ``num_items_in_batch``, else (:func:`per_micro_batch`) each micro-batch's
mean / the accumulation steps; and it adds the train/nll log callback.
"""

from __future__ import annotations

import sys

from axolotl.integrations.base import BasePlugin
from pydantic import BaseModel

from probsft.errors import UserError
from probsft.integrations.hf_path import CONFIG_KEY, spec_from_config
from probsft.validate.hf import trainer_loss


class ProbsftArgs(BaseModel):
    """The axolotl config key this plugin adds."""

    probsft_spec: str | None = None


class ProbsftPlugin(BasePlugin):
    """Sets the trainer's ``compute_loss_func`` to the objective ``probsft_spec``."""

    def get_input_args(self):
        return "probsft.integrations.axolotl_plugin.ProbsftArgs"

    def register(self, cfg):
        try:
            trainer_loss(spec_from_config(dict(cfg)))
        except UserError as err:
            sys.exit(f"probsft: error: {err}")

    def post_trainer_create(self, cfg, trainer):
        loss = trainer_loss(spec_from_config({CONFIG_KEY: cfg.get(CONFIG_KEY)}))
        trainer.compute_loss_func = (loss if trainer.model_accepts_loss_kwargs
                                     else per_micro_batch(loss, trainer.args.gradient_accumulation_steps))
        trainer.add_callback(loss.log_callback)


def per_micro_batch(loss, accumulation_steps: int):
    """axolotl's own scaling where it sets ``model_accepts_loss_kwargs = False`` (every model whose
    ``forward`` does not name ``num_items_in_batch``, Llama and Qwen2 included): its cross-entropy
    is then each micro-batch's token mean, divided by the accumulation steps by ``Trainer``, not
    sum / num_items_in_batch. ``Trainer`` skips that division for a ``compute_loss_func``, so it is
    done here: loss = (sum_{t in micro-batch} f(p_t) / #counted) / accumulation_steps."""

    def compute_loss_func(outputs, labels, num_items_in_batch=None):
        return loss(outputs, labels, None) / accumulation_steps

    return compute_loss_func
