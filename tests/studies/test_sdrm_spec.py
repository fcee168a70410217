"""SDRM study specs: strict validation (unknown keys rejected with their path), defaults, shipped specs."""

import copy
import json
from pathlib import Path

import pytest

from exray.errors import ConfigError
from exray.studies.sdrm import load_spec, parse_spec
from exray.studies.sdrm.spec import Run

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {
    "data": {"d": {"source": "digits"}},
    "architectures": {"a": {"name": "cnn"}},
    "attacks": {"k": {"kind": "badnets"}},
}


def _with(path: str, value) -> dict:
    spec = copy.deepcopy(MINIMAL)
    *parents, last = path.split(".")
    node = spec
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return spec


def test_defaults():
    spec = parse_spec(MINIMAL)
    assert spec.name == "sdrm-study" and spec.seed == 0
    assert spec.runs == (Run("d", "a", "k"),)
    data = spec.data["d"]
    assert (data.classes, data.train_per_class, data.test_per_class, data.image_size) == (10, 300, 100, 32)
    assert spec.attacks["k"].fraction == 0.1 and spec.attacks["k"].target_class == 0
    assert spec.sdrm.weight == 0.1 and spec.sdrm.mode == "all" and spec.sdrm.levels is None
    assert spec.evaluation.max_per_group == 100 and spec.evaluation.projections == 128
    assert spec.detectors.ss_auto_rate
    assert spec.to_dict()["detectors"]["spectral_signatures"] == {"poison_rate": "auto"}
    json.dumps(spec.to_dict())


def test_architectures_override_training_and_sdrm():
    spec = _with("training", {"epochs": 7, "lr": 0.01})
    spec["sdrm"] = {"weight": 0.2}
    spec["architectures"]["b"] = {
        "name": "resnet18",
        "training": {"epochs": 3},
        "sdrm": {"levels": ["layer4"], "estimator": "unbiased"},
    }
    parsed = parse_spec(spec)
    assert parsed.training_for("a") == parsed.training and parsed.training.epochs == 7
    assert parsed.training_for("b").epochs == 3 and parsed.training_for("b").lr == 0.01
    assert parsed.sdrm_for("a").weight == 0.2 and parsed.sdrm_for("a").levels is None
    own = parsed.sdrm_for("b")
    assert (own.weight, own.levels, own.estimator) == (0.2, ("layer4",), "unbiased")
    assert parsed.to_dict()["architectures"]["a"] == {
        "name": "cnn",
        "kwargs": {},
        "training": None,
        "sdrm": None,
    }


def test_runs_all_is_the_product_and_lists_are_checked():
    spec = _with("architectures.b", {"name": "vgg11_bn", "kwargs": {"width": 0.25}})
    spec["attacks"]["w"] = {"kind": "warp", "options": {"strength": 1.0}}
    assert len(parse_spec(spec).runs) == 4
    spec["runs"] = [["d", "b", "w"], ["d", "a", "k"]]
    assert parse_spec(spec).runs == (Run("d", "b", "w"), Run("d", "a", "k"))
    for runs, message in (
        ([["d", "b"]], "must be"),
        ([["d", "z", "k"]], "unknown architecture"),
        ([["d", "a", "k"], ["d", "a", "k"]], "twice"),
        ("some", "must be 'all'"),
    ):
        spec["runs"] = runs
        with pytest.raises(ConfigError, match=message):
            parse_spec(spec)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("colour", 1, "unknown key 'colour'"),
        ("data.d.size", 32, "unknown key 'data.d.size'"),
        ("data.d.source", "cifar", "must be one of"),
        ("data.d.classes", 5, "data.d.classes"),
        ("data.d.options", {"blur": 1}, "unknown digits options"),
        ("data.d.train_per_class", 1, "train_per_class"),
        ("architectures.a.name", "alexnet", "unknown architecture"),
        ("architectures.a.kwargs", {"depth": 3}, "does not accept"),
        ("architectures.a.sdrm", {"levels": []}, "levels"),
        ("architectures.a.sdrm", {"target_class": 1}, "set from each attack"),
        ("architectures.a.training", {"epochs": -1}, "architectures.a.training"),
        ("architectures.a.extra", 1, "unknown key 'architectures.a.extra'"),
        ("attacks.k.kind", "sig", "unknown attack kind"),
        ("attacks.k.options", {"opacity": 0.2}, "no options"),
        ("attacks.k.target_class", 12, "only 10 classes"),
        ("attacks.k.trigger", {}, "unknown key 'attacks.k.trigger'"),
        ("training.epochs", 0, "epochs"),
        ("training.momentum", 0.9, "unknown training options"),
        ("sdrm.lambda", 0.1, "unknown SDRM options"),
        ("sdrm.target_class", 1, "set from each attack"),
        ("sdrm.mode", "first", "mode"),
        ("evaluation.max_per_group", 1, "max_per_group"),
        ("evaluation.bins", 3, "unknown key 'evaluation.bins'"),
        ("detectors.spectre", {}, "unknown key 'detectors.spectre'"),
        ("detectors.activation_clustering.reduction", "tsne", "reduction"),
        ("detectors.spectral_signatures.poison_rate", 2.0, "poison_rate"),
        ("detectors.scan.n_clusters", 3, "n_clusters"),
        ("seed", -1, "seed"),
        ("name", "", "name"),
    ],
)
def test_invalid_specs_name_the_offending_key(path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(_with(path, value))


def test_required_sections():
    for key in ("data", "architectures", "attacks"):
        spec = copy.deepcopy(MINIMAL)
        del spec[key]
        with pytest.raises(ConfigError, match=f"'{key}' is required"):
            parse_spec(spec)
    with pytest.raises(ConfigError, match="non-empty mapping"):
        parse_spec(_with("data", {}))
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_spec([1, 2])


def test_load_yaml_and_json(tmp_path):
    (tmp_path / "mine.json").write_text(json.dumps(MINIMAL))
    assert load_spec(tmp_path / "mine.json").name == "mine"
    (tmp_path / "bad.yaml").write_text("data: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", ["sdrm-tiny.yaml"])
def test_shipped_specs_are_valid(name):
    spec = load_spec(REPO / "studies" / name)
    assert spec.name == Path(name).stem and spec.runs
