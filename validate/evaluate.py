"""Evaluation after SFT: generation, answer extraction, exact match, Jaro-Winkler, training fit.

Protocols of the paper (notes §3.2):
* greedy decoding (figfont, medical): ``samples=1, temperature=0``;
* sampled avg@k (math): ``samples=16, temperature=1.0, top_p=1``; the accuracy is the mean over all
  k samples of all problems;
* metrics on the extracted answer vs the reference, both lower-cased and stripped: exact match, and
  Jaro-Winkler similarity with prefix weight 0.1 (figfont);
* the mean training-token likelihood after SFT, mean_t p_theta(y_t | y_<t, x) on the training set
  (paper Fig. 6 right; the same teacher-forced statistic as the probe's Eq. 5).

Answer extraction is a registry ``EXTRACTORS`` (name -> function of the generated text); a task picks
one by name (``raw``: the first line; ``boxed``: the last ``\\boxed{...}``; ``last_number``; ``letter``).

    probsft evaluate --model runs/p/model --data heldout.jsonl --extract raw --out runs/p/eval
    >>> evaluate(model, tokenizer, records, extract="boxed", samples=16, temperature=1.0)
"""

from __future__ import annotations

import re

import torch

from probsft.errors import ConfigError
from probsft.validate.data import encode_pair


def jaro(a: str, b: str) -> float:
    """Jaro similarity: (m/|a| + m/|b| + (m - t)/m) / 3, matches within max(|a|,|b|)//2 - 1."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    window = max(max(len(a), len(b)) // 2 - 1, 0)
    used = [False] * len(b)
    a_matches = []
    for i, ch in enumerate(a):
        for j in range(max(0, i - window), min(len(b), i + window + 1)):
            if not used[j] and b[j] == ch:
                used[j] = True
                a_matches.append(ch)
                break
    m = len(a_matches)
    if m == 0:
        return 0.0
    b_matches = [b[j] for j in range(len(b)) if used[j]]
    transpositions = sum(x != y for x, y in zip(a_matches, b_matches)) / 2
    return (m / len(a) + m / len(b) + (m - transpositions) / m) / 3


def jaro_winkler(pred: str, ref: str, prefix_weight: float = 0.1) -> float:
    """Jaro-Winkler of lower-cased, stripped strings: J + l * w * (1 - J), l = common prefix <= 4."""
    a, b = pred.strip().lower(), ref.strip().lower()
    j = jaro(a, b)
    prefix = 0
    for x, y in zip(a[:4], b[:4]):
        if x != y:
            break
        prefix += 1
    return j + prefix * prefix_weight * (1 - j)


def exact_match(pred: str, ref: str) -> float:
    return float(pred.strip().lower() == ref.strip().lower())


def _boxed(text: str) -> str:
    """Content of the last \\boxed{...}, braces balanced; '' when there is none."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return ""
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1:j]
    return text[i + 1:]


def _last_number(text: str) -> str:
    nums = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
    return nums[-1] if nums else ""


def _letter(text: str) -> str:
    boxed = _boxed(text).strip()
    found = re.search(r"\b([A-J])\b", boxed or text)
    return found.group(1) if found else ""


EXTRACTORS = {
    "raw": lambda text: text.strip().split("\n", 1)[0].strip() if text.strip() else "",
    "boxed": _boxed,
    "last_number": _last_number,
    "letter": _letter,
}


def get_extractor(name: str):
    if name not in EXTRACTORS:
        raise ConfigError(f"unknown answer extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    return EXTRACTORS[name]


def check_sampling(samples: int, temperature: float, top_p: float) -> None:
    """ConfigError unless samples >= 1, temperature is finite and >= 0 (0: greedy), top_p in (0, 1],
    and several samples are drawn with temperature > 0 (greedy decoding repeats one answer)."""
    if not (isinstance(samples, int) and samples >= 1):
        raise ConfigError(f"samples must be a whole number >= 1, got {samples!r}")
    if not (0 <= temperature < float("inf")):
        raise ConfigError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature}")
    if not 0 < top_p <= 1:
        raise ConfigError(f"top_p must lie in (0, 1], got {top_p}")
    if samples > 1 and temperature == 0:
        raise ConfigError(f"{samples} samples with temperature 0 would repeat one greedy answer; "
                          "sample with temperature > 0 (the paper's avg@k uses 1.0)")


@torch.no_grad()
def generate(model, tokenizer, records, max_new_tokens: int = 16, samples: int = 1,
             temperature: float = 0.0, top_p: float = 1.0, seed: int = 0,
             batch_size: int = 16) -> list[list[str]]:
    """``samples`` completions per record (greedy when temperature == 0), decoded without specials.

    Prompts are formatted exactly as in training (chat template, or the raw prompt) and left-padded.
    """
    check_sampling(samples, temperature, top_p)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    sampling = temperature > 0
    out = []
    for start in range(0, len(records), batch_size):
        prompts = []
        for rec in records[start:start + batch_size]:
            ids, n_prompt = encode_pair(rec, tokenizer)
            prompts.append(ids[:n_prompt])
        T = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (T - len(p)) + p for p in prompts], device=device)
        mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts], device=device)
        kwargs = dict(do_sample=True, temperature=temperature, top_p=top_p) if sampling else \
            dict(do_sample=False)
        gen = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                             num_return_sequences=samples, pad_token_id=pad,
                             eos_token_id=tokenizer.eos_token_id, **kwargs)   # [b*samples, T+new]
        texts = tokenizer.batch_decode(gen[:, T:], skip_special_tokens=True)
        out += [texts[i * samples:(i + 1) * samples] for i in range(len(prompts))]
    model.train(was_training)
    return out


def _reference(rec: dict) -> str:
    return rec["messages"][-1]["content"] if "messages" in rec else rec["response"]


def evaluate(model, tokenizer, records, extract: str = "raw", samples: int = 1,
             temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 16, seed: int = 0,
             train_examples=None, batch_size: int = 16) -> tuple[dict, list[dict]]:
    """(summary metrics, per-sample rows). Metrics are means over all samples (avg@k)."""
    extractor = get_extractor(extract)
    check_sampling(samples, temperature, top_p)
    completions = generate(model, tokenizer, records, max_new_tokens, samples, temperature, top_p,
                           seed, batch_size)
    rows = []
    for i, (rec, texts) in enumerate(zip(records, completions)):
        ref_text = _reference(rec)
        ref = extractor(ref_text) or ref_text.strip()   # references may hold the bare answer
        for k, text in enumerate(texts):
            pred = extractor(text)
            rows.append({"index": i, "sample": k, "reference": ref, "prediction": pred,
                         "exact_match": exact_match(pred, ref),
                         "jaro_winkler": jaro_winkler(pred, ref)})
    summary = {"eval/examples": len(records), "eval/samples": samples,
               "eval/temperature": temperature, "eval/extract": extract,
               "eval/exact_match": sum(r["exact_match"] for r in rows) / len(rows),
               "eval/jaro_winkler": sum(r["jaro_winkler"] for r in rows) / len(rows)}
    if train_examples is not None:
        summary["eval/train_mean_p"] = training_likelihood(model, tokenizer, train_examples)
    return summary, rows


def training_likelihood(model, tokenizer, examples) -> float:
    """Mean teacher-forced p of the training response tokens (paper Fig. 6 right)."""
    from probsft.validate.probe import token_probs

    return float(token_probs(model, examples, tokenizer.pad_token_id).mean())
