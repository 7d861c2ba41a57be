"""The checkout layout: a clone imports its own code, and code, data, weights and results live apart."""

import shutil
import subprocess
import sys
from pathlib import Path

from probsft import paths

AREAS = ("theory", "sim", "validate", "continuum", "figures", "integrations")


def test_a_copy_of_the_checkout_imports_its_own_subpackages(tmp_path):
    """A line appended to theory/spec.py in a copy is seen by `import probsft.theory.spec` run there,
    whatever checkout is installed (the old package-dir remap sent it to the installed one)."""
    copy = tmp_path / "clone"
    copy.mkdir()
    shutil.copytree(paths.ROOT / "probsft", copy / "probsft", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for area in AREAS:
        shutil.copytree(paths.ROOT / area, copy / area, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "theory" / "spec.py", "a") as fh:
        fh.write("\nCLONE_MARK = 'copy'\n")
    code = ("import probsft, probsft.paths, probsft.theory.spec as s, probsft.sim, probsft.validate,"
            " probsft.continuum, probsft.figures, probsft.integrations;"
            "print(s.CLONE_MARK, probsft.paths.ROOT)")
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "copy"
    assert Path(out[1]).resolve() == copy.resolve()


def test_subpackages_are_relative_symlinks_to_the_top_level_folders():
    for area in AREAS:
        link = paths.ROOT / "probsft" / area
        assert link.is_symlink() and Path(link.readlink()) == Path("..") / area


def test_no_folder_holds_both_code_and_generated_outputs():
    for area in AREAS:
        outputs = [p for p in (paths.ROOT / area).rglob("*")
                   if p.suffix in {".png", ".svg", ".csv", ".jsonl", ".safetensors", ".md"}]
        assert outputs == [], f"{area}/ holds outputs: {outputs[:3]}"
    for home in (paths.DATA, paths.MODELS, paths.ROOT / "results"):
        assert not list(home.rglob("*.py")), f"{home} holds code"


def test_shipped_files_are_package_data_through_links():
    for home in ("data", "models"):
        link = paths.PACKAGE / home
        assert link.is_symlink() and Path(link.readlink()) == Path("..") / home
    assert paths.DATA == paths.ROOT / "data" and paths.MODELS == paths.ROOT / "models"
    assert (paths.MODELS / "backbone" / "config.json").exists()


def test_the_installed_console_script_writes_where_the_user_is(tmp_path):
    """`probsft` run in a foreign folder writes its results there, never into the checkout it was
    installed from (measured before: a clone's run rewrote the installed checkout's results/)."""
    exe = shutil.which("probsft")
    assert exe, "the probsft console script is not installed (pip install -e .)"
    mine = paths.ROOT / "results" / "REPORT.md"
    before = mine.stat().st_mtime_ns if mine.exists() else None
    subprocess.run([exe, "reproduce", "--only", "theory"], cwd=tmp_path, check=True,
                   capture_output=True, text=True)
    assert (tmp_path / "results" / "theory" / "weights.csv").exists()
    assert (tmp_path / "results" / "REPORT.md").exists()
    assert (mine.stat().st_mtime_ns if mine.exists() else None) == before
