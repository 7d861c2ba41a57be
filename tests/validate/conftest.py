"""Shared tiny fixtures for the validation tests: a character tokenizer, a 2-layer Llama, SFT data,
and a recorder of the gradients the optimizer steps with."""

import contextlib
import json
import random

import pytest
import torch

from probsft.validate.tiny import build_char_tokenizer, tiny_llama

CHARS = "abcdefghij \n>"



def make_records(n=16, seed=0):
    """Prompt 'w>' and response reversed(w), words of 2-6 letters (prompt/response lengths vary)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        w = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(2, 6)))
        out.append({"prompt": w + ">", "response": w[::-1]})
    return out


def make_model(tok, seed=0, spread=1.0, dropout=0.0):
    """Tiny Llama (hidden 32, 2 layers); ``spread`` scales lm_head so p covers (0, 1) widely;
    ``dropout`` > 0 turns on attention dropout, so training consumes the torch RNG."""
    model = tiny_llama(len(tok), hidden_size=32, layers=2, heads=4, seed=seed)
    model.lm_head.weight.data.mul_(spread)
    model.config.attention_dropout = dropout
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = dropout
    return model


@contextlib.contextmanager
def optimizer_step_gradients():
    """Records, for every optimizer step taken inside the block, the gradients it steps with
    (after accumulation and clipping): a list with one list of tensors per step, parameters in
    the optimizer's order. Gradients of one step are compared across runs and against a float64
    reference; weights after several AdamW steps are not (AdamW's first update is lr·sign(g), so a
    gradient entry near 0 flips a whole lr between CPUs that round differently)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    steps = []

    def hook(optimizer, args, kwargs):
        steps.append([p.grad.detach().clone() for group in optimizer.param_groups
                      for p in group["params"]])

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield steps
    finally:
        handle.remove()


def assert_grads_close(got, want, rtol, atol_scale):
    """Every tensor close, atol relative to the largest entry of ``want`` (gradients of different
    parameters differ by orders of magnitude, the float32 rounding error scales with the largest)."""
    scale = max(float(w.abs().max()) for w in want)
    assert scale > 0
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), w.double(), rtol=rtol, atol=atol_scale * scale)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP
    spin-waiting against other processes can slow them down a hundredfold (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tok():
    return build_char_tokenizer(CHARS)


@pytest.fixture
def records():
    return make_records()


@pytest.fixture
def jsonl(tmp_path, records):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture
def saved_model(tmp_path, tok):
    """A tiny model + tokenizer saved with save_pretrained (what --model PATH loads)."""
    path = tmp_path / "tiny"
    make_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path
