"""``exray sdrm study``: the minimal shipped spec runs end to end, writes its table and plot, and resumes
from its cache; the measurement helpers on known inputs."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from exray.cli import main
from exray.models import build_model
from exray.studies.sdrm.measure import PENULTIMATE, level_distances, level_features, run_detectors, subset
from exray.studies.sdrm.spec import DetectorSpec
from exray.utils import torch_generator

TINY = Path(__file__).resolve().parents[2] / "studies" / "sdrm-tiny.yaml"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdrm-tiny")
    assert main(["sdrm", "study", str(TINY), "--out", str(out), "--quiet"]) == 0
    return out


def test_study_writes_table_csv_json_and_plot(study, capsys):
    table = (study / "sdrm-table.md").read_text()
    assert "| signs | cnn | badnets |" in table and "| digits | cnn | badnets |" in table
    assert "AC F1" in table and "SS F1" in table and "SCAn F1" in table and "→" in table
    assert "| s3 |" in table and "| penultimate |" in table
    rows = list(csv.DictReader((study / "sdrm-table.csv").open()))
    assert [(r["data"], r["variant"]) for r in rows] == [
        ("signs", "rbt"),
        ("signs", "sdrm"),
        ("digits", "rbt"),
        ("digits", "sdrm"),
    ]
    for row in rows:
        assert 0.0 <= float(row["clean_accuracy"]) <= 1.0 and 0.0 <= float(row["attack_success_rate"]) <= 1.0
        assert 0.0 <= float(row["activation_clustering_target_f1"]) <= 1.0
        assert float(row["mmd_s3"]) >= 0.0 and row["module_s3"] == "features.6"
    assert rows[0]["seed"] == rows[1]["seed"] and rows[0]["seed"] != rows[2]["seed"]  # same seed per run
    results = json.loads((study / "sdrm-results.json").read_text())
    assert results["spec"]["name"] == "sdrm-tiny" and results["versions"]["exray"]
    record = results["records"][0]
    assert record["counts"]["poisoned"] == round(0.2 * 3 * 40)
    assert set(record["detectors"]) == {"target", "all"}
    assert set(record["distances"]) == {"s1", "s2", "s3", PENULTIMATE}
    assert record["regularised_levels"] == [] and record["seeds"]["run"] == record["seed"]
    assert results["records"][1]["regularised_levels"] == ["features.2", "features.4", "features.6"]
    assert (study / "sdrm-distances.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_study_resumes_from_its_cache(study, capsys):
    before = {p: p.stat().st_mtime_ns for p in study.glob("runs/*/*/model/model.safetensors")}
    assert len(before) == 4
    capsys.readouterr()
    assert main(["sdrm", "study", str(TINY), "--out", str(study), "--quiet", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert all(r["cached"] for r in printed["records"])
    assert {p: p.stat().st_mtime_ns for p in study.glob("runs/*/*/model/model.safetensors")} == before
    first = json.loads((study / "sdrm-results.json").read_text())["records"]
    assert [r["detectors"] for r in printed["records"]] == [r["detectors"] for r in first]


def test_every_study_model_is_a_scannable_model_directory(study):
    """Model-level scanners run on the study's models as on any model directory (issue 17 §5): each holds
    its clean examples, every class of the task."""
    from exray import load_examples, load_model
    from exray.studies.sdrm.runner import EXAMPLES_PER_CLASS

    directories = sorted(study.glob("runs/*/*/model"))
    assert len(directories) == 4
    for directory in directories:
        model, examples = load_model(directory, device="cpu"), load_examples(directory)
        classes = model(examples[0]).shape[1]
        assert set(examples) == set(range(classes))
        assert all(0 < len(v) <= EXAMPLES_PER_CLASS for v in examples.values())


def test_bad_spec_is_an_error_exit(tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(TINY.read_text() + "\nextra: 1\n")
    assert main(["sdrm", "study", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key 'extra'" in capsys.readouterr().err


def test_level_features_and_penultimate_representation():
    model = build_model("resnet18", 4, width=0.125)
    images = torch.rand(5, 3, 32, 32, generator=torch_generator(0))
    feats = level_features(model.train(), images, ("layer3", "layer4"), batch_size=2)
    assert model.training  # the mode is restored
    assert feats["layer4"].shape == (5, 64 * 4 * 4) and feats[PENULTIMATE].shape == (5, 64)
    with torch.no_grad():
        pooled = model.eval().layer4(
            model.layer3(model.layer2(model.layer1(model.stem(model.normalize(images)))))
        )
    torch.testing.assert_close(feats[PENULTIMATE], pooled.mean(dim=(2, 3)))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_distances_vanish_for_identical_groups_and_subsets_are_seeded():
    x = {"s1": torch.rand(30, 8, generator=torch_generator(1))}
    same = level_distances(x, {"s1": x["s1"].clone()}, projections=16, seed=0)["s1"]
    assert same == {"mmd": 0.0, "energy": pytest.approx(0.0, abs=1e-12), "swd": 0.0}
    shifted = level_distances(x, {"s1": x["s1"] + 1.0}, projections=16, seed=0)["s1"]
    assert min(shifted.values()) > 0
    assert torch.equal(subset(10, 20, 0), torch.arange(10))
    assert torch.equal(subset(500, 100, 3), subset(500, 100, 3)) and len(subset(500, 100, 3)) == 100


def test_detectors_find_a_planted_cluster_in_the_target_class():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 100)
    features = rng.normal(size=(400, 16)) + 10.0 * np.eye(16)[labels]
    poisoned = np.zeros(400, dtype=bool)
    poisoned[:20] = True  # 20 % of class 0, far away along its own direction
    features[:20] += 12.0 * np.eye(16)[7]
    reference = rng.normal(size=(400, 16)) + 10.0 * np.eye(16)[labels]  # held-out clean, for SCAn
    result = run_detectors(
        torch.from_numpy(features),
        torch.from_numpy(labels),
        torch.from_numpy(poisoned),
        0,
        DetectorSpec(),
        seed=0,
        reference=(torch.from_numpy(reference), torch.from_numpy(labels)),
    )
    assert result["target"]["activation_clustering"]["f1"] == 1.0
    assert result["target"]["spectral_signatures"]["f1"] == 1.0  # auto budget = the 20 poisoned samples
    assert result["target"]["spectral_signatures"]["flagged"] == 20
    assert result["all"]["scan"]["f1"] == 1.0
    assert result["all"]["scan"]["reference_size"] == 400
    assert result["all"]["scan"]["pca_components"] is None


REFERENCE_RECIPE = """
name: sdrm-recipe-smoke
seed: 3
data:
  signs: {source: signs, classes: 4, train_per_class: 30, test_per_class: 10, image_size: 16}
architectures:
  cnn: {name: cnn, kwargs: {width: 0.25}}
attacks:
  photo: {kind: blended, target_class: 0, fraction: 0.5, poisoning: redrawn, options: {photo: colorwheel}}
runs: all
training: {epochs: 2, batch_size: 32, optimizer: sgd, lr: 0.01, nesterov: false, schedule: multistep,
           augment: crop_flip, crop_padding: 2}
sdrm: {weight: 0.1, estimator: biased, num_levels: 3}
evaluation: {max_per_group: 20, projections: 16}
detectors:
  activation_clustering: {n_init: 5}
  scan: {n_init: 2}
"""


def test_the_reference_recipe_runs_end_to_end(tmp_path):
    # Issue 17 §3's pieces in one study: a natural-photo blend poisoned anew every epoch, SGD with the
    # multistep schedule, crop+flip augmentation, three biased-MMD levels.
    spec = tmp_path / "recipe.yaml"
    spec.write_text(REFERENCE_RECIPE)
    assert main(["sdrm", "study", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    results = json.loads((tmp_path / "out" / "sdrm-results.json").read_text())
    rbt, sdrm = results["records"]
    # Poisoned in place: the training set keeps its 120 images; the inspected draw poisons about half of
    # the 90 source images, relabelled to the target class.
    assert rbt["counts"]["train"] == 120
    assert 25 <= rbt["counts"]["poisoned"] <= 65
    assert rbt["counts"]["target_class"] == 30 + rbt["counts"]["poisoned"]
    assert sdrm["regularised_levels"] == ["features.2", "features.4", "features.6"]
    assert rbt["detectors"]["all"]["scan"]["reference_size"] == 40


def test_a_gpu_trained_model_is_cached_under_its_own_key():
    """A GPU trains other weights: its models must not be reused as CPU ones (nor the reverse), and the
    CPU key is the one every earlier study cached under (no device in it)."""
    from exray.studies.sdrm import load_spec
    from exray.studies.sdrm.runner import _hash, _train_key

    spec = load_spec(TINY)
    run = spec.runs[0]
    cpu = _train_key(spec, run, "rbt", torch.device("cpu"))
    assert cpu != _train_key(spec, run, "rbt", torch.device("cuda"))
    arch = spec.architectures[run.architecture]
    legacy = {
        "seed": spec.seed,
        "data": spec.data[run.data].to_dict(),
        "architecture": {"name": arch.architecture, "kwargs": dict(arch.kwargs)},
        "attack": spec.attacks[run.attack].to_dict(),
        "training": spec.training_for(run.architecture).to_dict(),
        "variant": "rbt",
    }
    assert cpu == _hash(legacy)


def test_runs_can_be_selected_by_pattern_and_share_the_cache(study, tmp_path, capsys):
    """`--runs` keeps the matching runs only (and refuses a pattern that matches none); the models it needs
    come from the full study's cache, since every model's key is its own run's."""
    from exray.errors import ConfigError
    from exray.studies.sdrm import load_spec, select_runs

    spec = load_spec(TINY)
    assert [(r.data, r.attack) for r in select_runs(spec, ["signs/*"]).runs] == [("signs", "badnets")]
    assert select_runs(spec, []) is spec
    with pytest.raises(ConfigError, match="no run matches"):
        select_runs(spec, ["imagenet/*"])
    out = tmp_path / "selected"
    shutil.copytree(study / "runs", out / "runs")  # the full study's cache (its own files stay as they are)
    capsys.readouterr()
    assert main(["sdrm", "study", str(TINY), "--out", str(out), "--runs", "digits/cnn/*", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [(r["data"], r["cached"]) for r in results["records"]] == [("digits", True), ("digits", True)]
    assert (out / "part-digits-cnn" / "sdrm-table.md").is_file() and not (out / "sdrm-table.md").exists()
