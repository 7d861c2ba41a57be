"""The one way a model is loaded: ``load_model_and_tokenizer(path_or_hub_name)``, with a clear error.

Every command that reads a model (finetune, evaluate, probe, validate's backbone) loads it here. A
local folder is checked before ``from_pretrained`` so that each common mistake gives one line saying
what is wrong and what a valid folder holds (:data:`VALID_FOLDER`) instead of a transformers
traceback: a missing path, a file, an empty folder, a run folder (its model is in ``model/``), no
``config.json``, an unknown ``model_type``, no tokenizer, no weights, a truncated safetensors file.
A name that is not a local path is read as a hub name; its loading errors are reported in one line.

    >>> model, tokenizer = load_model_and_tokenizer("runs/p/model")
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from probsft.errors import UserError

VALID_FOLDER = ("a model folder holds config.json (with a known model_type), the weights "
                "(model.safetensors or pytorch_model.bin, or shards with an index) and the "
                "tokenizer (tokenizer.json, tokenizer.model or vocab.json)")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tiktoken.model")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.index.json")


def _looks_local(name: str) -> bool:
    """A hub name is ``name`` or ``org/name``; anything else (``./x``, ``/x``, ``a/b/c``) is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def _safetensors_problem(path: Path) -> str | None:
    """Why the safetensors file ``path`` cannot be read (header or data cut short), or None.

    Reads only the header (8-byte length + JSON), so a multi-GB file is checked in bounded time."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path} is truncated ({size} bytes, not even a header)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"{path} is truncated ({size} bytes; its header alone claims {n + 8})"
            header = json.loads(fh.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return f"{path} is not a readable safetensors file ({err})"
    ends = [v["data_offsets"][1] for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    need = 8 + n + max(ends, default=0)
    if need > size:
        return f"{path} is truncated ({size} bytes of the {need} its header describes)"
    return None


def model_folder_problem(name) -> str | None:
    """What is wrong with the local model path ``name`` (one sentence), or None if it looks valid
    or is a hub name that is not present locally."""
    path = Path(str(name)).expanduser()
    if not path.exists():
        if _looks_local(str(name)):
            return f"model path {name} does not exist; {VALID_FOLDER}"
        return None                                           # a hub name
    if not path.is_dir():
        return f"model path {name} is a file, not a folder; {VALID_FOLDER}"
    if not any(path.iterdir()):
        return f"model folder {name} is empty; {VALID_FOLDER}"
    config = None
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            return f"{path / 'config.json'} is not valid JSON ({err}); {VALID_FOLDER}"
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type is None and (path / "model" / "config.json").is_file():
        return (f"{name} is a run folder, not a model folder: its fine-tuned model is in "
                f"{path / 'model'} (pass that)")      # a run's own config.json has no model_type
    if config is None:
        return f"{name} has no config.json, so it is not a model folder; {VALID_FOLDER}"
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        import transformers

        return (f"{path / 'config.json'} has model_type {model_type!r}, which transformers "
                f"{transformers.__version__} does not know (e.g. 'llama', 'qwen2'; a newer "
                "architecture needs a newer transformers)")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        return (f"{name} has no tokenizer ({', '.join(TOKENIZER_FILES)}); save it next to the "
                f"model with tokenizer.save_pretrained({str(name)!r})")
    weights = [w for pattern in WEIGHT_PATTERNS for w in sorted(path.glob(pattern))]
    if not weights:
        return f"{name} has no weights (model.safetensors or pytorch_model.bin); {VALID_FOLDER}"
    for w in weights:
        if w.suffix == ".safetensors":
            problem = _safetensors_problem(w)
            if problem:
                return f"{problem}; save or download the model again"
    return None


def check_model_path(name) -> None:
    """Raise UserError (one line: what is wrong, what a valid folder holds) for a bad local model
    path; cheap, nothing is loaded, so commands call it before their work."""
    problem = model_folder_problem(name)
    if problem:
        raise UserError(problem)


def load_model_and_tokenizer(name, dtype=None):
    """(model, tokenizer) of a local folder or hub name; UserError in one line if it cannot load.

    ``dtype``: torch dtype of the weights (default float32). The tokenizer gets its eos token as
    pad token when it has none."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_path(name)
    from safetensors import SafetensorError

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name))
        model = AutoModelForCausalLM.from_pretrained(str(name), dtype=dtype or torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if Path(str(name)).expanduser().exists():
            raise UserError(f"cannot load the model folder {name}: {first}") from None
        raise UserError(f"{name} is not a local folder and could not be loaded as a hub model: "
                        f"{first}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
