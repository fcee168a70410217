"""Inner activations for the ABS neuron loss, found model-agnostically (spec §2.5).

The official script hooks per-architecture modules *inside* the chosen block to read the pre-ReLU (z⁻) and
post-ReLU (z⁺) activations. Here:

* z⁺ is the output of the layer itself (the module the scanner works at);
* z⁻ is the *input* of the last module that runs inside the layer, when that module is an element-wise
  activation (ReLU, ReLU6, LeakyReLU, ELU, GELU, SiLU, Hardswish, …) whose output is the layer's output —
  e.g. a ResNet stage's last block's final ReLU (reading BN + shortcut), a conv-BN-ReLU block's ReLU
  (reading BN), or the layer itself when it is an activation module. It is found with one probe forward
  pass. A layer that does not end in such a module (a MobileNetV2 block ends with BN + residual; an
  activation written as ``F.relu`` in ``forward`` is invisible to hooks) has no separate z⁻: the loss
  then uses z⁺ only.

Reading z⁻ matters: the loss keeps a gradient through units that the final ReLU has switched off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from exray.models.hooks import capture, capture_inputs, final_leaf, get_module

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.PReLU,
    nn.Softplus,
)


def find_preactivation(model: nn.Module, layer: str, sample: torch.Tensor) -> str | None:
    """Name of the activation module whose input is the layer's pre-activation, or None (see module doc)."""
    if isinstance(get_module(model, layer), ACTIVATIONS):
        return layer
    name = final_leaf(model, layer, sample)
    return name if name is not None and isinstance(get_module(model, name), ACTIVATIONS) else None


class ActivationTap:
    """Reads z⁺ (the layer's output) and z⁻ (the input of its final activation, if any) during forwards."""

    def __init__(self, model: nn.Module, layer: str, sample: torch.Tensor):
        self.model = model
        self.layer = layer
        self.pre_name = find_preactivation(model, layer, sample)

    @contextmanager
    def capture(self) -> Iterator[TapReading]:
        """Inside the block, forwards of the model are read into the yielded :class:`TapReading`.

        When the activation module runs several times in one pass (a reused ResNet ReLU), the last call —
        the one that produces the layer's output — wins.
        """
        pre = [] if self.pre_name is None else [self.pre_name]
        with (
            capture(self.model, [self.layer], call="last") as outputs,
            capture_inputs(self.model, pre, call="last") as inputs,
        ):
            yield TapReading(outputs, inputs, self.layer, self.pre_name)


class TapReading:
    """What an :class:`ActivationTap` read in the last forward pass: ``post`` (z⁺), ``pre`` (z⁻ or None)."""

    def __init__(
        self, outputs: dict[str, torch.Tensor], inputs: dict[str, torch.Tensor], layer: str, pre: str | None
    ):
        self._outputs, self._inputs, self._layer, self._pre = outputs, inputs, layer, pre

    @property
    def post(self) -> torch.Tensor | None:
        return self._outputs.get(self._layer)

    @property
    def pre(self) -> torch.Tensor | None:
        return None if self._pre is None else self._inputs.get(self._pre)

    def to_dict(self) -> dict[str, torch.Tensor | None]:
        return {"post": self.post, "pre": self.pre}
