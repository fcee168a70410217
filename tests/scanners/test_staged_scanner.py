"""The scanners' template method (issue 21 §4, scanners.base.StagedScanner): scan() checks the examples and
the call before the model is touched, runs the stages on the frozen model, times each stage and packs the
result — ABS and Neural Cleanse only write their stages."""

from dataclasses import dataclass

import pytest
import torch

from exray.errors import ConfigError, InputError
from exray.options import Options
from exray.scanners import FoundTrigger, get_scanner
from exray.scanners.base import StagedScanner, Stages
from exray.triggers import PatchTrigger

from .conftest import symbol_examples


@dataclass(frozen=True)
class _Config(Options):
    refuse_layers: bool = False


class _Recorder(StagedScanner):
    """Two stages; records what it saw of the model."""

    name = "recorder"
    title = "Recorder"
    config_class = _Config

    def check_scan(self, data, layer):
        if self.config.refuse_layers and layer is not None:
            raise ConfigError("no layer")

    def run_stages(self, model, data, *, layer, seed, progress, clock):
        self.grads_off = not any(p.requires_grad for p in model.parameters())
        self.training = model.training
        clock.lap("propose")
        trigger = PatchTrigger((1.0, 0.0, 1.0), 0.2, (0.0, 0.0))
        found = FoundTrigger.evaluate(model, trigger, data.by_class, victim=0, kind="patch")
        clock.lap("validation")
        return Stages([found], {"classes": data.num_classes}, layer)


def test_stages_run_on_the_frozen_model_and_the_result_is_packed():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    examples = symbol_examples(4, 3)
    model(examples[0])  # materialise the lazy layer
    model.train()
    scanner = _Recorder()
    result = scanner.scan(model, examples, layer="block:0", seed=7)
    assert scanner.grads_off and not scanner.training
    assert all(p.requires_grad for p in model.parameters()) and model.training  # restored afterwards
    assert list(result.timings) == ["propose", "validation"] and all(t >= 0 for t in result.timings.values())
    assert (result.scanner, result.layer, result.seed, result.diagnostics) == (
        "recorder",
        "block:0",
        7,
        {"classes": 3},
    )
    assert len(result.triggers) == 1


def test_examples_and_calls_are_refused_before_any_stage():
    one_class = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 1))
    with pytest.raises(InputError, match="Recorder needs a model with at least two classes"):
        _Recorder().scan(one_class, {0: symbol_examples(4, 3)[0]})
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 3))
    with pytest.raises(ConfigError, match="no layer"):
        _Recorder(refuse_layers=True).scan(model, symbol_examples(4, 3), layer="block:0")
    with pytest.raises(ConfigError, match="inverts triggers at the input"):
        get_scanner("nc", mode="universal").scan(model, symbol_examples(4, 3), layer="block:0")
