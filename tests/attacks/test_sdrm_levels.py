"""SDRM level selection (spec §6.1): stage outputs found generically, the reference's VGG-11 ReLUs 4/6/8."""

import pytest
import torch
from torch import nn

from exray.attacks import SDRMConfig, default_levels, stage_outputs
from exray.errors import ConfigError, LayerError
from exray.models import build_model, list_architectures

# Every stage output per registry architecture (32×32 input); the default levels are the last three.
EXPECTED_STAGES = {
    "cnn": ("features.0", "features.2", "features.4", "features.6"),
    "densenet": ("features.stage1", "features.stage2", "features.stage3"),
    "inception": ("features.inception3b", "features.inception4b", "features.inception5a"),
    "mobilenetv2": ("features.stage2", "features.stage3", "features.stage5", "features.head"),
    "nin": ("stage1", "stage2", "stage3"),
    "resnet10": ("layer1", "layer2", "layer3", "layer4"),
    "resnet18": ("layer1", "layer2", "layer3", "layer4"),
    "resnet34": ("layer1", "layer2", "layer3", "layer4"),
    "vgg11_bn": ("features.0", "features.2", "features.5", "features.8", "features.11"),
    "vgg13_bn": ("features.1", "features.4", "features.7", "features.10", "features.13"),
    "vgg16_bn": ("features.1", "features.4", "features.8", "features.12", "features.16"),
}
SAMPLE = torch.rand(2, 3, 32, 32)


def test_expected_stages_cover_the_registry():
    assert set(EXPECTED_STAGES) == set(list_architectures())


@pytest.mark.parametrize("name", sorted(EXPECTED_STAGES))
def test_stage_outputs_per_architecture(name):
    model = build_model(name, 5, width=0.125)
    assert stage_outputs(model, SAMPLE) == EXPECTED_STAGES[name]
    assert default_levels(model, SAMPLE) == EXPECTED_STAGES[name][-3:]


def test_vgg11_levels_are_the_reference_relus_4_6_8():
    model = build_model("vgg11_bn", 10, width=0.125)
    relus = [name for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    levels = default_levels(model, SAMPLE)
    assert tuple(f"{level}.2" for level in levels) == (relus[3], relus[5], relus[7])


def test_probe_leaves_no_hooks_and_keeps_the_mode():
    model = build_model("resnet18", 5, width=0.125).train()
    stage_outputs(model, SAMPLE)
    assert model.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_level_count_and_modes():
    model = build_model("resnet18", 5, width=0.125)
    assert default_levels(model, SAMPLE, 1) == ("layer4",)
    assert default_levels(model, SAMPLE, 9) == EXPECTED_STAGES["resnet18"]
    assert SDRMConfig(mode="last").resolve_levels(model, SAMPLE) == ("layer4",)
    assert SDRMConfig(num_levels=2).resolve_levels(model, SAMPLE) == ("layer3", "layer4")
    assert SDRMConfig(levels=("layer1", "stem")).resolve_levels(model, SAMPLE) == ("layer1", "stem")
    with pytest.raises(LayerError, match="similar names"):
        SDRMConfig(levels=("layer9",)).resolve_levels(model, SAMPLE)
    with pytest.raises(ConfigError):
        default_levels(model, SAMPLE, 0)


class _Dense(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 2)

    def forward(self, x):
        return self.fc(x.flatten(1))


class _Reused(nn.Module):
    """Its last stage output is a module applied twice per forward pass."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.b(self.b(self.a(x))).mean(dim=(2, 3)))


def test_models_without_usable_stages_are_errors():
    with pytest.raises(LayerError, match="no convolutional"):
        stage_outputs(_Dense(), SAMPLE)
    with pytest.raises(LayerError, match="once per forward pass"):
        stage_outputs(_Reused(), SAMPLE)
