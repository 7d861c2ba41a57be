"""probsft.validate: real causal-LM fine-tunes with any objective (see the modules for details)."""
