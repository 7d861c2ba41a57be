"""The validation tests' tiny fixtures (character tokenizer, 2-layer Llama, SFT data), shared."""

from tests.validate.conftest import _one_thread, jsonl, records, saved_model, tok  # noqa: F401
