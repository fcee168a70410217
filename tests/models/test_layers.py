import pytest
import torch
from torch import nn

from exray.errors import InputError, LayerError
from exray.models import (
    LayerCut,
    build_model,
    capture,
    conv_blocks,
    default_layer,
    get_module,
    list_architectures,
    resolve_layer,
)

# The default EX-RAY/ABS layer per architecture: the second-to-last convolutional block's output.
EXPECTED_DEFAULT = {
    "cnn": "features.5",  # block 3 of 4 (conv-BN-ReLU 3, then its max-pool)
    "densenet": "features.stage2",  # dense block 2 + transition
    "inception": "features.pool4",  # inception 4b and the max-pool after it
    "mobilenetv2": "features.stage7",  # last inverted-residual stage (the 1×1 head is the last block)
    "nin": "stage2",
    "resnet10": "layer3",
    "resnet18": "layer3",  # as the official script (torchvision ResNet: layer3)
    "resnet34": "layer3",
    "vgg11_bn": "features.10",  # conv-BN-ReLU 7 of 8
    "vgg13_bn": "features.12",
    "vgg16_bn": "features.15",
}


def test_expected_defaults_cover_the_registry():
    assert set(EXPECTED_DEFAULT) == set(list_architectures())


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFAULT))
def test_default_layer_per_architecture(name):
    model = build_model(name, 5, width=0.125)
    assert default_layer(model, torch.rand(1, 3, 32, 32)) == EXPECTED_DEFAULT[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_DEFAULT))
@pytest.mark.parametrize("backend", ["fx", "hooks"])
def test_suffix_of_prefix_is_the_model(name, backend):
    model = build_model(name, 5, width=0.125)
    x = torch.rand(3, 3, 32, 32)
    cut = LayerCut(model, EXPECTED_DEFAULT[name], backend=backend)
    assert cut.backend == backend
    feats = cut.features(x)
    with torch.no_grad():
        assert torch.allclose(cut.suffix(feats, x), model(x), atol=1e-5)


class Branchy(nn.Module):
    """A user model with nested Sequentials, a residual add, a concatenation and two branches."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()))
        self.left = nn.Conv2d(4, 4, 3, padding=1)
        self.right = nn.Sequential(nn.Conv2d(4, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, 3, padding=1))
        self.merge = nn.Conv2d(8, 6, 1)
        self.post = nn.Sequential(nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1))
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.left(x) + x, self.right(x)], dim=1)
        z = self.post(self.merge(y))
        return self.head(z.mean(dim=(2, 3)))


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.a(x)
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace this
            x = torch.relu(x)
        return self.head(self.b(x).mean(dim=(2, 3)))


def test_user_model_clean_cut_uses_fx_and_matches():
    model = Branchy().eval()
    x = torch.rand(4, 3, 16, 16)
    cut = LayerCut(model, "merge")
    assert cut.backend == "fx"
    assert torch.allclose(cut.logits(cut.features(x)), model(x), atol=1e-6)


def test_cut_crossed_by_a_skip_connection_falls_back_to_hooks():
    model = Branchy().eval()
    x = torch.rand(4, 3, 16, 16)
    cut = LayerCut(model, "left")  # left(x) + x: the skip from the stem crosses the cut
    assert cut.backend == "hooks"
    feats = cut.features(x)
    assert torch.allclose(cut.logits(feats, x), model(x), atol=1e-6)
    # replacing the features changes the output through the suffix only
    changed = cut.logits(torch.zeros_like(feats), x)
    assert not torch.allclose(changed, model(x))
    with pytest.raises(LayerError):
        LayerCut(model, "left", backend="fx")
    with pytest.raises(InputError, match="base input"):
        cut.suffix(feats)


def test_untraceable_model_works_through_hooks():
    model = Untraceable().eval()
    x = torch.rand(2, 3, 8, 8)
    cut = LayerCut(model, "a")
    assert cut.backend == "hooks"
    assert torch.allclose(cut.logits(cut.features(x), x), model(x), atol=1e-6)
    assert default_layer(model, x) == "a"


def test_default_layer_on_user_model():
    assert default_layer(Branchy().eval(), torch.rand(1, 3, 16, 16)) == "merge"


def test_capture_removes_its_hooks_even_on_error():
    model = Branchy().eval()
    with capture(model, ["merge", "stem"]) as seen:
        model(torch.rand(1, 3, 8, 8))
    assert set(seen) == {"merge", "stem"}
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(RuntimeError), capture(model, ["merge"]):
        model(torch.rand(1, 5, 8, 8))  # wrong channel count
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(LayerError, match="no module named 'layer9'.*layer1"):
        get_module(build_model("resnet18", 3, width=0.125), "layer9")


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (torch.rand(3, 8, 8), "shape"),
        (torch.rand(0, 3, 8, 8), "empty"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "floating point"),
    ],
)
def test_features_reject_bad_images(images, message):
    cut = LayerCut(Branchy().eval(), "merge")
    with pytest.raises(InputError, match=message):
        cut.features(images)


def test_blocks_and_relative_layer_selectors():
    model = build_model("resnet18", 5, width=0.125)
    x = torch.rand(1, 3, 32, 32)
    assert conv_blocks(model, x) == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert resolve_layer(model, None, x) == "layer3" == default_layer(model, x)
    assert resolve_layer(model, "block:1", x) == "layer1"
    assert resolve_layer(model, "block:middle", x) == "layer2"
    assert resolve_layer(model, "block:-1", x) == "layer4"
    assert resolve_layer(model, "layer2.1", x) == "layer2.1"
    with pytest.raises(LayerError, match="names no block"):
        resolve_layer(model, "block:9", x)
    with pytest.raises(LayerError, match="no module named"):
        resolve_layer(model, "layer9", x)
