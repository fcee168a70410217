"""Ground truth of a population: groups by trigger type, and which found triggers are the injected ones."""

import json
import shutil

import pytest

from exray.errors import ModelLoadError
from exray.evaluation import read_truth
from exray.scanners import FoundTrigger
from exray.triggers import PatchTrigger


def _found(victim, target):
    return FoundTrigger(PatchTrigger((1.0, 0.0, 1.0), 0.1), victim, target, "patch", 1.0)


def test_groups_and_injected_triggers(colour_zoo):
    models, skipped = read_truth(colour_zoo)
    assert skipped == {} and [m.name for m in models] == [f"id-{i:08d}" for i in range(4)]
    assert [m.group for m in models] == [None, "polygon", None, "filter"]
    assert models[3].kinds == {"filter"} and models[1].kinds == {"patch"}
    polygon = models[1]
    assert polygon.injected(_found(0, 1)) and polygon.injected(_found(2, 1))
    assert not polygon.injected(_found(1, 0))  # wrong target
    assert not polygon.injected(_found(1, 1))  # victim not a source class
    assert not models[0].injected(_found(0, 1))  # a clean model has no injected trigger


def test_directories_without_metadata_and_bad_models(colour_zoo, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(colour_zoo, zoo)
    (zoo / "METADATA.csv").unlink()
    config = zoo / "id-00000002" / "config.json"
    data = json.loads(config.read_text())
    del data["poisoned"]
    config.write_text(json.dumps(data))
    (zoo / "id-00000002" / "ground_truth.csv").unlink()
    models, skipped = read_truth(zoo)
    assert [m.name for m in models] == ["id-00000000", "id-00000001", "id-00000003"]
    assert "no ground truth" in skipped["id-00000002"]
    with pytest.raises(ModelLoadError, match="no model directory"):
        read_truth(tmp_path / "zoo" / "id-00000000" / "clean-example-data")
