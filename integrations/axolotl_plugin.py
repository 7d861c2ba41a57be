"""axolotl plugin: the objective through transformers' ``compute_loss_func`` (probsft.integrations.hf_path).

In the axolotl YAML:

    plugins:
      - probsft.integrations.axolotl_plugin.ProbsftPlugin
    probsft_spec: "-p"

axolotl imports this module itself (it alone imports axolotl at import time; ``import probsft``
never does). ``register`` runs while axolotl loads the config, so a missing or bad spec stops
axolotl there with probsft's one-line error; ``post_trainer_create`` sets
``trainer.compute_loss_func = probsft.validate.hf.trainer_loss(spec)`` (sum f(p) /
num_items_in_batch, the HF accumulation scaling) and adds its train/nll log callback.
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
        trainer.compute_loss_func = loss
        trainer.add_callback(loss.log_callback)
