import json
import pickle

import pytest
import torch

from exray.errors import ModelLoadError, UntrustedModelError
from exray.models import build_model
from exray.models.io import load_model, model_info, save_model


def _trained_looking(name="vgg11_bn"):
    torch.manual_seed(0)
    model = build_model(name, 4, width=0.125)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # move the BatchNorm running statistics away from their initial values
            model(torch.rand(8, 3, 32, 32))
    return model.eval()


def test_directory_round_trip_rebuilds_the_same_function(tmp_path):
    model = _trained_looking()
    save_model(model, tmp_path / "m", input_size=(3, 32, 32), metadata={"poisoned": True, "seed": 3})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "ground_truth.csv",
        "model.safetensors",
    ]
    loaded = load_model(tmp_path / "m")
    x = torch.rand(5, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    info = model_info(loaded)
    assert (info.architecture, info.num_classes, info.input_size) == ("vgg11_bn", 4, (3, 32, 32))
    assert info.config["seed"] == 3
    assert (tmp_path / "m" / "ground_truth.csv").read_text() == "1\n"


def test_corrupt_weights_are_a_clear_error(tmp_path):
    save_model(_trained_looking(), tmp_path, input_size=(3, 32, 32))
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="corrupt"):
        load_model(tmp_path)


def test_weights_that_do_not_match_the_config(tmp_path):
    save_model(_trained_looking("vgg11_bn"), tmp_path, input_size=(3, 32, 32))
    config = json.loads((tmp_path / "config.json").read_text())
    config["architecture"] = "resnet18"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="does not match resnet18"):
        load_model(tmp_path)


@pytest.mark.parametrize(
    ("config", "message"),
    [("{not json", "not valid JSON"), ('{"architecture": "nope", "num_classes": 3}', "unknown architecture")],
)
def test_bad_config(tmp_path, config, message):
    save_model(_trained_looking(), tmp_path, input_size=(3, 32, 32))
    (tmp_path / "config.json").write_text(config)
    with pytest.raises(ModelLoadError, match=message):
        load_model(tmp_path)


def test_missing_model(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="holds no model"):
        load_model(tmp_path)


class _Exploit:
    """Unpickling this object writes a file: the proof that a pickle was executed."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_pickled_model_is_refused_without_opt_in(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "model.pt", "wb") as fh:
        pickle.dump(_Exploit(marker), fh)
    with pytest.raises(UntrustedModelError, match="trust_pickle=True"):
        load_model(tmp_path)
    assert not marker.exists()  # nothing was unpickled


def test_pickled_model_loads_with_opt_in(tmp_path):
    model = _trained_looking("resnet18")
    torch.save(model, tmp_path / "model.pt")
    loaded = load_model(tmp_path, trust_pickle=True)
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    assert model_info(loaded).num_classes == 4


def test_pickle_that_is_not_a_module(tmp_path):
    torch.save({"state": 1}, tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match="not a whole torch.nn.Module"):
        load_model(tmp_path, trust_pickle=True)
