"""A fine-tune's output folder: what may be resumed, what is refused, what a run leaves there.

A run of another config in the folder (objective, data content, model, ...) is never resumed or
trained over without ``overwrite``; the output may not overlap the input model folder; a damaged
checkpoint is one clear error. Used by probsft.validate.train before any work.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

import probsft
from probsft.errors import ConfigError, UserError
from probsft.files import sha256_file
from probsft.validate import store
from probsft.validate.run_config import FinetuneConfig


# Config fields that steer a run without changing what it trains: a resumed run may change them.
RUN_CONTROL = ("output", "resume", "overwrite", "log_every", "checkpoint_every", "save_model")
# What a finished or interrupted run leaves in its output folder (--overwrite removes them).
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "metrics.csv", "metrics.json", "model")


def config_differences(saved: dict, current: dict) -> list[str]:
    """Fields in which two saved configs train differently (RUN_CONTROL ignored; the data file is
    compared by its content hash when both configs carry one, else by its path)."""
    a, b = dict(saved), dict(current)
    if _resolved_from(a.get("objective"), b.get("objective")):
        b["objective"] = a["objective"]        # alpha(auto) saved as the alpha it resolved to
    hashed = bool(a.get("data_sha256") and b.get("data_sha256"))
    for key in RUN_CONTROL + (("data",) if hashed else ("data_sha256",)):
        a.pop(key, None)
        b.pop(key, None)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _resolved_from(saved, current) -> bool:
    """True when ``saved`` is what the probe-set objective ``current`` (alpha(auto), Q<pct>
    thresholds) resolved to: config.json records the resolved objective, so a run resumes under the
    spec it was asked with."""
    from probsft.errors import SpecError

    if not (isinstance(saved, str) and isinstance(current, str)) or saved == current:
        return False
    try:
        want, got = probsft.objective(current), probsft.objective(saved)
    except SpecError:
        return False
    if not want.needs_probe or got.needs_probe or (got.interval is None) != (want.interval is None):
        return False
    if want.base.probe_params:                 # alpha(auto) -> alpha(a); alpha(0) is nll, alpha(1) p
        return got.base.family in (want.base.family, "nll", "p")
    return got.base == want.base               # only the Q<pct> bounds were resolved


def _describe(diffs, saved, current) -> str:
    def short(v):
        text = repr(v)
        return text if len(text) <= 40 else text[:37] + "..."

    return ", ".join("the data file's content (sha256 changed)" if k == "data_sha256" else
                     f"{k} ({short(saved.get(k))} then, {short(current.get(k))} now)" for k in diffs)


def with_data_hash(cfg: FinetuneConfig) -> FinetuneConfig:
    """``cfg`` with the data file's content hash; ConfigError if it differs from a hash set in it."""
    if not Path(cfg.data).is_file():
        raise UserError(f"data file {cfg.data} does not exist")
    digest = sha256_file(cfg.data)
    if cfg.data_sha256 is not None and cfg.data_sha256 != digest:
        raise ConfigError(f"data file {cfg.data} has changed: its sha256 is {digest[:12]}..., the "
                          f"config expects {cfg.data_sha256[:12]}...")
    return dataclasses.replace(cfg, data_sha256=digest)


def refuse_input_model_folder(cfg: FinetuneConfig) -> None:
    """A run writes config.json and model/ into its output: never into (or around) its input model."""
    model = Path(cfg.model).expanduser()
    if not model.exists():
        return
    out, model = Path(cfg.output).expanduser().resolve(), model.resolve()
    if out == model or model in out.parents or out in model.parents:
        raise ConfigError(f"--output {cfg.output} overlaps the input model folder {cfg.model}: the "
                          "run would overwrite the model it reads; choose another --output")


def check_saved_run(cfg: FinetuneConfig, out: Path) -> None:
    """Refuse to resume or retrain over a run of another config in ``out`` unless cfg.overwrite;
    with cfg.overwrite, remove that run's files first."""
    import shutil

    saved_path = out / "config.json"
    if saved_path.exists() and not cfg.overwrite:
        try:
            saved = json.loads(saved_path.read_text())
        except (OSError, ValueError):
            raise ConfigError(f"{saved_path} is unreadable; pass --overwrite to start the run "
                              "over, or choose another --output") from None
        current = store.config_to_dict(cfg)
        diffs = config_differences(saved, current)
        if diffs:
            raise ConfigError(f"{out} holds a run with another config: {_describe(diffs, saved, current)}"
                              "; pass --overwrite to replace it, or choose another --output")
    if cfg.overwrite:
        for name in RUN_FILES:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def load_checkpoint(ckpt: Path, device, cfg: FinetuneConfig) -> dict:
    """The saved state of an interrupted run; UserError when the file is damaged or of another run."""
    import pickle

    try:
        state = torch.load(ckpt, map_location=device, weights_only=False)
        keys = ("model", "optimizer", "scheduler", "step", "skipped", "tokens_seen", "rng",
                "objective", "config")
        missing = [k for k in keys if k not in state]
    except (RuntimeError, EOFError, ValueError, TypeError, OSError, pickle.UnpicklingError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"checkpoint {ckpt} is damaged ({first}); delete it or pass --no-resume "
                        "to start the run over") from None
    if missing:
        raise UserError(f"checkpoint {ckpt} is damaged (no {', '.join(missing)}); delete it or pass "
                        "--no-resume to start the run over")
    diffs = config_differences(state["config"], store.config_to_dict(cfg))
    if diffs:
        raise ConfigError(f"{ckpt} belongs to a run with another config: "
                          f"{_describe(diffs, state['config'], store.config_to_dict(cfg))}; pass "
                          "--no-resume or --overwrite, or choose another --output")
    return state
