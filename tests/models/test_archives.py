"""TorchScript archives, torch.export programs and stated input normalisation (issue 18 §2): the weights load
into the architecture config.json names without running the file's program, hostile archives are refused
without running anything, and the loaded model computes what the saved one did."""

import json
import pickle
import zipfile

import pytest
import torch

from exray.errors import ModelLoadError
from exray.models import build_model
from exray.models.io import input_image_size, load_model, model_info
from exray.models.layers import LayerCut

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

ARCH = {"architecture": "cnn", "arch_kwargs": {"channels": [4, 8]}, "num_classes": 3}


@pytest.fixture(scope="module")
def original():
    torch.manual_seed(0)
    model = build_model("cnn", 3, channels=[4, 8]).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that buffers are checked too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _directory(tmp_path, name, config=ARCH):
    directory = tmp_path / name
    directory.mkdir()
    if config is not None:
        (directory / "config.json").write_text(json.dumps(config))
    return directory


def _images(side=16):
    return torch.rand(4, 3, side, side, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("file", ["model.ts", "model.pt"])  # a TorchScript model.pt is recognised as such
def test_a_torchscript_archive_loads_into_the_named_architecture(original, tmp_path, file):
    directory = _directory(tmp_path, "ts", {**ARCH, "input_size": [3, 16, 16]})
    torch.jit.script(original).save(str(directory / file))
    model = load_model(directory, device="cpu")
    assert type(model).__name__ != "RecursiveScriptModule"  # exray's own module: it takes hooks
    assert torch.allclose(model(_images()), original(_images()), atol=1e-6)
    assert input_image_size(model) == (16, 16)


def test_a_torchscript_archive_without_an_architecture_is_refused_with_the_reason(original, tmp_path):
    directory = _directory(tmp_path, "bare", None)
    torch.jit.script(original).save(str(directory / "model.ts"))
    with pytest.raises(ModelLoadError, match="config.json beside it names"):
        load_model(directory)


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_hostile_torchscript_archive_is_refused_without_running(original, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    directory = _directory(tmp_path, "hostile")
    clean = tmp_path / "clean.ts"
    torch.jit.script(original).save(str(clean))
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(directory / "model.ts", "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith("/data.pkl"):
                data = pickle.dumps({"weight": _Payload()}, protocol=2)
            target.writestr(item, data)
    with pytest.raises(ModelLoadError, match="refused to load .*system"):
        load_model(directory)
    assert not (tmp_path / "PWNED").exists()


def test_a_torch_export_program_loads_with_its_input_size(original, tmp_path, monkeypatch):
    directory = _directory(tmp_path, "pt2")
    program = torch.export.export(original, (_images(24),))
    torch.export.save(program, str(directory / "model.pt2"))
    model = load_model(directory, device="cpu")
    assert torch.allclose(model(_images(24)), original(_images(24)), atol=1e-6)
    assert model_info(model).input_size == (3, 24, 24)
    # the archive's pickled parts (its sample inputs) are never read: a payload there runs nothing
    monkeypatch.chdir(tmp_path)
    hostile = _directory(tmp_path, "pt2-hostile")
    with (
        zipfile.ZipFile(directory / "model.pt2") as source,
        zipfile.ZipFile(hostile / "model.pt2", "w") as out,
    ):
        for item in source.infolist():
            data = source.read(item.filename)
            out.writestr(item, pickle.dumps(_Payload()) if "sample_inputs" in item.filename else data)
    load_model(hostile)
    assert not (tmp_path / "PWNED").exists()


def test_a_truncated_export_archive_is_a_load_error(original, tmp_path):
    directory = _directory(tmp_path, "cut")
    torch.export.save(torch.export.export(original, (_images(),)), str(directory / "model.pt2"))
    data = (directory / "model.pt2").read_bytes()
    (directory / "model.pt2").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError):
        load_model(directory)


def test_stated_normalisation_is_the_first_step_of_forward(original, tmp_path):
    """A model trained on normalised inputs gets [0, 1] images from exray: config.json's normalization
    runs first, inside forward, so module names and the fx layer cut are unchanged."""
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    directory = _directory(tmp_path, "norm", {**ARCH, "normalization": {"mean": mean, "std": std}})
    torch.jit.script(original).save(str(directory / "model.ts"))
    model = load_model(directory, device="cpu")
    images = _images()
    expected = original((images - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(model(images), expected, atol=1e-5)
    assert [n for n, _ in model.named_modules()] == [n for n, _ in original.named_modules()]
    assert set(model.state_dict()) == set(original.state_dict())  # mean and std are not weights
    layer = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)][-1]
    cut = LayerCut(model, layer, backend="fx")  # the normalisation is traced with the rest
    assert torch.allclose(cut.suffix(cut.features(images)), expected, atol=1e-5)


@pytest.mark.parametrize(
    "normalization",
    [{"mean": [0.5]}, {"mean": [0.5], "std": [0.0]}, {"mean": [0.1, 0.2], "std": [1.0]}, [0.5, 0.5]],
)
def test_bad_normalisation_is_a_load_error(original, tmp_path, normalization):
    directory = _directory(tmp_path, "bad", {**ARCH, "normalization": normalization})
    torch.jit.script(original).save(str(directory / "model.ts"))
    with pytest.raises(ModelLoadError, match="normalization"):
        load_model(directory)


def _rewrite(source, target, change):
    """Copy the zip ``source`` to ``target`` with ``change(name, data) -> data`` applied to each member."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for item in src.infolist():
            out.writestr(item, change(item.filename, src.read(item.filename)))


def test_an_export_weight_expanded_by_stride_zero_is_refused(original, tmp_path):
    """A few bytes viewed with stride 0 as a huge tensor would clone to gigabytes: refused at once."""
    source = tmp_path / "source.pt2"
    torch.export.save(torch.export.export(original, (_images(),)), str(source))
    directory = _directory(tmp_path, "stride0")

    def huge(name, data):
        if not name.endswith("model_weights_config.json"):
            return data
        config = json.loads(data)
        meta = next(iter(config["config"].values()))["tensor_meta"]
        meta["sizes"] = [{"as_int": 2**17}, {"as_int": 2**17}]
        meta["strides"] = [{"as_int": 0}, {"as_int": 0}]
        return json.dumps(config).encode()

    _rewrite(source, directory / "model.pt2", huge)
    with pytest.raises(ModelLoadError, match="larger than its storage"):
        load_model(directory)


def test_a_malformed_export_program_is_a_load_error_or_ignored(original, tmp_path):
    source = tmp_path / "source.pt2"
    torch.export.save(torch.export.export(original, (_images(),)), str(source))
    listed = _directory(tmp_path, "listed", {**ARCH, "input_size": [3, 16, 16]})
    _rewrite(source, listed / "model.pt2", lambda n, d: b"[1, 2]" if n.endswith("models/model.json") else d)
    assert input_image_size(load_model(listed)) == (16, 16)  # no input size from it; the config's stands
    broken = _directory(tmp_path, "broken")
    _rewrite(source, broken / "model.pt2", lambda n, d: b"{" if n.endswith("weights_config.json") else d)
    with pytest.raises(ModelLoadError, match="unreadable torch.export archive"):
        load_model(broken)


def test_torchscript_records_in_a_cycle_are_refused(original, tmp_path):
    """Module records that contain themselves (or nest without end) would recurse for ever."""
    import sys
    import types

    module = types.ModuleType("__torch__.cyclic")

    class Record:
        pass

    Record.__module__, Record.__qualname__ = module.__name__, "Record"
    module.Record = Record
    added = {"__torch__": types.ModuleType("__torch__"), module.__name__: module}
    added = {k: v for k, v in added.items() if k not in sys.modules}
    sys.modules.update(added)
    try:
        loop = Record()
        loop.__dict__.update({"training": False, "child": loop})
        payload = pickle.dumps(loop, protocol=2)
    finally:
        for name in added:
            del sys.modules[name]
    directory = _directory(tmp_path, "cycle")
    clean = tmp_path / "clean.ts"
    torch.jit.script(original).save(str(clean))
    _rewrite(clean, directory / "model.ts", lambda n, d: payload if n.endswith("/data.pkl") else d)
    with pytest.raises(ModelLoadError, match="cycle"):
        load_model(directory)
