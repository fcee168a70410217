"""Baselines 3–5 of the paper's Table 1: IG, DeepLift and Occlusion at the EX-RAY layer (EXP §4.1, spec §4.7).

"The third baseline uses integrated gradients … to find important neurons for V + t and for T and then
apply the aforementioned L2 distance comparison on the 10% most important neurons" (EXP §4.1). Here:

* attributions are taken **with respect to the layer's output** (the features f = g(x)) toward the target
  logit T, through Captum applied to the suffix h: ``IntegratedGradients`` and ``DeepLift`` (Rescale rule)
  with a zero baseline in feature space ([CHOICE] spec §4.7.3–4: 50 IG steps), ``Occlusion`` with a
  window of one whole channel and a zero baseline (spec §4.7.5: importance = the drop of logit T when
  that channel is zeroed);
* a channel's importance is Σ|attribution| over its spatial positions, averaged over the set's images
  (Occlusion: the mean drop itself);
* the ⌈10%⌉ most important channels of V+t and of T are intersected, and the score is the L2 distance
  between the average normalised features of V+t and T on the intersection (see
  :mod:`exray.refinement.features`). [CHOICE] When the two top sets are disjoint the union is used, noted
  in the score's details. A larger distance means a more injected-looking trigger.

DeepLift needs the suffix as a module whose non-linearities each run once per pass (Captum stores one
input/output per module): it uses the ``torch.fx`` sub-graph of the cut with private copies of reused
activation modules (a ResNet block calls its ReLU twice), so it needs a cut that ``torch.fx`` can split —
every architecture of the registry can be.
"""

from __future__ import annotations

import copy
import warnings
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn

from exray.differencing import TriggerCase
from exray.errors import ConfigError, LayerError
from exray.models.layers import LayerCut, _split_graph
from exray.refinement.base import RefinementMethod, TriggerScore
from exray.refinement.features import (
    FeatureSets,
    SetFeatures,
    layer_cut,
    normalised_distance,
    spatial_means,
    top_channels,
)

#: rows of features per Captum forward pass
BATCH_ROWS = 256
#: (image set, target label) → (C,) channel importance
Importance = Callable[[SetFeatures, int], torch.Tensor]


class AttributionMethod(RefinementMethod):
    """Important channels of V+t and of T by an attribution method; L2 of V+t vs T on their intersection.

    ``top_fraction``: the share of channels kept per set (the paper's 10%).
    """

    def __init__(self, *, top_fraction: float = 0.1):
        super().__init__()
        if not 0.0 < top_fraction <= 1.0:
            raise ConfigError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
        self.top_fraction = top_fraction

    def options(self) -> dict[str, Any]:
        return {"top_fraction": self.top_fraction}

    @abstractmethod
    def attributor(self, cut: LayerCut) -> Importance:
        """A function giving the (C,) importance of a set's channels toward a logit, at ``cut``."""

    def _score(
        self, model: nn.Module, cases: list[TriggerCase], *, layer: str | None, seed: int, progress: bool
    ) -> list[TriggerScore]:
        cut = layer_cut(model, layer, cases[0].victim)
        importance = self.attributor(cut)
        sets = FeatureSets(cut)
        target_importance: dict[tuple[int, int], torch.Tensor] = {}
        scores = []
        for case in cases:
            target_label = int(case.target_label)  # checked by score()
            stamped = sets(case.stamped, "stamped images")
            target = sets(case.target, "target images")
            key = (id(case.target), target_label)
            if key not in target_importance:
                target_importance[key] = importance(target, target_label)
            top_stamped = top_channels(importance(stamped, target_label), self.top_fraction)
            top_target = top_channels(target_importance[key], self.top_fraction)
            common = sorted(set(top_stamped.tolist()) & set(top_target.tolist()))
            channels = common or sorted(set(top_stamped.tolist()) | set(top_target.tolist()))
            details = {
                "layer": cut.layer,
                "top_stamped": top_stamped.tolist(),
                "top_target": top_target.tolist(),
                "channels": channels,
                "used": "intersection" if common else "union (the top channels are disjoint)",
            }
            value = normalised_distance(stamped.channel_means, target.channel_means, channels)
            scores.append(TriggerScore(value, details))
        return scores


def _suffix_function(cut: LayerCut):
    """h(features[, base inputs]) as a plain function for Captum (hook cuts get the base inputs)."""

    def forward(features: torch.Tensor, inputs: torch.Tensor | None = None) -> torch.Tensor:
        return cut.suffix(features, inputs)

    return forward


def _inputs(cut: LayerCut, images: SetFeatures) -> tuple[torch.Tensor, ...] | None:
    return (images.images,) if cut.needs_inputs else None


class IntegratedGradientsMethod(AttributionMethod):
    """Baseline 3: integrated gradients of logit T w.r.t. the layer's output, zero baseline."""

    name = "ig"
    title = "IG"

    def __init__(self, *, top_fraction: float = 0.1, steps: int = 50):
        super().__init__(top_fraction=top_fraction)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
            raise ConfigError(f"steps must be an integer >= 2, got {steps!r}")
        self.steps = steps

    def options(self) -> dict[str, Any]:
        return {**super().options(), "steps": self.steps}

    def attributor(self, cut: LayerCut) -> Importance:
        from captum.attr import IntegratedGradients  # Captum is imported by the methods that use it

        method = IntegratedGradients(_suffix_function(cut))

        def importance(images: SetFeatures, target: int) -> torch.Tensor:
            attribution = method.attribute(
                images.features,
                baselines=0.0,
                target=target,
                n_steps=self.steps,
                additional_forward_args=_inputs(cut, images),
                internal_batch_size=max(BATCH_ROWS, len(images.features)),
            )
            return spatial_means(attribution.detach().abs()).mean(0)

        return importance


class DeepLiftMethod(AttributionMethod):
    """Baseline 4: DeepLift (Rescale rule) of logit T w.r.t. the layer's output, zero baseline."""

    name = "deeplift"
    title = "DeepLift"

    def attributor(self, cut: LayerCut) -> Importance:
        from captum.attr import DeepLift

        method = DeepLift(suffix_module(cut))

        def importance(images: SetFeatures, target: int) -> torch.Tensor:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore", message="Setting forward, backward hooks", category=UserWarning
                )
                features = images.features.detach().clone().requires_grad_()
                attribution = method.attribute(features, baselines=torch.zeros_like(features), target=target)
            return spatial_means(attribution.detach().abs()).mean(0)

        return importance


class OcclusionMethod(AttributionMethod):
    """Baseline 5: occlusion of one channel at a time (zeroed); importance = the mean drop of logit T."""

    name = "occlusion"
    title = "Occlusion"

    def attributor(self, cut: LayerCut) -> Importance:
        from captum.attr import Occlusion

        method = Occlusion(_suffix_function(cut))

        def importance(images: SetFeatures, target: int) -> torch.Tensor:
            features = images.features
            window = (1, *features.shape[2:])
            attribution = method.attribute(
                features,
                sliding_window_shapes=window,
                strides=window,
                baselines=0.0,
                target=target,
                additional_forward_args=_inputs(cut, images),
                perturbations_per_eval=max(1, min(features.shape[1], BATCH_ROWS // len(features))),
            )
            return spatial_means(attribution.detach()).mean(0)

        return importance


def suffix_module(cut: LayerCut) -> fx.GraphModule:
    """The suffix h of ``cut`` as an eval-mode ``torch.fx`` module in which every module call has its own
    module: a module called k > 1 times (a reused ReLU) gets k − 1 private copies. The model is not changed.

    Raises :class:`~exray.errors.LayerError` when the cut is not a clean ``torch.fx`` split.
    """
    graphs = _split_graph(cut.model, cut.layer)
    if graphs is None:
        raise LayerError(
            f"DeepLift needs a torch.fx split of the model at {cut.layer!r} (the model is not traceable or "
            "a skip connection crosses the layer); choose another layer"
        )
    module = copy.deepcopy(graphs[1])
    calls: Counter[str] = Counter()
    for node in module.graph.nodes:
        if node.op != "call_module":
            continue
        calls[node.target] += 1
        if calls[node.target] > 1:
            private = f"{node.target.replace('.', '_')}_call{calls[node.target]}"
            module.add_submodule(private, copy.deepcopy(module.get_submodule(node.target)))
            node.target = private
    module.recompile()
    return module.eval()
