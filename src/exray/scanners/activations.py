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

from exray.errors import LayerError
from exray.models.layers import get_module

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
    root = get_module(model, layer)
    if isinstance(root, ACTIVATIONS):
        return layer
    names = {m: f"{layer}.{n}" for n, m in root.named_modules() if n and not list(m.children())}
    order: list[tuple[str, torch.Tensor]] = []
    seen: dict[str, torch.Tensor] = {}

    def leaf_hook(module: nn.Module, _args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            order.append((names[module], output))

    def root_hook(_module: nn.Module, _args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            seen["out"] = output

    handles = [m.register_forward_hook(leaf_hook) for m in names]
    handles.append(root.register_forward_hook(root_hook))
    try:
        with torch.no_grad():
            model(sample[:1])
    finally:
        for handle in handles:
            handle.remove()
    if not order or "out" not in seen:
        return None
    name, output = order[-1]
    if isinstance(get_module(model, name), ACTIVATIONS) and output is seen["out"]:
        return name
    return None


class ActivationTap:
    """Reads z⁺ (the layer's output) and z⁻ (the input of its final activation, if any) during forwards."""

    def __init__(self, model: nn.Module, layer: str, sample: torch.Tensor):
        self.model = model
        self.layer = layer
        self.pre_name = find_preactivation(model, layer, sample)

    @contextmanager
    def capture(self) -> Iterator[dict[str, torch.Tensor | None]]:
        """Inside the block, forwards of the model fill ``{"post": z⁺, "pre": z⁻ or None}``.

        When the activation module runs several times in one pass (a reused ResNet ReLU), the last call —
        the one that produces the layer's output — wins.
        """
        seen: dict[str, torch.Tensor | None] = {"post": None, "pre": None}
        layer_module = get_module(self.model, self.layer)

        def post_hook(_module: nn.Module, _args: object, output: object) -> None:
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"layer {self.layer!r} returns {type(output).__name__}, not a tensor")
            seen["post"] = output

        def pre_hook(module: nn.Module, args: tuple) -> None:
            # an in-place activation would overwrite its input with z⁺: keep a copy
            seen["pre"] = args[0].clone() if getattr(module, "inplace", False) else args[0]

        handles = [layer_module.register_forward_hook(post_hook)]
        if self.pre_name is not None:
            handles.append(get_module(self.model, self.pre_name).register_forward_pre_hook(pre_hook))
        try:
            yield seen
        finally:
            for handle in handles:
                handle.remove()
