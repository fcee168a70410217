import pytest
import torch

from exray.errors import ConfigError, LayerError
from exray.models import build_model, capture, get_architecture, list_architectures

FAMILIES = {"resnet18", "vgg11_bn", "mobilenetv2", "densenet", "nin", "inception"}


def test_registry_has_every_required_family():
    assert set(list_architectures()) >= FAMILIES


@pytest.mark.parametrize("name", list_architectures())
@pytest.mark.parametrize("size", [32, 64])
def test_every_architecture_builds_and_classifies_any_cifar_size(name, size):
    model = build_model(name, 7, width=0.125)
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 7)
    assert not model.training
    assert model.exray_arch == {"architecture": name, "arch_kwargs": {"width": 0.125}, "num_classes": 7}


def test_width_knob_scales_parameters():
    small = sum(p.numel() for p in build_model("resnet18", 10, width=0.25).parameters())
    large = sum(p.numel() for p in build_model("resnet18", 10, width=0.5).parameters())
    assert 3.5 < large / small < 4.5  # conv weights scale with width²


def test_wide_late_resnets_set_each_stage_width():
    from exray.models.layers import layer_shape

    model = build_model("resnet10", 5, channels=(16, 32, 192, 256)).eval()
    assert layer_shape(model, None, torch.rand(1, 3, 32, 32)) == ("layer3", (192, 8, 8))
    default = sum(p.numel() for p in build_model("resnet18", 5).parameters())
    explicit = sum(p.numel() for p in build_model("resnet18", 5, channels=(64, 128, 256, 512)).parameters())
    assert default == explicit
    with pytest.raises((ConfigError, ValueError), match="one entry per stage"):
        build_model("resnet18", 5, channels=(16, 32, 64))


def test_cnn_mlp_head_keeps_the_conv_blocks_and_exray_layer():
    from exray.models.layers import conv_blocks, layer_shape

    x = torch.rand(2, 3, 32, 32)
    linear = build_model("cnn", 6, channels=(32, 64, 192, 256)).eval()
    mlp = build_model("cnn", 6, channels=(32, 64, 192, 256), head="mlp").eval()
    assert conv_blocks(mlp, x[:1]) == conv_blocks(linear, x[:1])
    assert layer_shape(mlp, None, x[:1]) == ("features.5", (192, 4, 4))
    assert mlp(x).shape == (2, 6)
    hidden = [m for m in mlp.classifier if isinstance(m, torch.nn.Linear)]
    assert [h.out_features for h in hidden] == [512, 512, 6] and hidden[0].in_features == 256 * 4
    half = build_model("cnn", 6, channels=(32, 64, 192, 256), head="mlp", width=0.5)
    hidden = [m for m in half.classifier if isinstance(m, torch.nn.Linear)]
    assert [h.out_features for h in hidden] == [256, 256, 6] and hidden[0].in_features == 128 * 4
    with pytest.raises(ConfigError, match="head must be one of"):
        build_model("cnn", 6, head="transformer")


def test_unknown_architecture_and_argument_are_clear_errors():
    with pytest.raises(ConfigError, match="registered architectures: .*resnet18"):
        build_model("resnet1000", 10)
    with pytest.raises(ConfigError, match="does not accept \\['depth'\\]"):
        build_model("resnet18", 10, depth=3)
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("resnet18", 1)


def test_architecture_parameters_are_introspectable():
    assert get_architecture("densenet").parameters() == {"width": 1.0, "blocks": (6, 12, 24)}


def test_resnet_reuses_its_relu_inside_blocks_and_capture_says_so():
    model = build_model("resnet18", 10, width=0.125)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(LayerError, match="more than once"), capture(model, ["layer1.0.relu"]):
        model(x)
    with capture(model, ["layer1.0.relu", "layer1.0"], call="last") as seen:
        model(x)
    # the block's output is its ReLU's second (last) call
    assert torch.equal(seen["layer1.0.relu"], seen["layer1.0"])
