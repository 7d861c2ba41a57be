"""probsft inside the SFT frameworks people already run: one small adapter module per framework.

    probsft.integrations.swift_loss    ms-swift loss plugin (``--loss_type probsft``)
    probsft.integrations.verl_loss     a loss with verl's SFT loss signature
    probsft.integrations.hf_path       LLaMA-Factory through HF ``compute_loss_func`` (launcher)
    probsft.integrations.axolotl_plugin  axolotl plugin, HF ``compute_loss_func`` too
    probsft.integrations.setup_check   the three-step check behind ``probsft check-setup``
    probsft.integrations.check_*       its runner for each framework

HF ``Trainer`` and TRL keep their hooks in probsft.validate.hf. Each adapter imports its framework
lazily (inside a function), so ``import probsft`` never needs one (axolotl_plugin, which only axolotl
imports, imports axolotl at the top). Usage: docs/integrations.md.
"""

SPEC_ENV = "PROBSFT_SPEC"    # the spec for adapters a framework loads by name, without arguments
