"""The fine-tune section of benchmarks/gpu_bench.py: probsft's runner vs Hugging Face's Trainer,
tokens/s and peak memory, on one causal LM trained in bf16 (CUDA) on synthetic SFT sequences.

Sections, interleaved ``repeats`` times (the best repeat is kept): ``hf-trainer``
(transformers.Trainer with the model's own cross-entropy, same model, batch and steps), then the
runner (``probsft.validate.train.finetune``) with ``nll``, ``p`` (the paper's -p) and ``p`` through
the fused linear+f(p) loss (``--fused``). Tokens/s counts every non-padding input token, after 2
warm-up steps. Each section is guarded: a failure is recorded and the next one runs.

The model (``--model`` of gpu_bench.py): a folder with a Hugging Face ``config.json`` (weights
loaded when the folder has them, else random init from the config; the GPU default is
:data:`MEDIUM`, the shipped 8.9M backbone of issue 24) or a preset name of :data:`PRESETS` -- a
Llama built from its config with random weights (no download). Sequences are cut to the model's
``max_position_embeddings`` (the medium's is 256).
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import torch

MEDIUM = str(Path(__file__).resolve().parents[1] / "models" / "backbone_medium")
PRESETS = {   # Llama shapes built from a config (random init); ~params with untied embeddings
    "llama-13m": dict(hidden=256, layers=4, heads=4, vocab=16384),     # ~13M
    "llama-200m": dict(hidden=1024, layers=8, heads=16, vocab=32768),  # ~200M, the 2026-11-27 run
    "tiny": dict(hidden=64, layers=2, heads=4, vocab=512),             # the CPU dry run
}
RUN = {   # seq_len, micro_batch, grad_accum, optimizer steps
    "cuda": dict(seq=512, batch=8, accum=2, steps=30),
    "cpu": dict(seq=64, batch=4, accum=2, steps=4),
}


def build_model(model, device):
    """(model, vocab size) for a preset name or a folder with config.json."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    folder = Path(model)
    if model not in PRESETS:
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"--model {model!r}: neither a preset ({', '.join(PRESETS)}) "
                                    "nor a folder with config.json")
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
            net = AutoModelForCausalLM.from_pretrained(folder).to(device)
        else:
            with torch.device(device):
                net = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
        return net, net.config.vocab_size
    p = PRESETS[model]
    cfg = LlamaConfig(vocab_size=p["vocab"], hidden_size=p["hidden"], num_hidden_layers=p["layers"],
                      num_attention_heads=p["heads"], num_key_value_heads=p["heads"],
                      intermediate_size=4 * p["hidden"], max_position_embeddings=1024,
                      pad_token_id=0, eos_token_id=2, tie_word_embeddings=False,
                      attn_implementation="sdpa" if device == "cuda" else "eager")
    with torch.device(device):                      # initialise on the GPU: seconds faster per build
        return LlamaForCausalLM(cfg), p["vocab"]


def synthetic_examples(vocab, r, n, seed=0):
    """n sequences of r["seq"] tokens: the first quarter is the prompt (labels -100), the rest
    supervised."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, vocab, (n, r["seq"]), generator=g)
    cut = r["seq"] // 4
    return [{"input_ids": row, "labels": [-100] * cut + row[cut:]} for row in ids.tolist()]


class _Pad:
    """The runner needs only ``pad_token_id`` from a tokenizer when examples are pre-tokenised."""

    pad_token_id = 0


def _now(device):
    """Wall clock after the device's queued work is done."""
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _reset_peak(device):
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device):
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def _tokens_per_s(times, r):
    """Steady-state tokens/s from per-step end times, skipping up to two warm-up steps."""
    warm = min(2, len(times) - 1)
    return r["batch"] * r["accum"] * r["seq"] * (len(times) - 1 - warm) / (times[-1] - times[warm])


def _row(name, spec, fused, net, times, r, device, loss, wall):
    return {"section": name, "objective": spec, "fused": fused,
            "params_M": sum(p.numel() for p in net.parameters()) / 1e6,
            "tokens_per_s": _tokens_per_s(times, r), "peak_mem_GiB": _peak_gib(device),
            "final_loss": loss, "wall_s": wall}


def run_runner(name, spec, fused, model, r, device):
    """probsft's runner on ``model`` for r["steps"] optimizer steps."""
    from probsft.validate.train import FinetuneConfig, finetune

    net, vocab = build_model(model, device)
    examples = synthetic_examples(vocab, r, r["batch"] * r["accum"] * r["steps"])
    cfg = FinetuneConfig(model="local-llama", data="-", objective=spec, batch_size=r["batch"],
                         grad_accum=r["accum"], max_steps=r["steps"], lr=5e-5, device=device,
                         bf16=device == "cuda", fused=fused, save_model=False)
    times = []
    _reset_peak(device)
    start = time.perf_counter()
    metrics = finetune(cfg, net, _Pad(), progress=False, examples=examples,
                       callback=lambda step, record: times.append(_now(device)))
    return _row(name, spec, fused, net, times, r, device, metrics["train/loss"],
                time.perf_counter() - start)


def run_hf_trainer(name, model, r, device):
    """Baseline: transformers.Trainer with the model's own cross-entropy, same model/batch/steps."""
    import tempfile

    from transformers import Trainer, TrainerCallback, TrainingArguments

    from probsft.validate.data import collate

    net, vocab = build_model(model, device)
    examples = synthetic_examples(vocab, r, r["batch"] * r["accum"] * r["steps"])
    times = []

    class Tick(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            times.append(_now(device))

    _reset_peak(device)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=r["batch"],
                                 gradient_accumulation_steps=r["accum"], max_steps=r["steps"],
                                 learning_rate=5e-5, bf16=device == "cuda", use_cpu=device == "cpu",
                                 report_to=[], save_strategy="no", logging_strategy="no",
                                 disable_tqdm=True, remove_unused_columns=False,
                                 dataloader_drop_last=True, adam_beta2=0.95, weight_decay=0.01)
        trainer = Trainer(model=net, args=args, train_dataset=examples,
                          data_collator=lambda feats: collate(feats, 0), callbacks=[Tick()])
        start = time.perf_counter()
        out = trainer.train()
    return _row(name, "HF Trainer CE", False, net, times, r, device, out.training_loss,
                time.perf_counter() - start)


SECTIONS = (("hf-trainer", None, False), ("runner nll", "nll", False), ("runner -p", "p", False),
            ("runner -p --fused", "p", True))


def run(model, device, repeats, steps, deadline, on_row):
    """Every section ``repeats`` times, interleaved; ``on_row(row)`` after each. Sections left when
    ``deadline`` (time.monotonic()) has passed are recorded as skipped."""
    r = dict(RUN[device], **({"steps": steps} if steps else {}))
    if model not in PRESETS:                          # a folder: its positions bound the sequence
        from transformers import AutoConfig

        r["seq"] = min(r["seq"], AutoConfig.from_pretrained(model).max_position_embeddings)
    try:                                  # unmeasured: CUDA context, kernels, allocator warm-up
        run_runner("warm-up", "nll", False, model, {**r, "steps": 3}, device)
    except Exception:                                           # noqa: BLE001 - sections report it
        traceback.print_exc()
    for rep in range(repeats):
        for name, spec, fused in SECTIONS:
            row = {"section": name, "repeat": rep, "model": model, **r}
            if time.monotonic() > deadline:
                on_row({**row, "error": "skipped: section time budget spent"})
                continue
            try:
                got = run_hf_trainer(name, model, r, device) if spec is None else \
                    run_runner(name, spec, fused, model, r, device)
                row.update(got)
            except Exception as err:                            # noqa: BLE001 - survive a section
                traceback.print_exc()
                row["error"] = f"{type(err).__name__}: {err}"[:300]
            on_row(row)


def best(rows):
    """Per section, the repeat with the highest tokens/s (or its error when none ran)."""
    out = {}
    for row in rows:
        old = out.get(row["section"])
        if old is None or row.get("tokens_per_s", 0) > old.get("tokens_per_s", 0):
            out[row["section"]] = row
    return out
