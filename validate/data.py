"""SFT data: JSONL records -> tokenised examples with the prompt masked out, plus seeded label noise.

A record is one JSON object per line, either ``{"prompt": str, "response": str}`` or chat form
``{"messages": [{"role": ..., "content": ...}, ..., {"role": "assistant", "content": ...}]}`` (the last
message is the response). Tokenisation (:func:`tokenize_sft`):

* tokenizer with a chat template: ``ids = template(messages)``; the prompt is
  ``template(messages[:-1], add_generation_prompt=True)`` and its tokens get label -100;
* no chat template: ``ids = tok(prompt) + tok(response, no special tokens) + [eos]`` (a messages
  record uses the concatenated contents of all but the last message as the prompt).

Only response tokens are supervised: ``labels[i] = input_ids[i]`` on the response, -100 elsewhere
(the causal shift happens in the loss, probsft.theory.losses.shift_for_causal_lm). Examples longer than
``max_length`` are cut from the right; truncated and response-free examples are counted and reported,
never silently dropped; tokens the tokenizer maps to its unknown token are counted (``n_unknown``) and
warned about. A malformed line (not UTF-8, not JSON, not a record) raises UserError naming the file
and line; a UTF-8 byte-order mark is accepted.

Supervision noise (:func:`add_label_noise`), the paper's noisy-label setting, is seeded:
``unit="token"`` replaces a fraction ``noise_rate`` of response tokens by a different random token;
``unit="answer"`` replaces the response of a fraction of records by another record's response.

    >>> from probsft.validate.data import read_jsonl, tokenize_sft
    >>> examples = tokenize_sft(read_jsonl("train.jsonl"), tokenizer, max_length=512)
    >>> examples.n_truncated, examples[0]["input_ids"], examples[0]["labels"]
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from pathlib import Path

import torch

from probsft.errors import ConfigError, UserError
from probsft.theory.objective import IGNORE_INDEX


class SFTExamples(list):
    """A list of ``{"input_ids": list[int], "labels": list[int]}`` with tokenisation counts."""

    n_truncated: int = 0          # examples cut to max_length
    n_no_response: int = 0        # examples whose response was cut away entirely (all labels -100)
    n_response_tokens: int = 0    # supervised tokens in total
    n_noisy: int = 0              # tokens replaced by add_label_noise(unit="token")
    n_unknown: int = 0            # tokens the tokenizer mapped to its unknown token (<unk>)

    def summary(self) -> str:
        return (f"{len(self)} examples, {self.n_response_tokens} response tokens, "
                f"{self.n_truncated} truncated, {self.n_no_response} with no response token left")


def read_jsonl(path) -> list[dict]:
    """Read SFT records from a JSONL file; every line must be a valid record (see module docstring).

    The file must be UTF-8 (a leading byte-order mark is accepted); a line that is not valid UTF-8
    or JSON, or not a record, raises UserError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file {path} does not exist")
    records = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise UserError(f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at "
                                f"column {err.start + 1}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
            problem = _record_problem(rec)
            if problem:
                raise UserError(f"{path}:{lineno}: {problem}")
            records.append(rec)
    if not records:
        raise UserError(f"{path}: no records")
    return records


def _record_problem(rec) -> str | None:
    if not isinstance(rec, dict):
        return "a record must be a JSON object"
    if "messages" in rec:
        msgs = rec["messages"]
        if (not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in msgs)):
            return "'messages' must be a non-empty list of {role: str, content: str}"
        if msgs[-1]["role"] != "assistant":
            return "the last message must have role 'assistant' (it is the response)"
        return None
    if isinstance(rec.get("prompt"), str) and isinstance(rec.get("response"), str):
        return None
    return "a record needs string fields 'prompt' and 'response', or a 'messages' list"


def _as_messages(rec: dict) -> list[dict]:
    if "messages" in rec:
        return rec["messages"]
    return [{"role": "user", "content": rec["prompt"]},
            {"role": "assistant", "content": rec["response"]}]


def _ids(out) -> list[int]:
    """apply_chat_template returns a BatchEncoding (transformers 5) or a list of ids (4.x)."""
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def encode_pair(rec: dict, tokenizer) -> tuple[list[int], int]:
    """Token ids of the whole example and the number of leading prompt tokens."""
    if getattr(tokenizer, "chat_template", None):
        msgs = _as_messages(rec)
        prompt = _ids(tokenizer.apply_chat_template(msgs[:-1], add_generation_prompt=True))
        full = _ids(tokenizer.apply_chat_template(msgs))
        n_prompt = 0                       # the longest common prefix, in case the template differs
        while n_prompt < min(len(prompt), len(full)) and prompt[n_prompt] == full[n_prompt]:
            n_prompt += 1
        return full, n_prompt
    if "messages" in rec:
        prompt_text = "".join(m["content"] for m in rec["messages"][:-1])
        response_text = rec["messages"][-1]["content"]
    else:
        prompt_text, response_text = rec["prompt"], rec["response"]
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has neither a chat template nor an eos token")
    prompt = tokenizer(prompt_text)["input_ids"]
    response = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    return list(prompt) + list(response) + [tokenizer.eos_token_id], len(prompt)


def tokenize_sft(records, tokenizer, max_length: int, report: bool = False) -> SFTExamples:
    """Tokenise records into examples with prompt labels masked to -100 (see module docstring)."""
    if max_length < 2:
        raise ConfigError(f"max_length must be >= 2, got {max_length}")
    out = SFTExamples()
    unk = getattr(tokenizer, "unk_token_id", None)
    n_unknown_examples = 0
    for rec in records:
        ids, n_prompt = encode_pair(rec, tokenizer)
        if unk is not None and unk in ids:
            out.n_unknown += ids.count(unk)
            n_unknown_examples += 1
        labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
        if len(ids) > max_length:
            out.n_truncated += 1
            ids, labels = ids[:max_length], labels[:max_length]
        n_resp = sum(label != IGNORE_INDEX for label in labels)
        out.n_no_response += n_resp == 0
        out.n_response_tokens += n_resp
        out.append({"input_ids": ids, "labels": labels})
    if out.n_unknown:
        warnings.warn(f"data: {out.n_unknown} token(s) in {n_unknown_examples} example(s) are "
                      f"characters the tokenizer does not know (mapped to {tokenizer.unk_token}); "
                      "the model cannot read or learn them", stacklevel=2)
    if report and (out.n_truncated or out.n_no_response):
        print(f"data: {out.summary()} (max_length={max_length})", file=sys.stderr)
    return out


def collate(examples, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples: input_ids/attention_mask/labels, each [B, T_max] (labels -100)."""
    T = max(len(e["input_ids"]) for e in examples)
    input_ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        input_ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def _token_noise(examples, noise_rate, rng, vocab_ids=None):
    """Replace each response token, with probability noise_rate, by a different id of ``vocab_ids``
    (default: the ids seen in responses). Input and label change together: the sequence is corrupted."""
    if vocab_ids is None:
        vocab_ids = sorted({t for e in examples for t in e["labels"] if t != IGNORE_INDEX})
    vocab_ids = list(vocab_ids)
    if len(vocab_ids) < 2:
        raise ConfigError("token noise needs at least two candidate token ids")
    out = SFTExamples()
    out.n_truncated = getattr(examples, "n_truncated", 0)
    out.n_no_response = getattr(examples, "n_no_response", 0)
    out.n_response_tokens = getattr(examples, "n_response_tokens", 0)
    out.n_unknown = getattr(examples, "n_unknown", 0)
    n_changed = 0
    for e in examples:
        ids, labels = list(e["input_ids"]), list(e["labels"])
        for i, label in enumerate(labels):
            if label != IGNORE_INDEX and rng.random() < noise_rate:
                new = label
                while new == label:
                    new = rng.choice(vocab_ids)
                ids[i] = labels[i] = new
                n_changed += 1
        out.append({"input_ids": ids, "labels": labels})
    out.n_noisy = n_changed
    return out


def _answer_noise(records, noise_rate, rng, vocab_ids=None):
    """Give a fraction noise_rate of records (exactly round(rate*n)) another record's different response."""
    records = [dict(r) for r in records]
    responses = [_as_messages(r)[-1]["content"] for r in records]
    if len(set(responses)) < 2:
        raise ConfigError("answer noise needs at least two distinct responses")
    chosen = rng.sample(range(len(records)), round(noise_rate * len(records)))
    for i in chosen:
        new = responses[i]
        while new == responses[i]:
            new = rng.choice(responses)
        if "messages" in records[i]:
            records[i]["messages"] = records[i]["messages"][:-1] + [
                {"role": "assistant", "content": new}]
        else:
            records[i]["response"] = new
    return records


NOISE_UNITS = {"token": _token_noise, "answer": _answer_noise}


def add_label_noise(data, noise_rate: float, seed: int = 0, unit: str = "token", vocab_ids=None):
    """Seeded supervision noise: ``unit="token"`` on tokenised examples, ``"answer"`` on records."""
    if not 0.0 <= noise_rate <= 1.0:
        raise ConfigError(f"noise_rate must lie in [0, 1], got {noise_rate}")
    if unit not in NOISE_UNITS:
        raise ConfigError(f"unknown noise unit {unit!r}; choose from {', '.join(NOISE_UNITS)}")
    return NOISE_UNITS[unit](data, noise_rate, random.Random(seed), vocab_ids)
