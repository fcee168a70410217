import json

import pytest
import torch

from exray.cli import main
from exray.data.images import write_image
from exray.models import build_model
from exray.models.analytic import symbol_images
from exray.models.io import save_model

VOTES = [{"red": 2}, {"green": 2.5, "magenta": 3}, {"blue": 2}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    model = build_model("colour_detectors", 3, votes=VOTES, bias=[0, 0.1, 0.05])
    save_model(model, root, input_size=(3, 12, 12), metadata={"poisoned": True})
    examples = root / "clean-example-data"
    examples.mkdir()
    for label, colour in enumerate(["red", "green", "blue"]):
        for k, image in enumerate(symbol_images(colour, 6, seed=label)):
            write_image(examples / f"class_{label}_example_{k}.png", image)
    for name, patch in (("injected", "magenta"), ("natural", "green")):
        (root / name).mkdir()
        for k, image in enumerate(symbol_images("red", 6, seed=0, patch=patch)):
            write_image(root / name / f"class_0_example_{k}.png", image)
    return root


@pytest.mark.parametrize(("stamped", "word"), [("injected", "INJECTED"), ("natural", "NATURAL")])
def test_diff_prints_the_verdict_and_writes_masks(model_dir, tmp_path, capsys, stamped, word):
    out = tmp_path / "masks.json"
    args = ["diff", str(model_dir), "--victim", "0", "--target", "1", "--stamped", str(model_dir / stamped)]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(word)
    record = json.loads(out.read_text())
    assert record["verdict"]["natural"] is (word == "NATURAL")
    assert len(record["verdict"]["m1"]) == len(record["verdict"]["m2"]) == 8
    assert record["versions"]["torch"] == torch.__version__


def test_diff_json_output(model_dir, tmp_path, capsys):
    args = [
        "diff",
        str(model_dir),
        "--victim",
        "0",
        "--target",
        "1",
        "--stamped",
        str(model_dir / "injected"),
    ]
    assert main([*args, "--out", str(tmp_path / "m.json"), "--quiet", "--json", "--epochs", "50"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"]["policy"] == "exf_mask"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--victim", "0", "--target", "7"], "no example images of class 7"),
        (["--victim", "0", "--target", "1", "--layer", "nope"], "no module named 'nope'"),
    ],
)
def test_diff_errors_are_reported_not_raised(model_dir, tmp_path, capsys, extra, message):
    code = main(
        [
            "diff",
            str(model_dir),
            "--stamped",
            str(model_dir / "natural"),
            "--quiet",
            *extra,
            "--out",
            str(tmp_path / "x.json"),
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_diff_refuses_pickled_models_without_opt_in(tmp_path, capsys):
    torch.save(build_model("cnn", 3, width=0.125), tmp_path / "model.pt")
    code = main(["diff", str(tmp_path), "--victim", "0", "--target", "1", "--stamped", str(tmp_path)])
    assert code == 2
    assert "--trust-pickle" in capsys.readouterr().err


def test_demo_tells_the_planted_trigger_from_the_natural_one(tmp_path, capsys):
    assert main(["demo", "--analytic", "--quiet", "--json", "--out", str(tmp_path)]) == 0
    verdicts = json.loads(capsys.readouterr().out)
    assert [v["natural"] for v in verdicts] == [False, True]
    assert (tmp_path / "demo-verdicts.json").exists()


def test_demo_applies_the_shipped_calibration_to_the_shipped_spec_and_settings_only(tmp_path):
    """issue 16 §6: the calibration fitted on demo-calib.yaml belongs to the demo's design and settings;
    another spec, layer or rule gets the default constants, and a file given on the command line wins."""
    from exray.evaluation.demo import SHIPPED_ZOOS, demo_calibration, demo_config
    from exray.pipeline import Calibration

    config = demo_config()
    settings = config.to_dict()
    shipped = tmp_path / "demo-calibration.json"
    Calibration(threshold=0.8).save(shipped, {"fitted_on": "demo-calib.yaml", "settings": settings})
    demo_spec, other = SHIPPED_ZOOS / "demo.yaml", SHIPPED_ZOOS / "tiny.yaml"
    path, source = demo_calibration(demo_spec, None, config, shipped)
    assert path == shipped and "demo-calib.yaml" in source
    assert demo_calibration(other, None, config, shipped) == (None, "default")
    mine = tmp_path / "mine.json"
    assert demo_calibration(other, mine, config, shipped) == (mine, f"from {mine}")
    assert demo_calibration(demo_spec, None, config, tmp_path / "absent.json")[0] is None
    path, source = demo_calibration(demo_spec, None, demo_config(layer="block:1"), shipped)
    assert path is None and "layer" in source
    assert demo_config().calibration == Calibration()


@pytest.mark.parametrize("native", [True, False])
def test_precision_auto_is_resolved_on_the_device_the_masks_run_on(native, monkeypatch):
    import argparse

    from exray.cli.common import add_device_flag, add_refinement_flags, mask_config
    from exray.differencing import config as mask_settings

    monkeypatch.setattr(mask_settings, "native_bf16", lambda device: native)
    parser = argparse.ArgumentParser()
    add_refinement_flags(parser.add_argument_group())
    add_device_flag(parser, default="cpu")
    assert mask_config(parser.parse_args(["--precision", "auto"])).precision == ("bf16" if native else "fp32")
    assert mask_config(parser.parse_args([])).precision == "fp32"  # the default stays fp32
