"""LLaMA-Factory and axolotl through transformers' ``Trainer(compute_loss_func=...)``.

Both frameworks train SFT with a subclass of transformers' ``Trainer``, so the objective enters at
the one point probsft.validate.hf already serves: ``compute_loss_func = trainer_loss(spec)``, i.e.

    loss = sum_{t counted} f(p_t) / num_items_in_batch

with ``num_items_in_batch`` the valid shifted labels of the whole optimizer step (all micro-batches
and ranks); ``Trainer`` then skips its division by the accumulation steps. ``nll`` is therefore the
framework's own cross-entropy, under gradient accumulation too. Neither framework has a config key
for a custom ``compute_loss_func``; this module supplies the missing piece for each:

* LLaMA-Factory (0.9.x): add ``probsft_spec: "-p"`` to the training YAML and run
  ``python -m probsft.integrations.hf_path train.yaml [key=value ...]`` instead of
  ``llamafactory-cli train train.yaml``. :func:`llamafactory_main` reads the YAML as LLaMA-Factory
  does, checks and removes ``probsft_spec`` (a bad spec exits with one line before any model is
  loaded), swaps the SFT workflow's trainer class for :func:`llamafactory_trainer_class` and calls
  ``llamafactory.train.tuner.run_exp``. Under ``torchrun -m probsft.integrations.hf_path ...`` each
  rank does the same. (``llamafactory-cli`` itself would re-launch ``torchrun`` on its own script
  for several devices, which would not carry the swap.)
* axolotl: ``plugins: [probsft.integrations.axolotl_plugin.ProbsftPlugin]`` and
  ``probsft_spec: "-p"`` in the axolotl YAML (probsft.integrations.axolotl_plugin; where axolotl
  keeps ``num_items_in_batch`` from the model, its CE and so the plugin's loss are per micro-batch).
Both refuse the frameworks' own loss replacements (LLaMA-Factory ``use_dft_loss`` / ``use_eaft_loss``
/ ``use_asft_loss``) instead of silently overriding one with the other.
"""

from __future__ import annotations

import os
import sys

from probsft.errors import ConfigError, UserError
from probsft.integrations import SPEC_ENV
from probsft.validate.hf import trainer_loss

CONFIG_KEY = "probsft_spec"
LLAMAFACTORY_OWN_LOSSES = ("use_dft_loss", "use_eaft_loss", "use_asft_loss")


def spec_from_config(config: dict, environ=os.environ):
    """The spec under ``probsft_spec`` in a framework config (removed from it), else $PROBSFT_SPEC."""
    spec = config.pop(CONFIG_KEY, None) or environ.get(SPEC_ENV)
    if not spec:
        raise ConfigError(f"no objective: add `{CONFIG_KEY}: \"-p\"` (any probsft spec) to the "
                          f"config or set {SPEC_ENV}")
    return str(spec)


def llamafactory_trainer_class(spec):
    """LLaMA-Factory's ``CustomSeq2SeqTrainer`` with ``compute_loss_func = trainer_loss(spec)``."""
    trainer_loss(spec)            # check the spec now, not when the trainer is built
    from llamafactory.train.sft.trainer import CustomSeq2SeqTrainer

    class ProbsftSeq2SeqTrainer(CustomSeq2SeqTrainer):
        def __init__(self, finetuning_args, *args, **kwargs):
            own = [flag for flag in LLAMAFACTORY_OWN_LOSSES if getattr(finetuning_args, flag, False)]
            if own:
                raise ConfigError(f"{', '.join(own)} replaces the loss; drop it when using "
                                  f"{CONFIG_KEY}")
            super().__init__(finetuning_args, *args, **kwargs)
            self.compute_loss_func = trainer_loss(spec)
            self.add_callback(self.compute_loss_func.log_callback)

    ProbsftSeq2SeqTrainer.__name__ = ProbsftSeq2SeqTrainer.__qualname__ = "ProbsftSeq2SeqTrainer"
    return ProbsftSeq2SeqTrainer


def llamafactory_main(argv=None, environ=os.environ):
    """``llamafactory-cli train`` with the objective of the YAML's ``probsft_spec``."""
    from llamafactory.hparams.parser import read_args
    from llamafactory.train import tuner
    from llamafactory.train.sft import workflow

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = read_args()
    if not isinstance(args, dict):
        sys.exit("probsft: error: pass LLaMA-Factory's training YAML (or JSON) as the first argument")
    try:
        spec = spec_from_config(args, environ)
        workflow.CustomSeq2SeqTrainer = llamafactory_trainer_class(spec)   # run_sft's name for it
    except UserError as err:
        sys.exit(f"probsft: error: {err}")
    tuner.run_exp(args)


if __name__ == "__main__":
    llamafactory_main()
