"""Tiny local models for tests, benchmarks and the embedded backbone: a character tokenizer and a
randomly initialised Llama.

No model hub is needed: the tokenizer is built with the ``tokenizers`` library (one token per
character plus ``<pad> <s> </s> <unk>``) and wrapped as a ``PreTrainedTokenizerFast``, so it saves and
loads with ``save_pretrained`` / ``AutoTokenizer.from_pretrained`` like any hub tokenizer. The model is
a ``LlamaForCausalLM`` whose random initialisation is a pure function of ``seed``.

    >>> from probsft.validate.tiny import build_char_tokenizer, tiny_llama
    >>> tok = build_char_tokenizer("abc\\n")
    >>> model = tiny_llama(len(tok), hidden_size=32, layers=2, heads=4, seed=0)
"""

from __future__ import annotations

import torch

from probsft.errors import ConfigError

SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")   # ids 0..3, then one id per character


def build_char_tokenizer(chars: str, model_max_length: int = 512):
    """A character-level ``PreTrainedTokenizerFast`` over ``chars`` (duplicates removed, order kept).

    Ids: 0 ``<pad>``, 1 ``<s>`` (bos), 2 ``</s>`` (eos), 3 ``<unk>``, then the characters in order.
    No normaliser, no pre-tokeniser and no post-processor: ``encode("ab")`` is exactly the ids of
    ``a`` and ``b`` (no BOS is added), and ``decode`` joins characters without spaces. No chat
    template, so probsft.validate.data formats pairs as prompt + response + eos.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = "".join(dict.fromkeys(chars))
    if not chars:
        raise ConfigError("build_char_tokenizer needs at least one character")
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # One "word" per character, spaces and newlines included.
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, model_max_length=model_max_length, pad_token="<pad>",
        bos_token="<s>", eos_token="</s>", unk_token="<unk>", padding_side="right")


def tiny_llama(vocab_size: int, hidden_size: int = 64, layers: int = 2, heads: int = 4,
               seed: int = 0, max_position: int = 512, intermediate_size: int | None = None):
    """A random-init ``LlamaForCausalLM`` (float32), identical for equal arguments and ``seed``.

    Shapes: embeddings [vocab_size, hidden_size], ``layers`` decoder blocks with ``heads`` attention
    heads (head dim hidden_size/heads) and an MLP of width ``intermediate_size`` (default
    4*hidden_size); untied lm_head. Uses eager attention so CPU results are reproducible.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    if hidden_size % heads:
        raise ConfigError(f"hidden_size {hidden_size} must be divisible by heads {heads}")
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads,
        intermediate_size=intermediate_size or 4 * hidden_size,
        max_position_embeddings=max_position, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False, attn_implementation="eager")
    # Seed a private generator state: the caller's global RNG is restored afterwards.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model
