"""Zoo specs: strict validation with clear messages, canonical form, deterministic designs and draws."""

import json
from collections import Counter

import pytest
import yaml

from exray.errors import ConfigError
from exray.zoo import designs, draw_model, load_spec, parse_spec, recipe_hash

from .conftest import ZOOS, micro_spec


def _error(spec) -> str:
    with pytest.raises(ConfigError) as info:
        parse_spec(spec)
    return str(info.value)


def test_unknown_keys_are_named_with_the_allowed_ones() -> None:
    message = _error(micro_spec(epochs=3))
    assert "unknown key 'epochs'" in message and "allowed keys at the top level" in message
    assert "training" in message and "architectures" in message
    message = _error(micro_spec(triggers={"polygon": {"sizes": [0.1, 0.2]}}))
    assert "'triggers.polygon.sizes'" in message and "min_contrast, size, spatial_probability" in message
    message = _error(micro_spec(training={"adversarial": {"eps_iter": 1}}))
    assert "'training.adversarial.eps_iter'" in message


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"classes": [1, 5]}, "'classes' must be in [2, 56], got 1"),
        ({"classes": [6, 4]}, "lo <= hi"),
        ({"classes": 5}, "'classes' must be a range [lo, hi]"),
        ({"models": {"clean": 1, "trojaned": "2"}}, "'models.trojaned' must be an integer"),
        ({"models": {"clean": 0, "trojaned": 0}}, "at least one model"),
        ({"models": {"clean": True, "trojaned": 1}}, "'models.clean' must be an integer"),
        ({"image_size": 8}, "'image_size' must be in [16, 256]"),
        ({"confusion_pairs": [0, 2]}, "half the smallest class count"),
        ({"triggers": {"fraction": [0.0, 0.2]}}, "'triggers.fraction' must be in (0.0, 1.0]"),
        ({"triggers": {"types": ["polygon", "wanet"]}}, "'triggers.types' has 'wanet'"),
        ({"triggers": {"source_modes": [1, 3]}}, "'triggers.source_modes' has 3"),
        ({"triggers": {"per_model": [2]}}, "'classes' must start at >= 4"),
        ({"triggers": {"instagram": {"filters": ["sepia"]}}}, "'triggers.instagram.filters' has 'sepia'"),
        ({"training": {"epochs": 0}}, "'training.epochs' must be in [1, 1000]"),
        ({"training": {"bf16": "yes"}}, "'training.bf16' must be true, false or auto"),
        ({"training": {"optimizer": "lbfgs"}}, "'training.optimizer' must be one of"),
        ({"training": {"adversarial": {"eps": [-4]}}}, "'training.adversarial.eps' must be in (0.0, 255.0]"),
        ({"quality": {"min_clean_accuracy": 1.5}}, "'quality.min_clean_accuracy' must be in [0.0, 1.0]"),
        ({"data": {"augment": {"rotation": 5}}}, "'data.augment' is invalid"),
        ({"name": "a/b"}, "'name' must be 1-100 letters"),
        ({"signs": {"fills": ["red", "teal"]}}, "'signs.fills' has 'teal'"),
        ({"signs": {"fill": ["red"]}}, "unknown key 'signs.fill'"),
        ({"signs": {"colour_cues": False}}, "needs 'signs.fills'"),
        (
            {"signs": {"fills": ["red", "blue"], "colour_cues": "no"}},
            "'signs.colour_cues' must be true or false",
        ),
        ({"classes": [10, 10], "signs": {"fills": ["red"]}}, "'signs.fills' are too few"),
    ],
)
def test_bad_values_are_rejected(overrides, fragment) -> None:
    assert fragment in _error(micro_spec(**overrides))


def test_bad_architectures_are_rejected() -> None:
    message = _error(micro_spec(architectures=[{"name": "resnet99"}]))
    assert "'architectures[0].name' must be a registered architecture" in message and "vgg11_bn" in message
    message = _error(micro_spec(architectures=[{"name": "vgg11_bn", "kwargs": {"depth": 3}}]))
    assert "'architectures[0].kwargs' has 'depth'" in message and "['width']" in message
    assert "'architectures' must be a non-empty list" in _error(micro_spec(architectures=[]))
    assert "unknown key 'architectures[0].width'" in _error(
        micro_spec(architectures=[{"name": "cnn", "width": 1}])
    )
    assert "is required" in _error({"seed": 1})


def test_json_and_yaml_specs_and_the_canonical_form(tmp_path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(micro_spec(name="from-json")))
    spec_json = load_spec(tmp_path / "a.json")
    data = micro_spec()
    del data["name"]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(data))
    spec_yaml = load_spec(tmp_path / "b.yaml")
    assert spec_yaml.name == "b" and spec_json.name == "from-json"  # default name: the file stem
    assert parse_spec(spec_yaml.to_dict()) == spec_yaml
    assert spec_yaml.digest() == parse_spec(spec_yaml.to_dict()).digest()
    (tmp_path / "bad.yaml").write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")


def test_designs_balance_roles_architectures_and_trigger_types() -> None:
    spec = parse_spec(
        micro_spec(
            models={"clean": 8, "trojaned": 8},
            classes=[4, 6],
            architectures=[{"name": "cnn"}, {"name": "vgg11_bn", "kwargs": {"width": 0.25}}],
            triggers={"types": ["polygon", "instagram"]},
        )
    )
    all_designs = designs(spec)
    assert designs(spec) == all_designs
    assert sum(d.poisoned for d in all_designs) == 8
    assert [d.poisoned for d in all_designs] != [False] * 8 + [True] * 8  # roles are shuffled
    for poisoned in (False, True):
        archs = Counter(d.architecture.name for d in all_designs if d.poisoned == poisoned)
        assert archs == {"cnn": 4, "vgg11_bn": 4}
    combos = Counter((d.architecture.name, d.trigger_type) for d in all_designs if d.poisoned)
    assert set(combos.values()) == {2} and len(combos) == 4  # no architecture gets only one trigger type
    assert len({d.model_seed for d in all_designs}) == 16


def test_draws_are_deterministic_and_attempts_redraw() -> None:
    spec = parse_spec(
        micro_spec(classes=[4, 8], triggers={"types": ["polygon"], "source_modes": [1, 2, "all"]})
    )
    design = next(d for d in designs(spec) if d.poisoned)
    first, again, retry = (
        draw_model(spec, design, 0),
        draw_model(spec, design, 0),
        draw_model(spec, design, 1),
    )
    assert first == again
    assert retry.seed != first.seed and retry.design == first.design
    (attack,) = first.attacks
    assert attack.target_class not in attack.source_classes
    assert attack.trigger.type == "polygon"
    assert recipe_hash(spec, design) == recipe_hash(parse_spec(spec.to_dict()), design)


def test_two_trigger_models_are_one_to_one_with_distinct_targets() -> None:
    spec = parse_spec(
        micro_spec(
            models={"clean": 0, "trojaned": 24},
            classes=[5, 8],
            triggers={"types": ["polygon", "instagram"], "per_model": [2], "shared_source_probability": 0.5},
        )
    )
    shared = 0
    for design in designs(spec):
        first, second = draw_model(spec, design).attacks
        assert len(first.source_classes) == len(second.source_classes) == 1
        assert first.target_class != second.target_class
        assert first.trigger != second.trigger
        shared += first.source_classes == second.source_classes
    assert 0 < shared < 24


def test_polygon_colours_contrast_with_the_source_signs() -> None:
    from exray.data.signs import PALETTE

    spec = parse_spec(micro_spec(models={"clean": 0, "trojaned": 20}, triggers={"types": ["polygon"]}))
    for design in designs(spec):
        draw = draw_model(spec, design)
        (attack,) = draw.attacks
        fill = [c / 255 for c in PALETTE[draw.classes[attack.source_classes[0]].fill]]
        assert sum((a - b) ** 2 for a, b in zip(fill, attack.trigger.color)) ** 0.5 >= 0.25


def test_shipped_specs() -> None:
    tiny, demo, r2 = (load_spec(ZOOS / f"{n}.yaml") for n in ("tiny", "demo", "r2-like"))
    assert (tiny.models.clean, tiny.models.trojaned) == (2, 2)
    assert sorted(d.trigger_type for d in designs(tiny) if d.poisoned) == ["instagram", "polygon"]
    assert (demo.models.clean, demo.models.trojaned) == (5, 5) and demo.image_size == 32
    assert {"polygon", "instagram"} <= set(demo.triggers.types) and demo.signs.fills is not None
    v1 = load_spec(ZOOS / "demo-v1.yaml")
    assert (v1.models.clean, v1.models.trojaned) == (6, 6) and v1.signs.fills is None
    assert r2.num_models >= 40 and len({a.name for a in r2.architectures}) >= 4
    assert r2.classes == (5, 10) and r2.data.examples_per_class == (10, 20) and r2.confusion_pairs[1] >= 1
    assert "polygon" in r2.triggers.types and {"instagram", "color_transform"} & set(r2.triggers.types)


def test_shared_fill_design_reaches_every_model_and_keeps_old_digests() -> None:
    plain = parse_spec(micro_spec())
    assert "signs" not in plain.to_dict()  # specs written before 'signs' keep their digests
    shared = parse_spec(micro_spec(signs={"fills": ["blue", "white"]}))
    assert shared.signs.fills == ("blue", "white") and parse_spec(shared.to_dict()) == shared
    assert shared.digest() != plain.digest()
    assert "colour_cues" not in shared.to_dict()["signs"]  # default left out: v2 pilot digests kept
    plain_colours = parse_spec(micro_spec(signs={"fills": ["blue", "white"], "colour_cues": False}))
    assert plain_colours.to_dict()["signs"]["colour_cues"] is False
    assert parse_spec(plain_colours.to_dict()) == plain_colours and plain_colours.digest() != shared.digest()
    explicit_default = parse_spec(micro_spec(signs={"fills": None}))
    assert explicit_default == plain and explicit_default.digest() == plain.digest()
    # the first demo spec's digest as computed before 'signs' existed (107c462): its built zoos stay valid
    assert load_spec(ZOOS / "demo-v1.yaml").digest().startswith("ca8b11dd56347e51")
    for design in designs(shared):
        assert {c.fill for c in draw_model(shared, design).classes} <= {"blue", "white"}


def test_v2_specs_meet_the_population_design() -> None:
    """Issue 16: >= 128 channels at EX-RAY's default layer on maps >= 4×4, >= 1,000 images per class,
    shared fill colours."""
    import torch

    from exray.models import build_model
    from exray.models.layers import layer_shape

    for path in sorted(ZOOS.glob("**/*.yaml")):
        spec = load_spec(path)
        if spec.signs.fills is None:
            continue
        assert spec.data.train_per_class >= 1000, path
        sample = torch.rand(1, 3, spec.image_size, spec.image_size)
        for arch in spec.architectures:
            model = build_model(arch.name, spec.classes[0], **arch.kwargs).eval()
            _, (channels, height, width) = layer_shape(model, None, sample)
            assert channels >= 128 and min(height, width) >= 4, (path, arch)
