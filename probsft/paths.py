"""Where things live: code and shipped files with the package, outputs where the user is.

    code       probsft/ theory/ sim/ validate/ continuum/ figures/
               integrations/   (importable as probsft.*)
    data/      shipped task data (probsft.validate.tasks, deterministic) and the measured curve
               `probsft recommend` reads (data/curves/, rebuilt by `probsft reproduce`)
    models/    shipped model weights in Hugging Face format (models/backbone: the embedded backbone)
    results/   what `probsft reproduce` generates: CSV/JSON first, then figures and REPORT.md

Shipped files (:data:`DATA`, :data:`MODELS`) are package data: reached through the links
``probsft/data -> ../data`` and ``probsft/models -> ../models``, so a checkout (editable install,
``python -m probsft``) reads its own folders and a built wheel carries copies inside the package.
Outputs are never written into the package: :func:`results` is the current folder's ``results/``
(every command's ``--out`` overrides it), so the ``probsft`` of one checkout, run in another
folder, writes there. Nothing here imports anything else of probsft.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ROOT = PACKAGE.parent                 # the checkout, for an editable install (tests, layout checks)
DATA = (PACKAGE / "data").resolve()
MODELS = (PACKAGE / "models").resolve()


def results() -> Path:
    """The default output folder: ``results/`` of the current working folder."""
    return Path.cwd() / "results"
