"""Zoo builds: layout, METADATA.csv, resume after an interrupted build, spec-change detection, error and
quality-failure reporting, parallel workers — on a micro spec that trains in about a second per model."""

import csv
import json

import pytest
import torch

import exray
from exray.cli import main
from exray.errors import ConfigError, ExrayError
from exray.models import capture
from exray.utils import intra_op_threads
from exray.zoo import (
    METADATA_COLUMNS,
    build_zoo,
    cache_dir,
    cached_build,
    load_spec,
    parse_spec,
    read_metadata,
)

from .conftest import micro_spec, write_spec


class Abort(Exception):
    """Stands in for a kill: raised from the progress callback after the first finished model."""


def _abort_after_first(record) -> None:
    raise Abort(record.name)


def test_interrupted_build_resumes_without_retraining(tmp_path) -> None:
    spec, out = parse_spec(micro_spec()), tmp_path / "zoo"
    with pytest.raises(Abort, match="id-00000000"):
        build_zoo(spec, out, progress=False, on_model=_abort_after_first)
    first = out / "id-00000000" / "model.safetensors"
    assert first.exists() and not (out / "id-00000001").exists()
    stamp = first.stat().st_mtime_ns
    assert [r["name"] for r in read_metadata(out)] == ["id-00000000"]
    # A kill in the middle of writing the second model leaves only a hidden partial directory.
    (out / ".id-00000001.partial").mkdir()
    (out / ".id-00000001.partial" / "config.json").write_text("{")

    trained = []
    summary = build_zoo(spec, out, progress=False, on_model=lambda r: trained.append(r.name))
    assert trained == ["id-00000001"]
    assert summary.reused == ("id-00000000",) and summary.built == ("id-00000001",) and summary.ok
    assert first.stat().st_mtime_ns == stamp
    assert not list(out.glob(".*partial"))
    again = build_zoo(spec, out, progress=False, on_model=lambda r: trained.append(r.name))
    assert trained == ["id-00000001"] and again.reused == ("id-00000000", "id-00000001")


def test_two_builds_never_write_one_directory_at_once(tmp_path) -> None:
    spec, out = parse_spec(micro_spec()), tmp_path / "zoo"
    refused = []

    def start_another(record) -> None:
        with pytest.raises(ConfigError, match="another exray zoo build is running") as info:
            build_zoo(spec, out, progress=False)
        refused.append(str(info.value))

    build_zoo(spec, out, progress=False, on_model=start_another)
    assert len(refused) == 2


def test_layout_metadata_and_ground_truth(tmp_path) -> None:
    out = tmp_path / "zoo"
    summary = build_zoo(parse_spec(micro_spec()), out, progress=False)
    rows = read_metadata(out)
    assert [r["name"] for r in rows] == ["id-00000000", "id-00000001"]
    assert list(rows[0]) == list(METADATA_COLUMNS)
    assert sorted(r["poisoned"] for r in rows) == ["False", "True"]
    for row, record in zip(rows, summary.records):
        directory = out / row["name"]
        config = json.loads((directory / "config.json").read_text())
        assert (directory / "ground_truth.csv").read_text().strip() == str(int(config["poisoned"]))
        assert row["status"] == "ok" and row["architecture"] == "cnn" and row["seed"] == str(config["seed"])
        assert float(row["clean_accuracy"]) == pytest.approx(config["clean_accuracy"], abs=1e-4)
        model = exray.load_model(directory)
        examples = exray.load_examples(directory)
        assert sorted(examples) == [0, 1, 2] and all(x.shape == (2, 3, 16, 16) for x in examples.values())
        assert model(examples[0]).shape == (2, 3)
        # EX-RAY's default layer, as the method sees it (channels and map size per model)
        with torch.no_grad(), capture(model, [config["exray_layer"]["layer"]]) as seen:
            model(examples[0])
        (c, h, w) = seen[config["exray_layer"]["layer"]].shape[1:]
        assert config["exray_layer"]["channels"] == c and config["exray_layer"]["map"] == [h, w]
        assert row["layer_channels"] == str(c) and row["layer_map"] == f"{h}×{w}"
        assert config["zoo"]["recipe_hash"] and config["exray_version"] == exray.__version__
        assert len(config["sign_classes"]) == 3 and config["training"]["epochs"] == 1
        if config["poisoned"]:
            (trigger,) = config["triggers"]
            assert trigger["type"] == "instagram" and trigger["name"] in {
                "gotham",
                "nashville",
                "kelvin",
                "lomo",
                "toaster",
            }
            assert row["trigger_type"] == "instagram"
            assert row["source_classes"] == " ".join(map(str, trigger["source_classes"]))
            assert row["target_class"] == str(trigger["target_class"])
            assert record.attack_success_rate == config["attack_success_rate"] is not None
        else:
            assert (
                config["triggers"] == []
                and row["trigger_type"] == ""
                and config["attack_success_rate"] is None
            )
    state = json.loads((out / "zoo.json").read_text())
    assert state["complete"] and state["ok"] and state["spec"]["name"] == "micro"


def test_a_changed_spec_is_refused_then_rebuilt_on_request(tmp_path) -> None:
    out = tmp_path / "zoo"
    build_zoo(parse_spec(micro_spec()), out, progress=False)
    changed = parse_spec(micro_spec(training={"epochs": 2, "batch_size": 32}))
    with pytest.raises(ConfigError) as info:
        build_zoo(changed, out, progress=False)
    message = str(info.value)
    assert "id-00000000" in message and "id-00000001" in message and "spec.training.epochs: 1 -> 2" in message
    assert "--rebuild" in message
    # Renaming the zoo or the spec file does not change any model.
    assert build_zoo(parse_spec(micro_spec(name="renamed")), out, progress=False).reused == (
        "id-00000000",
        "id-00000001",
    )
    fewer = parse_spec(micro_spec(models={"clean": 1, "trojaned": 0}))
    with pytest.raises(ConfigError, match="not in the spec any more|recipe"):
        build_zoo(fewer, out, progress=False)
    summary = build_zoo(changed, out, progress=False, rebuild=True)
    assert summary.rebuilt == ("id-00000000", "id-00000001") and summary.ok
    assert json.loads((out / "id-00000000" / "config.json").read_text())["training"]["epochs"] == 2


def test_errors_are_recorded_and_the_build_goes_on(tmp_path, monkeypatch) -> None:
    from exray.zoo import build as build_module

    real = build_module.build_model_dir

    def flaky(spec, design, out, *, progress=False, device="cpu"):
        if design.index == 0:
            raise RuntimeError("simulated failure")
        return real(spec, design, out, progress=progress, device=device)

    monkeypatch.setattr(build_module, "build_model_dir", flaky)
    out = tmp_path / "zoo"
    summary = build_zoo(parse_spec(micro_spec()), out, progress=False)
    assert not summary.ok and [r.name for r in summary.errors] == ["id-00000000"]
    assert (out / "id-00000001" / "model.safetensors").exists()
    rows = {r["name"]: r for r in read_metadata(out)}
    assert rows["id-00000000"]["status"] == "error" and "simulated failure" in rows["id-00000000"]["error"]
    state = json.loads((out / "zoo.json").read_text())
    assert not state["complete"] and "simulated failure" in state["tracebacks"]["id-00000000"]
    monkeypatch.setattr(build_module, "build_model_dir", real)
    retried = build_zoo(parse_spec(micro_spec()), out, progress=False)  # the failed model is retried
    assert retried.built == ("id-00000000",) and retried.ok


def test_models_below_the_quality_bar_are_retried_then_reported(tmp_path, capsys) -> None:
    spec = micro_spec(
        models={"clean": 1, "trojaned": 0},
        data={
            "train_per_class": 10,
            "test_per_class": 30,
            "attack_per_class": 10,
            "examples_per_class": [1, 1],
        },
        quality={"min_clean_accuracy": 1.0, "attempts": 2},
    )
    path, out = write_spec(tmp_path / "strict.yaml", spec), tmp_path / "zoo"
    assert main(["zoo", "build", str(path), "--out", str(out), "--quiet"]) == 1
    printed = capsys.readouterr().out
    assert "failed_quality" in printed and "below the quality bar 1" in printed
    (row,) = read_metadata(out)
    assert row["status"] == "failed_quality" and row["attempts"] == "2"
    config = json.loads((out / "id-00000000" / "config.json").read_text())
    assert config["quality"]["passed"] is False and len(config["quality"]["attempts"]) == 2
    assert len({a["seed"] for a in config["quality"]["attempts"]}) == 2  # each attempt redraws its seed


def test_a_cached_zoo_with_models_below_the_bar_is_refused_unless_a_study_allows_them(tmp_path) -> None:
    """A cached zoo is a fixture others rely on (refused when a model misses the bar); a study measures a
    population as it came out (allow_failed: returned, METADATA marks the failures)."""
    spec = parse_spec(
        micro_spec(
            models={"clean": 1, "trojaned": 0},
            data={"train_per_class": 10, "test_per_class": 30, "attack_per_class": 10,
                  "examples_per_class": [1, 1]},
            quality={"min_clean_accuracy": 1.0, "attempts": 1},
        )
    )  # fmt: skip
    with pytest.raises(ExrayError, match="below the quality bar"):
        cached_build(spec, tmp_path / "cache")
    out = cached_build(spec, tmp_path / "cache", allow_failed=True)
    (row,) = read_metadata(out)
    assert row["status"] == "failed_quality"


@pytest.mark.slow
def test_parallel_workers_and_the_cli(tmp_path, capsys) -> None:
    path, out = write_spec(tmp_path / "micro.yaml", micro_spec()), tmp_path / "zoo"
    assert main(["zoo", "build", str(path), "--out", str(out), "--workers", "2", "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and sorted(summary["built"]) == ["id-00000000", "id-00000001"]
    with (out / "METADATA.csv").open() as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == ["ok", "ok"]
    assert load_spec(path).num_models == 2
    assert main(["zoo", "build", str(tmp_path / "missing.yaml"), "--out", str(out), "--quiet"]) == 2


@pytest.mark.slow
def test_weights_do_not_depend_on_workers_or_the_callers_threads(tmp_path) -> None:
    spec = parse_spec(
        micro_spec(
            image_size=32,
            architectures=[{"name": "vgg11_bn", "kwargs": {"width": 0.25}}],
            models={"clean": 1, "trojaned": 1},
        )
    )
    with intra_op_threads(2):
        build_zoo(spec, tmp_path / "in-process", workers=1, progress=False)
    build_zoo(spec, tmp_path / "parallel", workers=2, progress=False)
    for name in ("id-00000000", "id-00000001"):
        weights = [
            (tmp_path / zoo / name / "model.safetensors").read_bytes() for zoo in ("in-process", "parallel")
        ]
        assert weights[0] == weights[1], name


def test_train_threads_are_recorded_and_a_cached_build_on_other_threads_lives_apart(tmp_path) -> None:
    """Another thread count trains other weights (as another CPU does): the count is a build setting,
    recorded per model, and the cache keeps such a build apart from the one-thread build."""
    spec = parse_spec(micro_spec())
    summary = build_zoo(spec, tmp_path / "zoo", workers=1, progress=False, train_threads=2)
    assert summary.ok
    config = json.loads((tmp_path / "zoo" / "id-00000000" / "config.json").read_text())
    assert config["training"]["threads"] == 2
    assert cache_dir(spec, tmp_path).name + "-t2" == cache_dir(spec, tmp_path, train_threads=2).name
    with pytest.raises(ConfigError, match="trained on 2 thread"):  # resuming never mixes thread counts
        build_zoo(spec, tmp_path / "zoo", progress=False, train_threads=1)
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="train_threads"):
            build_zoo(spec, tmp_path / "bad", train_threads=bad)


def test_the_training_device_is_a_build_setting(tmp_path, monkeypatch) -> None:
    """A GPU trains other weights: a model trained on one records its device, resuming on another device
    refuses to mix them, and the cache keeps a GPU build apart; a CPU build records nothing new (its
    models stay finished)."""
    spec = parse_spec(micro_spec(models={"clean": 1, "trojaned": 0}))
    assert build_zoo(spec, tmp_path / "zoo", progress=False, device="cpu").ok
    path = tmp_path / "zoo" / "id-00000000" / "config.json"
    config = json.loads(path.read_text())
    assert "device" not in config["training"]
    config["training"]["device"] = "cuda"  # as a GPU build writes it
    path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="on cuda, this build trains on 1 on cpu"):
        build_zoo(spec, tmp_path / "zoo", progress=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert cache_dir(spec, tmp_path, device="cuda").name == cache_dir(spec, tmp_path).name + "-cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        build_zoo(spec, tmp_path / "other", device="cuda")


def test_reflection_and_warp_trojans_are_drawn_rendered_and_recorded(tmp_path) -> None:
    """The semantic attacks that are image triggers (Refool's reflection, WaNet's warp; issue 19) as zoo
    trigger types: drawn from their spec sections, stamped into the poisoned data, recorded so that the
    trigger rebuilds from config.json and its ground truth reads; a spec without them keeps its digest."""
    from exray.attacks import Attack

    spec = micro_spec(
        models={"clean": 0, "trojaned": 2},
        triggers={"types": ["reflection", "warp"], "source_modes": [1], "fraction": [0.5, 0.5],
                  "reflection": {"modes": ["ghost"], "weight": [0.3, 0.3]}, "warp": {"strength": [1.0, 1.0]}},
    )  # fmt: skip
    out = tmp_path / "zoo"
    build_zoo(parse_spec(spec), out, progress=False)
    kinds = {}
    for row in read_metadata(out):
        config = json.loads((out / row["name"] / "config.json").read_text())
        (recorded,) = config["triggers"]
        rebuilt = Attack.from_config(recorded).trigger
        kinds[row["trigger_type"]] = rebuilt
        images = exray.load_examples(out / row["name"])[0]
        assert not torch.equal(rebuilt.apply(images), images)  # it changes the image
    assert set(kinds) == {"reflection", "warp"}
    assert kinds["reflection"].mode == "ghost" and kinds["reflection"].weight == pytest.approx(0.3)
    assert kinds["warp"].strength == pytest.approx(1.0)
    plain = parse_spec(micro_spec())
    assert "reflection" not in plain.to_dict()["triggers"] and "warp" not in plain.to_dict()["triggers"]
    with pytest.raises(ConfigError, match="modes"):
        parse_spec(micro_spec(triggers={"types": ["reflection"], "reflection": {"modes": ["mirror"]}}))


def test_bf16_auto_builds_are_kept_apart_by_the_precision_they_ran_in(tmp_path, monkeypatch) -> None:
    """`bf16: auto` trains in bf16 on one machine and fp32 on another (other weights): the cache directory
    says which, and resuming a build never mixes the two."""
    import exray.models.runtime as runtime
    import exray.zoo.cache as cache_module

    spec = parse_spec(micro_spec(models={"clean": 1, "trojaned": 0}, training={"epochs": 1, "bf16": "auto"}))
    for native, suffix in ((True, "-bf16"), (False, "-fp32")):
        monkeypatch.setattr(cache_module, "native_bf16", lambda device, native=native: native)
        assert cache_dir(spec, tmp_path).name.endswith(suffix)
    fixed = parse_spec(micro_spec(models={"clean": 1, "trojaned": 0}, training={"epochs": 1, "bf16": False}))
    assert not cache_dir(fixed, tmp_path).name.endswith(("-bf16", "-fp32"))  # no machine-dependent setting
    assert build_zoo(spec, tmp_path / "zoo", progress=False).ok
    config = json.loads((tmp_path / "zoo" / "id-00000000" / "config.json").read_text())
    ran = config["training"]["bf16_resolved"]  # what auto ran here (this machine's answer)
    assert build_zoo(spec, tmp_path / "zoo", progress=False).ok  # resuming on the same machine: finished
    monkeypatch.setattr(runtime, "native_bf16", lambda device: not ran)  # the other kind of machine
    names = {True: "bf16", False: "fp32"}
    with pytest.raises(ConfigError, match=f"in {names[ran]}; auto runs {names[not ran]}"):
        build_zoo(spec, tmp_path / "zoo", progress=False)
