"""Two CPU processes (gloo, DDP) on a global batch give the loss and gradients of one process."""

import os

import pytest
import torch
import torch.multiprocessing as mp

import probsft
from probsft.validate.accumulate import accumulate_gradients
from probsft.validate.data import tokenize_sft
from probsft.validate.train import FinetuneConfig, finetune, micro_batches_for_step
from tests.validate.conftest import assert_grads_close

SPEC = "p@p>=0.2"          # thresholded: the counted-token total must be all-reduced


def _setup():
    from probsft.validate.tiny import build_char_tokenizer
    from tests.validate.conftest import CHARS, make_model, make_records

    tok = build_char_tokenizer(CHARS)
    return tok, tokenize_sft(make_records(16, seed=2), tok, 64), lambda: make_model(tok, spread=40.0)


def _cfg(world):
    # global batch 8 either way: 2 ranks x 2 micro-batches x 2, or 1 rank x 4 micro-batches x 2
    return FinetuneConfig(model="tiny", data="-", objective=SPEC, batch_size=2,
                          grad_accum=4 // world, max_steps=2, lr=1e-3, device="cpu")


def _run(model, tok, examples, world):
    """The runner's per-step records and the gradients each optimizer step used."""
    from tests.validate.conftest import optimizer_step_gradients

    records = []
    with optimizer_step_gradients() as steps:
        finetune(_cfg(world), model, tok, progress=False, examples=examples,
                 callback=lambda step, record: records.append(record))
    return {"records": records, "step_grads": steps}


def join_ranks(rank, world):
    """In a spawned worker: the torch.distributed environment of ``spawn_ranks``, one thread."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["PROBSFT_TEST_PORT"])
    import sys
    sys.path.insert(0, os.getcwd())
    torch.set_num_threads(1)


def spawn_ranks(worker, tmp_path, world=2) -> list[dict]:
    """Run ``worker(rank, world, tmp)`` on ``world`` processes (a free local port); their saved
    ``rank<r>.pt`` results."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["PROBSFT_TEST_PORT"] = str(s.getsockname()[1])
    mp.spawn(worker, args=(world, str(tmp_path)), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]


def one_process_step():
    """(tok, examples, new_model, stats, grads, grad scale) of one process on the global batch."""
    tok, examples, new_model = _setup()
    model = new_model()
    stats = accumulate_gradients(model, micro_batches_for_step(examples, 0, _cfg(1), 0, 1,
                                                               tok.pad_token_id),
                                 probsft.objective(SPEC))
    ref = [p.grad for p in model.parameters()]
    return tok, examples, new_model, stats, ref, max(float(g.abs().max()) for g in ref)


def _worker(rank, world, tmp):
    join_ranks(rank, world)
    import torch.distributed as dist

    tok, examples, new_model = _setup()
    dist.init_process_group("gloo", rank=rank, world_size=world)
    model = torch.nn.parallel.DistributedDataParallel(new_model())
    batches = micro_batches_for_step(examples, 0, _cfg(world), rank, world, tok.pad_token_id)
    stats = accumulate_gradients(model, batches, probsft.objective(SPEC))
    grads = [p.grad.clone() for p in model.module.parameters()]
    runner = _run(new_model(), tok, examples, world)          # the runner itself, under DDP
    torch.save({"stats": stats, "grads": grads, **runner}, f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    ranks = spawn_ranks(_worker, tmp_path)
    tok, examples, new_model, stats, ref, scale = one_process_step()
    assert 0 < stats.counted < stats.valid
    for r in ranks:
        assert r["stats"].counted == stats.counted and r["stats"].valid == stats.valid
        assert r["stats"].loss == pytest.approx(stats.loss, rel=1e-6)
        for g, want in zip(r["grads"], ref):
            torch.testing.assert_close(g, want, rtol=1e-5, atol=1e-6 * scale)

    # The runner: the first step's gradient (identical weights on entry) matches one process. Weights
    # after AdamW steps are not compared: AdamW's first update is lr·sign(g), so gradient entries
    # near 0 that round differently in a different reduction order move a weight by a whole lr.
    one = _run(new_model(), tok, examples, 1)
    first = one["records"][0]
    for r in ranks:
        assert len(r["step_grads"]) == len(one["step_grads"]) == 2
        assert r["records"][0]["train/loss"] == pytest.approx(first["train/loss"], rel=1e-6)
        assert r["records"][0]["train/counted_tokens"] == first["train/counted_tokens"]
        # the second step takes the same global batch (its valid-token count is pure data)
        assert r["records"][1]["train/valid_tokens"] == one["records"][1]["train/valid_tokens"]
        assert_grads_close(r["step_grads"][0], one["step_grads"][0], rtol=1e-4, atol_scale=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(*(r["step_grads"][0] for r in ranks)))
