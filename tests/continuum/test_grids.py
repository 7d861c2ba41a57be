"""The grid registry: every other backbone is the shipped doses built with its registered seed, and
its grid's positions are the dial tasks whose recorded build probe p lies nearest the targets."""

import dataclasses
import json

import pytest

from probsft.continuum import experiment as ex
from probsft.continuum.grids import CURVE, GRIDS, OTHERS, grid
from probsft.errors import UserError
from probsft.validate.backbone import DIAL_MIX, BackboneConfig, load, positions_near


@pytest.mark.parametrize("key", [g.key for g in OTHERS])
def test_other_backbones_and_their_positions(key):
    g = grid(key)
    want = dict(seed=g.build_seed, **({"threads": g.build_threads} if g.build_threads else {}))
    cfg = BackboneConfig.from_dict(json.loads((g.model_path / "backbone_config.json").read_text()))
    assert cfg == dataclasses.replace(BackboneConfig(), **want) and cfg.dial_mix == DIAL_MIX
    dial = json.loads((g.model_path / "build.json").read_text())["dial"]
    assert positions_near(dial, g.targets) == g.tasks
    model, _ = load(g.model_path)
    assert type(model).__name__ == "LlamaForCausalLM"


def test_registry_entries_are_consistent():
    assert [g.key for g in OTHERS] == ["b", "c", "d", "e"] and CURVE == ("full", "b", "c", "d", "e")
    for g in GRIDS.values():
        cfg = g.config()
        assert cfg.tasks == g.tasks and (not g.supervision or cfg.supervision == g.supervision)
        assert all(r in GRIDS and list(GRIDS).index(r) < list(GRIDS).index(g.key)
                   for r in g.rule_grids), "a rule is set on grids that ran before"
    assert grid("full").config() == ex.FULL and grid("reduced").config() == ex.REDUCED
    assert grid("c").command() == ("probsft validate --full --model models/backbone_c --tasks "
                                   "t_sh3 t_cpy t_swp t_rol t_sh1 --out results/validate_c")
    with pytest.raises(UserError, match="unknown grid .z.; registered: reduced, full, ecosystem, b"):
        grid("z")
