"""The hand-mutation table (tests/mutations.py) still applies: each row's text occurs exactly once in
its file and its tests exist, so a refactor cannot silently turn a mutation into a no-op (two rows
had gone stale that way before this check)."""

import importlib.util
import sys

from probsft.paths import ROOT


def test_every_mutation_applies_to_exactly_one_place():
    spec = importlib.util.spec_from_file_location("probsft_mutations", ROOT / "tests" / "mutations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    assert module.MUTATIONS
    for m in module.MUTATIONS:
        assert (ROOT / m.path).read_text().count(m.old) == 1, f"{m.name}: not exactly once in {m.path}"
        for t in m.tests:
            assert (ROOT / t.split("::")[0]).exists(), f"{m.name}: no test file {t}"
