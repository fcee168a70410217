"""The one home of forward hooks: read what named modules receive or return during forward passes, and probe
a model's modules with one forward pass. Every hook registered here is removed on exit, also on errors, so
nothing leaks into later forward passes. (:class:`~exray.models.layers.LayerCut` replaces a layer's output
with a hook of its own: an intervention, not a reading.)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from exray.errors import LayerError

CallPolicy = Literal["once", "first", "last"]


def get_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` in ``model.named_modules()`` (``LayerError`` listing close names)."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=6, cutoff=0.5)
    hint = f"; similar names: {close}" if close else ""
    raise LayerError(f"model has no module named {name!r}{hint}")


@contextmanager
def _record(
    model: nn.Module, names: Sequence[str], call: CallPolicy, what: Literal["output", "input"]
) -> Iterator[dict[str, torch.Tensor]]:
    seen: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    handles = []

    def keep(name: str, value: object) -> None:
        counts[name] = counts.get(name, 0) + 1
        if counts[name] > 1 and call == "once":
            raise LayerError(
                f"module {name!r} runs more than once per forward pass (a reused module); "
                "address its enclosing block, or pass call='first'/'last'"
            )
        if counts[name] == 1 or call == "last":
            if not isinstance(value, torch.Tensor):
                raise LayerError(
                    f"module {name!r} {'returns' if what == 'output' else 'receives'} "
                    f"{type(value).__name__}, not a tensor"
                )
            seen[name] = value

    def output_hook(name: str) -> Callable[..., None]:
        return lambda _module, _args, output: keep(name, output)

    def input_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            value = args[0] if args else None
            # an in-place module would overwrite its input with its output: keep a copy
            if isinstance(value, torch.Tensor) and getattr(module, "inplace", False):
                value = value.clone()
            keep(name, value)

        return hook

    def reset(_module: nn.Module, _args: object) -> None:
        counts.clear()

    try:
        handles.append(model.register_forward_pre_hook(reset))
        for name in names:
            module = get_module(model, name)
            if what == "output":
                handles.append(module.register_forward_hook(output_hook(name)))
            else:
                handles.append(module.register_forward_pre_hook(input_hook(name)))
        yield seen
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def capture(
    model: nn.Module, names: Sequence[str], *, call: CallPolicy = "once"
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of the named modules during the forward passes run inside the ``with`` block.

    ``call`` says what to do when a module runs several times in one forward pass (a reused ReLU):
    ``"once"`` raises :class:`LayerError`, ``"first"``/``"last"`` keep that call's output.
    """
    with _record(model, names, call, "output") as seen:
        yield seen


@contextmanager
def capture_inputs(
    model: nn.Module, names: Sequence[str], *, call: CallPolicy = "once"
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the first positional input of the named modules, as :func:`capture` their outputs (an in-place
    module's input is copied before the module overwrites it)."""
    with _record(model, names, call, "input") as seen:
        yield seen


def _probe_forward(model: nn.Module, sample: torch.Tensor, handles: list) -> None:
    """One forward pass of ``sample[:1]`` in eval mode without gradients (the mode is restored), then the
    probe's ``handles`` removed, also on errors."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(sample[:1])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class ModuleProbe:
    """What one forward pass shows about a model's modules: the order in which they first run, how often
    they run, the shapes of their tensor outputs, and the output shape of every convolution call."""

    order: dict[str, int]
    calls: dict[str, int]
    shapes: dict[str, torch.Size]
    convs: list[tuple[str, torch.Size]]


def probe_modules(model: nn.Module, sample: torch.Tensor) -> ModuleProbe:
    """Run ``sample[:1]`` through ``model`` (eval mode, no gradients; the mode is restored) with temporary
    hooks on every module, and return the :class:`ModuleProbe`."""
    order: dict[str, int] = {}
    calls: dict[str, int] = {}
    shapes: dict[str, torch.Size] = {}
    convs: list[tuple[str, torch.Size]] = []
    names = {module: name for name, module in model.named_modules()}

    def pre_hook(module: nn.Module, _args: object) -> None:
        name = names[module]
        order.setdefault(name, len(order))
        calls[name] = calls.get(name, 0) + 1

    def post_hook(module: nn.Module, _args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            shapes[names[module]] = output.shape
            if isinstance(module, nn.modules.conv._ConvNd):
                convs.append((names[module], output.shape))

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    _probe_forward(model, sample, handles)
    return ModuleProbe(order, calls, shapes, convs)


def last_to_run(model: nn.Module, sample: torch.Tensor, kind: type[nn.Module]) -> str | None:
    """Name of the module of type ``kind`` whose last call comes last in one forward pass of ``sample[:1]``,
    or None if none runs (e.g. the classifier's last ``nn.Linear``)."""
    last: list[str] = []
    names = {module: name for name, module in model.named_modules() if isinstance(module, kind)}
    handles = [m.register_forward_pre_hook(lambda module, _args: last.append(names[module])) for m in names]
    _probe_forward(model, sample, handles)
    return last[-1] if last else None


def final_leaf(model: nn.Module, layer: str, sample: torch.Tensor) -> str | None:
    """Name of the leaf module inside ``layer`` that runs last in one forward pass of ``sample[:1]`` when its
    output *is* the layer's output (the same tensor), else None."""
    root = get_module(model, layer)
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
    _probe_forward(model, sample, handles)
    if not order or "out" not in seen:
        return None
    name, output = order[-1]
    return name if output is seen["out"] else None
