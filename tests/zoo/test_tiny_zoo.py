"""The shipped tiny zoo (zoos/tiny.yaml): it meets the quality bar and loads with the public API."""

import time

import pytest
import torch
from tests.conftest import THREADS, tiny_spec

import exray
from exray.attacks import Attack
from exray.zoo import cached_build, read_metadata

pytestmark = [pytest.mark.xdist_group("tiny_zoo"), pytest.mark.slow, pytest.mark.trained]


def test_tiny_zoo_meets_the_quality_bar(tiny_zoo) -> None:
    rows = read_metadata(tiny_zoo)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    assert sorted(r["poisoned"] for r in rows) == ["False", "False", "True", "True"]
    assert sorted(r["trigger_type"] for r in rows if r["poisoned"] == "True") == ["instagram", "polygon"]
    for row in rows:
        assert float(row["clean_accuracy"]) >= 0.9
        if row["poisoned"] == "True":
            assert float(row["attack_success_rate"]) >= 0.9


def test_tiny_zoo_layout_loads_with_the_public_api(tiny_zoo) -> None:
    for directory in sorted(tiny_zoo.glob("id-*")):
        model = exray.load_model(directory)
        info = model.exray_info
        examples = exray.load_examples(directory)
        assert info.input_size == (3, 32, 32) and sorted(examples) == list(range(info.num_classes))
        assert all(x.shape == (10, 3, 32, 32) for x in examples.values())
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == c).sum()) for c, x in examples.items())
        assert correct / sum(len(x) for x in examples.values()) >= 0.8
        config = info.config
        assert (directory / "ground_truth.csv").read_text().strip() == str(int(config["poisoned"]))
        for entry in config["triggers"]:
            attack = Attack.from_config(entry)
            if attack.trigger.type == "instagram":  # a whole-image trigger can be stamped on the PNG examples
                stamped = torch.cat([attack.trigger.apply(examples[c]) for c in attack.source_classes])
                with torch.no_grad():
                    hits = (model(stamped).argmax(1) == attack.target_class).float().mean()
                assert hits >= 0.8


def test_cached_build_reuses_the_finished_zoo_at_once(tiny_zoo) -> None:
    start = time.perf_counter()
    assert cached_build(tiny_spec(), train_threads=THREADS) == tiny_zoo
    assert time.perf_counter() - start < 2.0
