"""Where things live in a checkout: code, task data, shipped weights and generated results apart.

    code       probsft/ theory/ sim/ validate/ figures/ integrations/   (importable as probsft.*)
    data/      task data, one copy, written deterministically (probsft.validate.tasks)
    models/    shipped model weights in Hugging Face format (models/backbone: the embedded backbone)
    results/   everything `probsft reproduce` generates: CSV/JSON first, then figures and REPORT.md

Paths resolve against the checkout this module sits in (the root above probsft/), so a clone always
reads and writes its own folders. Nothing here imports anything else of probsft.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
MODELS = ROOT / "models"
RESULTS = ROOT / "results"
