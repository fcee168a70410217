"""Model-agnostic layer access: address a layer by module name, read its output, run the rest of the network.

EX-RAY and ABS both need a model split at an inner layer L into a prefix g (input → output of L) and a
suffix h (output of L → logits) (paper §3; spec §1 "Splitting a model"). The official scripts do this by
flattening ``model.children()`` with a per-architecture ``if/elif``; here any ``nn.Module`` works:

* :func:`~exray.models.hooks.capture` (the one home of forward hooks, :mod:`exray.models.hooks`) reads the
  outputs of named modules with hooks that are always removed.
* :class:`LayerCut` runs h on given features. When the model is ``torch.fx``-traceable and the layer is a
  clean cut (nothing but the layer's output flows from the prefix into the suffix), the suffix is a real
  sub-graph and the prefix is never recomputed. Otherwise a forward hook *replaces* the layer's output
  during a full forward pass of the rows' own base inputs — slower, but correct for any module, including
  cuts that residual connections cross.
* :func:`default_layer` chooses the output of the second-to-last convolutional block (the paper's best
  setting, EXA Table 11).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import fx, nn

from exray.data.images import check_images
from exray.errors import InputError, LayerError
from exray.models.hooks import ModuleProbe, capture, get_module, probe_modules

Backend = Literal["auto", "fx", "hooks"]


def _count_convs(module: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.conv._ConvNd) for m in module.modules())


def _contains_conv(module: nn.Module) -> bool:
    return _count_convs(module) > 0


def block_children(model: nn.Module, probe: ModuleProbe) -> list[tuple[str, list[str]]]:
    """The model's convolutional blocks, in execution order: (first child, [its children]).

    Starting from the root, the search descends while a single child holds all the convolutions (or the
    level is a one-convolution stem followed by one container of stages); at the level where it stops,
    each convolution-holding child starts a block that extends over the following convolution-free
    children (pooling, activations).
    """
    prefix, module = "", model
    while True:
        children = [(f"{prefix}{n}", c) for n, c in module.named_children() if f"{prefix}{n}" in probe.order]
        children.sort(key=lambda item: probe.order[item[0]])
        conv_children = [(n, c) for n, c in children if _contains_conv(c)]
        if not conv_children:
            raise LayerError("the model has no convolutional layer; pass a layer name explicitly")
        last_name, last_child = conv_children[-1]
        inner = sum(1 for c in last_child.children() if _contains_conv(c))
        stem_then_container = (
            len(conv_children) == 2 and _count_convs(conv_children[0][1]) == 1 and inner >= 2
        )
        if (len(conv_children) == 1 and inner > 0) or stem_then_container:
            prefix, module = f"{last_name}.", last_child
            continue
        break
    blocks: list[tuple[str, list[str]]] = []
    for name, child in children:
        if _contains_conv(child):
            blocks.append((name, [name]))
        elif blocks:
            blocks[-1][1].append(name)
    return blocks


def conv_blocks(model: nn.Module, sample: torch.Tensor) -> list[str]:
    """The output module of every convolutional block (see :func:`block_children`), first to last: the
    last module of the block with a 4-D output that runs once per forward pass."""
    probe = probe_modules(model, sample)
    outputs = []
    for _, members in block_children(model, probe):
        for name in reversed(members):
            if name in probe.shapes and len(probe.shapes[name]) == 4 and probe.calls.get(name, 0) == 1:
                outputs.append(name)
                break
    if not outputs:
        raise LayerError("no convolutional block produces a 4-D feature map; pass a layer name explicitly")
    return outputs


DEFAULT_LAYER = "block:-2"


def resolve_layer(model: nn.Module, layer: str | None, sample: torch.Tensor) -> str:
    """The module name that ``layer`` designates: a module name as is; ``"block:K"`` the output of
    convolutional block K (Python indexing: ``"block:-2"`` is the second-to-last, the default;
    ``"block:middle"`` the middle block — the three layers of the paper's ablation are
    ``block:middle``, ``block:-2`` and ``block:-1``); ``None`` the default."""
    layer = DEFAULT_LAYER if layer is None else layer
    if layer == "auto":
        raise LayerError(
            "layer 'auto' is chosen per call by EX-RAY (exray.differencing.compare_triggers); this method "
            "needs a module name or block:K"
        )
    if not layer.startswith("block:"):
        get_module(model, layer)
        return layer
    blocks = conv_blocks(model, sample)
    key = layer.removeprefix("block:")
    if key == "middle":
        return blocks[(len(blocks) - 1) // 2]
    try:
        index = int(key)
        if len(blocks) == 1 and index == -2:
            return blocks[0]  # the only block stands in for the second-to-last
        return blocks[index]
    except (ValueError, IndexError):
        raise LayerError(f"{layer!r} names no block; the model's blocks are {blocks}") from None


def layer_shape(model: nn.Module, layer: str | None, sample: torch.Tensor) -> tuple[str, tuple[int, ...]]:
    """The module name ``layer`` designates (see :func:`resolve_layer`) and the shape of its output for
    one input, without the batch dimension: ``(C, H, W)`` for a convolutional block."""
    name = resolve_layer(model, layer, sample)
    shape = probe_modules(model, sample).shapes.get(name)
    if shape is None:
        raise LayerError(f"the layer {name!r} produced no tensor for the sample")
    return name, tuple(int(d) for d in shape[1:])


def default_layer(model: nn.Module, sample: torch.Tensor) -> str:
    """Name of the module whose output is the default EX-RAY/ABS layer: the output of the second-to-last
    convolutional block (the paper's best setting, EXA Table 11), or of the only block if there is one.
    For the registry this gives ``layer3`` of a ResNet, the second-to-last conv-BN-ReLU of a VGG, and
    the second-to-last stage / inception block of the others (``tests/models/test_layers.py``)."""
    return resolve_layer(model, None, sample)


class _LeafTracer(fx.Tracer):
    """An fx tracer that keeps one named module as a single call (a leaf), whatever it contains."""

    def __init__(self, leaf: str):
        super().__init__()
        self.leaf = leaf

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname == self.leaf or super().is_leaf_module(m, qualname)


def _split_graph(model: nn.Module, layer: str) -> tuple[fx.GraphModule, fx.GraphModule] | None:
    """Prefix and suffix ``GraphModule``s of ``model`` cut after ``layer``, or None if not a clean cut."""
    try:
        graph = _LeafTracer(layer).trace(model)
    except Exception:  # an untraceable forward (data-dependent control flow, …): use hooks instead
        return None
    nodes = list(graph.nodes)
    cut = [n for n in nodes if n.op == "call_module" and n.target == layer]
    if len(cut) != 1:
        return None
    cut_node = cut[0]
    ancestors: set[fx.Node] = set()
    stack = [cut_node]
    while stack:
        for parent in stack.pop().all_input_nodes:
            if parent not in ancestors:
                ancestors.add(parent)
                stack.append(parent)
    output = next(n for n in nodes if n.op == "output")
    needed: set[fx.Node] = set()
    stack = [output]
    while stack:
        node = stack.pop()
        for parent in node.all_input_nodes:
            if parent not in needed and parent is not cut_node:
                needed.add(parent)
                stack.append(parent)
    suffix_nodes = needed - ancestors
    for node in suffix_nodes:
        if node.op == "placeholder":
            return None
    # A suffix node that reads a prefix value other than the cut (a skip connection over it): not clean.
    for node in [*suffix_nodes, output]:
        for parent in node.all_input_nodes:
            if parent in ancestors and parent not in suffix_nodes and parent.op != "get_attr":
                return None

    suffix = fx.Graph()
    env: dict[fx.Node, fx.Node] = {cut_node: suffix.placeholder("features")}
    for node in nodes:
        if node in suffix_nodes or (node.op == "get_attr" and node in needed):
            env[node] = suffix.node_copy(node, lambda n: env[n])
    suffix.output(fx.map_arg(output.args[0], lambda n: env[n]))

    prefix = fx.Graph()
    env = {}
    for node in nodes:
        if node in ancestors or node is cut_node:
            env[node] = prefix.node_copy(node, lambda n: env[n])
    prefix.output(env[cut_node])
    return fx.GraphModule(model, prefix), fx.GraphModule(model, suffix)


class LayerCut:
    """``model`` split at the output of module ``layer``: ``features(x)`` = g(x), ``suffix(f)`` = h(f).

    ``backend="auto"`` uses a ``torch.fx`` sub-graph for h when the cut is clean and falls back to forward
    hooks otherwise; ``"fx"`` insists on the sub-graph (``LayerError`` if impossible); ``"hooks"`` always
    uses hooks. With hooks, :meth:`suffix` needs the rows' base inputs (the images whose forward pass the
    features are substituted into); with fx they are ignored.
    """

    def __init__(self, model: nn.Module, layer: str, *, backend: Backend = "auto"):
        self.model = model
        self.layer = layer
        self.module = get_module(model, layer)
        self._graphs = None if backend == "hooks" else _split_graph(model, layer)
        if backend == "fx" and self._graphs is None:
            raise LayerError(
                f"layer {layer!r} is not a clean fx cut of this model (untraceable, reused, or crossed "
                "by a skip connection); use backend='hooks'"
            )
        self.backend: Literal["fx", "hooks"] = "fx" if self._graphs is not None else "hooks"

    @property
    def needs_inputs(self) -> bool:
        """Whether :meth:`suffix` needs the base inputs of its rows (hook backend)."""
        return self.backend == "hooks"

    def features(self, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """g(x): the layer's output for images ``x``, computed without gradients in batches."""
        check_images(x)
        outs = []
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                chunk = x[start : start + batch_size]
                if self._graphs is not None:
                    outs.append(self._graphs[0](chunk))
                else:
                    with capture(self.model, [self.layer]) as seen:
                        self.model(chunk)
                    outs.append(seen[self.layer])
        return torch.cat(outs)

    def suffix(self, features: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        """h(features): logits when the layer's output is replaced by ``features`` (gradients flow)."""
        if self._graphs is not None:
            return self._graphs[1](features)
        if inputs is None or len(inputs) != len(features):
            raise InputError("the hook backend needs one base input image per feature row")
        calls = 0

        def replace(_module: nn.Module, _args: object, _output: object) -> torch.Tensor:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise LayerError(f"module {self.layer!r} runs more than once per forward pass")
            return features

        handle = self.module.register_forward_hook(replace)
        try:
            return self.model(inputs)
        finally:
            handle.remove()

    def logits(self, features: torch.Tensor, inputs: torch.Tensor | None = None, *, batch_size: int = 256):
        """h(features) without gradients, in batches."""
        outs = []
        with torch.no_grad():
            for start in range(0, len(features), batch_size):
                rows = slice(start, start + batch_size)
                outs.append(self.suffix(features[rows].clone(), None if inputs is None else inputs[rows]))
        return torch.cat(outs)
