"""TrojAI's pickled torchvision models load without trusting the pickle (issue 18 §1).

torchvision is not installed (and must not be needed), so the pickles are written with stand-in classes
under torchvision's module paths: subclasses of exray's implementations renamed to torchvision's
``module.qualname``, in throw-away ``sys.modules`` entries that are removed before loading — the file then
names torchvision's classes exactly as a TrojAI ``model.pt`` does, and nothing it names can be imported.
The architectures themselves are checked against torchvision's published parameter counts and key names.
"""

import json
import os
import sys
import types
from contextlib import contextmanager

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from exray.errors import ModelLoadError, UntrustedModelError
from exray.models.io import load_model, model_info
from exray.models.torchvision_compat import BUILDERS, CLASSES
from exray.models.torchvision_compat.mobilenet import ConvBNReLU, MobileNetV2
from exray.models.torchvision_compat.vgg import VGG, make_features

#: torchvision's parameter counts at 1,000 classes (its model documentation).
TORCHVISION_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "vgg11_bn": 132_868_840,
    "vgg13_bn": 133_053_736,
    "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "mobilenet_v2": 3_504_872,
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
    "googlenet": 13_004_888,  # with its auxiliary classifiers, torchvision's default
    "inception_v3": 27_161_264,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETERS))
def test_architectures_have_torchvisions_parameter_counts(name):
    with torch.device("meta"):
        model = BUILDERS[name]()
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMETERS[name]


#: A few state-dict keys of each family, as torchvision names them.
TORCHVISION_KEYS = {
    "resnet18": ["conv1.weight", "bn1.num_batches_tracked", "layer2.0.downsample.1.running_var", "fc.bias"],
    "resnet50": ["layer1.0.conv3.weight", "layer4.2.bn3.running_mean", "layer3.0.downsample.0.weight"],
    "vgg16_bn": ["features.0.weight", "features.1.running_var", "features.41.weight", "classifier.6.bias"],
    "mobilenet_v2": [
        "features.0.0.weight",
        "features.1.conv.0.0.weight",
        "features.2.conv.1.1.bias",
        "features.18.1.running_mean",
        "classifier.1.weight",
    ],
    "densenet121": [
        "features.conv0.weight",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.transition1.conv.weight",
        "features.norm5.running_var",
        "classifier.bias",
    ],
    "squeezenet1_1": [
        "features.0.weight",
        "features.3.squeeze.weight",
        "features.12.expand3x3.bias",
        "classifier.1.weight",
    ],
    "shufflenet_v2_x1_0": [
        "conv1.0.weight",
        "stage2.0.branch1.0.weight",
        "stage2.1.branch2.3.weight",
        "stage4.3.branch2.6.running_mean",
        "conv5.1.running_mean",
        "fc.weight",
    ],
    "googlenet": ["conv1.bn.running_var", "inception3a.branch4.1.conv.weight", "aux2.fc2.bias", "fc.weight"],
    "inception_v3": [
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_6e.branch7x7dbl_5.bn.running_mean",
        "Mixed_7c.branch3x3dbl_3b.conv.weight",
        "AuxLogits.conv1.conv.weight",
        "fc.bias",
    ],
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEYS))
def test_state_dict_keys_are_torchvisions(name):
    with torch.device("meta"):
        state = BUILDERS[name]().state_dict()
    assert set(TORCHVISION_KEYS[name]) <= set(state)


@contextmanager
def torchvision_standins():
    """Fake torchvision modules holding renamed subclasses of exray's classes, removed on exit."""
    made = {}
    for path, cls in CLASSES.items():
        module_name, name = path.rsplit(".", 1)
        parts = module_name.split(".")
        for i in range(1, len(parts) + 1):
            made.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        standin = type(name, (cls,), {"__module__": module_name, "__qualname__": name})
        setattr(made[module_name], name, standin)
    saved = {name: sys.modules.get(name) for name in made}
    sys.modules.update(made)
    try:
        yield lambda path: getattr(made[path.rsplit(".", 1)[0]], path.rsplit(".", 1)[1])
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _retype(model: nn.Module, standin) -> nn.Module:
    """Give every exray module of ``model`` the stand-in class of one of its torchvision paths."""
    paths = {cls: path for path, cls in CLASSES.items()}
    for module in model.modules():
        if type(module) in paths:
            module.__class__ = standin(paths[type(module)])
    return model


def _pickle(model, directory, standin):
    with torch.no_grad():
        model(torch.rand(2, 3, 96, 96))  # non-trivial batch-norm statistics would need train mode:
    for m in model.modules():  # set them by hand instead
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(_retype(model, standin), directory / "model.pt")


def _small_vgg(with_avgpool: bool) -> nn.Module:
    model = VGG(make_features((16, "M", 32, "M", 64, 64, "M", 64, "M", 64, 64, "M")), 5)
    if with_avgpool:
        model.classifier = nn.Sequential(
            nn.Linear(64 * 7 * 7, 16), nn.ReLU(True), nn.Dropout(), nn.Linear(16, 5)
        )
    else:  # a pickle from a torchvision release without the adaptive pooling
        del model.avgpool
        model.classifier = nn.Sequential(
            nn.Linear(64 * 3 * 3, 16), nn.ReLU(True), nn.Dropout(), nn.Linear(16, 5)
        )
    return model


MODELS = {
    "resnet18": lambda: BUILDERS["resnet18"](num_classes=5),
    "resnet50": lambda: BUILDERS["resnet50"](num_classes=5),
    "vgg": lambda: _small_vgg(True),
    "vgg-without-avgpool": lambda: _small_vgg(False),
    "mobilenet_v2": lambda: BUILDERS["mobilenet_v2"](num_classes=5),
    "densenet121": lambda: BUILDERS["densenet121"](num_classes=5),
    "squeezenet1_0": lambda: BUILDERS["squeezenet1_0"](num_classes=5),
    "squeezenet1_1": lambda: BUILDERS["squeezenet1_1"](num_classes=5),
    "shufflenet_v2_x1_0": lambda: BUILDERS["shufflenet_v2_x1_0"](num_classes=5),
    "googlenet": lambda: BUILDERS["googlenet"](num_classes=5),
    "inception_v3": lambda: BUILDERS["inception_v3"](num_classes=5),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_torchvision_pickle_loads_without_trust_and_gives_the_same_logits(tmp_path, name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.rand(2, 3, 96, 96)
    with torch.no_grad():
        with torchvision_standins() as standin:
            _pickle(model, tmp_path, standin)
            expected = model(x)
        assert "torchvision" not in sys.modules
        loaded = load_model(tmp_path)
        assert type(loaded).__module__.startswith("exray.models.torchvision_compat")
        assert torch.equal(loaded(x), expected)
    assert model_info(loaded).num_classes == 5


@pytest.mark.parametrize(
    "path", ["torchvision.models.mobilenet.ConvBNReLU", "torchvision.ops.misc.Conv2dNormActivation"]
)
def test_mobilenet_blocks_of_every_torchvision_release_load(tmp_path, path):
    torch.manual_seed(1)
    model = MobileNetV2(num_classes=3).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), torchvision_standins() as standin:
        expected = model(x)
        _retype(model, standin)
        for module in model.modules():
            if isinstance(module, ConvBNReLU):
                module.__class__ = standin(path)
        torch.save(model, tmp_path / "model.pt")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path)(x), expected)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_payload_alone_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    torch.save(_Payload(marker), tmp_path / "model.pt")
    with pytest.raises(UntrustedModelError, match="mkdir"):
        load_model(tmp_path)
    assert not marker.exists()


def test_a_payload_hidden_in_a_valid_model_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    model = BUILDERS["resnet18"](num_classes=2)
    model.layer3[1].bn2.note = _Payload(marker)  # deep inside an otherwise valid torchvision ResNet
    with torchvision_standins() as standin:
        torch.save(_retype(model, standin), tmp_path / "model.pt")
    with pytest.raises(UntrustedModelError, match="mkdir"):
        load_model(tmp_path)
    assert not marker.exists()


def test_an_architecture_exray_does_not_rebuild_is_refused_with_its_name(tmp_path):
    module = types.ModuleType("torchvision.models.alexnet")

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3))

    AlexNet.__module__, AlexNet.__qualname__ = "torchvision.models.alexnet", "AlexNet"
    module.AlexNet = AlexNet
    with torchvision_standins():
        sys.modules["torchvision.models.alexnet"] = module
        try:
            torch.save(AlexNet(), tmp_path / "model.pt")
        finally:
            del sys.modules["torchvision.models.alexnet"]
    with pytest.raises(UntrustedModelError, match=r"torchvision\.models\.alexnet\.AlexNet.*trust_pickle"):
        load_model(tmp_path)


def test_a_bare_torch_layer_is_not_a_model(tmp_path):
    torch.save(nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(UntrustedModelError, match="bare Linear"):
        load_model(tmp_path)


def _config(directory, architecture, **extra):
    config = {"architecture": architecture, "num_classes": 5, **extra}
    (directory / "config.json").write_text(json.dumps(config))


def test_a_torchvision_state_dict_loads_beside_its_architecture_name(tmp_path):
    # issue 18 §2: a state dict in model.pt (tensors only) plus "torchvision:<name>" in config.json
    torch.manual_seed(2)
    model = BUILDERS["resnet18"](num_classes=5).eval()
    torch.save(model.state_dict(), tmp_path / "model.pt")
    _config(tmp_path, "torchvision:resnet18", input_size=[3, 64, 64])
    loaded = load_model(tmp_path)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    info = model_info(loaded)
    assert (info.architecture, info.num_classes, info.input_size) == ("torchvision:resnet18", 5, (3, 64, 64))


def test_a_torchvision_architecture_in_safetensors(tmp_path):
    torch.manual_seed(3)
    model = BUILDERS["mobilenet_v2"](num_classes=5).eval()
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    _config(tmp_path, "torchvision:mobilenet_v2")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path)(x), model(x))


@pytest.mark.parametrize(
    ("architecture", "extra", "message"),
    [
        ("torchvision:alexnet", {}, "unknown torchvision architecture 'alexnet'"),
        ("torchvision:resnet18", {"arch_kwargs": {"width": 2}}, "no arch_kwargs"),
    ],
)
def test_bad_torchvision_configs_are_refused(tmp_path, architecture, extra, message):
    torch.save(BUILDERS["resnet18"](num_classes=5).state_dict(), tmp_path / "model.pt")
    _config(tmp_path, architecture, **extra)
    with pytest.raises(ModelLoadError, match=message):
        load_model(tmp_path)


def test_a_state_dict_with_a_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    state = BUILDERS["resnet18"](num_classes=5).state_dict()
    state["fc.bias"] = _Payload(marker)
    torch.save(state, tmp_path / "model.pt")
    _config(tmp_path, "torchvision:resnet18")
    with pytest.raises(UntrustedModelError, match="mkdir"):
        load_model(tmp_path)
    assert not marker.exists()
