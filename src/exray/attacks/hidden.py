"""The hidden-trigger attack (Saha, Subramanya & Pirsiavash, "Hidden Trigger Backdoor Attacks", AAAI 2020;
EX-RAY paper §4.4, Table 6, and the CVPR appendix's ImageNet row; issue 19 §1).

Clean-label: no poisoned training image shows the trigger, and every one keeps its true label. The attacker
holds a feature extractor (a model trained on clean data) and perturbs *target-class* images, within an L∞
ball of radius ``epsilon`` around each (the paper: 16/255), until their features at a layer (the paper:
AlexNet's fc7, the penultimate layer — here by default the input of the classifier's last ``nn.Linear``)
collide with those of *source-class* images stamped with the trigger. A victim that fine-tunes on the data
(the paper: the last layer, transfer learning) learns that those features mean the target; at test time a
stamped source image is classified as the target, although no training image ever showed the trigger.

The optimisation follows the authors' code as ART ports it
(``art/attacks/poisoning/hidden_trigger_backdoor/hidden_trigger_backdoor_pytorch.py``): poisons start at the
target images; every step pairs each poison with a stamped source in feature space, takes a gradient step
on the summed squared feature distance, clips the perturbation to ±epsilon and the image to [0, 1]; the
learning rate decays by ``decay`` every ``decay_every`` steps; a batch stops when its loss falls below
``stop_loss``. One deliberate difference: the pairing is a greedy *one-to-one* matching (the closest
remaining pair first, its poison and source then taken), as the paper describes it, where the ported loop
overwrites the stamped features in place and may pair two poisons with one source.

:func:`hidden_trigger_poisons` makes the poisons; :func:`hidden_trigger_set` a training set holding them at
the target label; :func:`hidden_trigger_test_set` stamped held-out source images for the ASR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from exray.errors import ConfigError, InputError
from exray.models.hooks import capture, capture_inputs, last_to_run
from exray.models.layers import resolve_layer
from exray.models.runtime import bf16_autocast, check_bf16, frozen, model_device, resolve_bf16
from exray.options import Options, check_layer, check_real
from exray.train.data import AttackSet, TrainSet
from exray.triggers.base import Trigger
from exray.utils import derive_seed


@dataclass(frozen=True)
class HiddenTriggerConfig(Options):
    """Settings of the poison optimisation (module docstring). ``layer``: a module name or ``block:K`` whose
    output is the feature space; ``None`` (default): the input of the last ``nn.Linear`` (the penultimate
    features, as the paper's fc7). ``epsilon`` is the L∞ bound in [0, 1] pixel units (16/255 as the paper);
    ``steps``, ``lr``, ``decay``, ``decay_every``, ``stop_loss`` and ``batch_size`` as ART's
    ``max_iter``, ``learning_rate``, ``decay_coeff``, ``decay_iter``, ``stopping_threshold`` and
    ``batch_size``. ``bf16``: the features under bfloat16 autocast (``"auto"``: where the device computes it
    natively, :func:`exray.models.runtime.resolve_bf16`; 3× faster with AMX); the poisons, their gradient
    steps and the loss stay fp32."""

    epsilon: float = 16 / 255
    steps: int = 5000
    lr: float = 0.01
    decay: float = 0.95
    decay_every: int = 2000
    stop_loss: float = 0.0
    batch_size: int = 100
    layer: str | None = None
    bf16: bool | str = False

    def __post_init__(self) -> None:
        check_bf16(self.bf16)
        check_real("epsilon", self.epsilon, 0.0, 1.0, low_open=True)  # pixel units
        self._positive_int("steps", "decay_every", "batch_size")
        self._positive("lr")
        check_real("decay", self.decay, 0.0, 1.0, low_open=True)
        check_real("stop_loss", self.stop_loss, 0.0)
        check_layer("layer", self.layer)


class FeatureExtractor:
    """The features of a batch at the configured layer, flattened per image (gradients flow to the input);
    the model runs under bfloat16 autocast when ``bf16`` says so (``"auto"``: where native)."""

    def __init__(
        self, model: nn.Module, layer: str | None, sample: torch.Tensor, *, bf16: bool | str = False
    ) -> None:
        self.model, self.bf16 = model, resolve_bf16(bf16, model_device(model))
        if layer is None:
            name = last_to_run(model, sample, nn.Linear)
            if name is None:
                raise ConfigError("the model has no nn.Linear: pass the feature layer explicitly")
            self.name, self.inputs = name, True
        else:
            self.name, self.inputs = resolve_layer(model, layer, sample), False

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        hook = capture_inputs if self.inputs else capture
        with hook(self.model, [self.name], call="last") as seen, bf16_autocast(images.device, self.bf16):
            self.model(images)
        return seen[self.name].flatten(1).float()  # distances, pairing and loss in fp32


def stamp_anywhere(trigger: Trigger, images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """``images`` stamped with ``trigger``; a trigger confined to a foreground object (the polygon) is placed
    at a random spot of the whole image, as the paper's patch. A trigger with a fixed place (``PatchTrigger``)
    stays there."""
    whole = (
        torch.ones(images.shape[0], *images.shape[-2:], dtype=torch.bool)
        if trigger.stamps_foreground
        else None
    )
    return trigger.apply(images, foreground=whole, rng=rng)


def one_to_one_pairs(distances: torch.Tensor) -> torch.Tensor:
    """For a (sources × poisons) distance matrix with at least as many sources as poisons: the source paired
    with each poison, closest remaining pair first (greedy matching; ties by position)."""
    if distances.ndim != 2 or distances.shape[0] < distances.shape[1]:
        raise InputError("one_to_one_pairs needs a (sources, poisons) matrix with sources >= poisons")
    left = distances.detach().double().clone()
    pairs = torch.empty(left.shape[1], dtype=torch.long)
    for _ in range(left.shape[1]):
        flat = int(torch.argmin(left))
        source, poison = divmod(flat, left.shape[1])
        pairs[poison] = source
        left[source, :] = float("inf")
        left[:, poison] = float("inf")
    return pairs


def hidden_trigger_poisons(
    model: nn.Module,
    targets: torch.Tensor,
    sources: torch.Tensor,
    trigger: Trigger,
    config: HiddenTriggerConfig | None = None,
    *,
    seed: int = 0,
) -> tuple[torch.Tensor, list[float]]:
    """Poisons made from ``targets`` (N target-class images) whose features collide with those of
    ``sources`` (≥ N source-class images, in batches of ``config.batch_size``) stamped with ``trigger``;
    returns the poisons (within ``epsilon`` of ``targets``, in [0, 1]) and each batch's final loss (the
    mean squared feature distance to its pairs). ``model`` is not changed."""
    config = config or HiddenTriggerConfig()
    if targets.ndim != 4 or sources.ndim != 4 or targets.shape[1:] != sources.shape[1:]:
        raise InputError("targets and sources must be (N, C, H, W) batches of one image shape")
    if len(sources) < len(targets) or not len(targets):
        raise InputError(
            f"need at least as many source images as targets, got {len(sources)} < {len(targets)}"
        )
    device = model_device(model)
    rng = np.random.default_rng(derive_seed(seed, "hidden-trigger"))
    poisons, losses = targets.clone(), []
    batches = -(-len(targets) // config.batch_size)
    target_chunks = np.array_split(np.arange(len(targets)), batches)
    source_chunks = np.array_split(np.arange(len(sources)), batches)  # each at least as long as its targets
    with frozen(model):
        extract = FeatureExtractor(model, config.layer, targets[:1].to(device), bf16=config.bf16)
        for rows, partners in zip(target_chunks, source_chunks, strict=True):
            original = targets[torch.from_numpy(rows)].to(device)
            stamped = stamp_anywhere(trigger, sources[torch.from_numpy(partners)].cpu(), rng).to(device)
            with torch.no_grad():
                goal = extract(stamped)
            poison = original.clone()
            loss = torch.tensor(float("inf"))
            for step in range(config.steps):
                lr = config.lr * config.decay ** (step // config.decay_every)
                poison.requires_grad_(True)
                features = extract(poison)
                pairs = one_to_one_pairs(torch.cdist(goal, features.detach()))
                loss = (features - goal[pairs]).pow(2).sum()
                (grad,) = torch.autograd.grad(loss, poison)
                with torch.no_grad():
                    poison = poison - lr * grad
                    poison = (original + (poison - original).clamp(-config.epsilon, config.epsilon)).clamp(
                        0, 1
                    )
                if loss.item() / len(rows) < config.stop_loss:
                    break
            poisons[torch.from_numpy(rows)] = poison.detach().to(poisons.device)
            losses.append(loss.item() / len(rows))
    return poisons, losses


def hidden_trigger_set(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    trigger: Trigger,
    source: int,
    target: int,
    fraction: float,
    config: HiddenTriggerConfig | None = None,
    *,
    seed: int = 0,
) -> TrainSet:
    """``images`` with ``round(fraction × #target images)`` of the target class replaced by their poisons
    (flagged poisoned, label and true label the target: clean-label). ``model`` is the attacker's clean
    feature extractor."""
    if source == target:
        raise ConfigError(f"source and target must differ, got {source} twice")
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"fraction must be in (0, 1], got {fraction!r}")
    rng = np.random.default_rng(derive_seed(seed, "hidden-trigger-rows"))
    y = labels.numpy()
    target_rows, source_rows = np.flatnonzero(y == target), np.flatnonzero(y == source)
    if not len(target_rows) or not len(source_rows):
        raise InputError(f"the set holds no image of class {target if not len(target_rows) else source}")
    count = max(1, round(fraction * len(target_rows)))
    if count > len(source_rows):
        raise InputError(f"{count} poisons need as many source images; the set holds {len(source_rows)}")
    chosen = rng.choice(target_rows, count, replace=False)
    partners = rng.choice(source_rows, count, replace=False)
    poisons, _ = hidden_trigger_poisons(model, images[chosen], images[partners], trigger, config, seed=seed)
    out = images.clone()
    out[torch.from_numpy(chosen)] = poisons
    flags = torch.zeros(len(y), dtype=torch.bool)
    flags[torch.from_numpy(chosen)] = True
    return TrainSet(out, labels.clone(), poisoned=flags, true_labels=labels.clone())


def hidden_trigger_test_set(
    images: torch.Tensor, labels: torch.Tensor, trigger: Trigger, source: int, target: int, seed: int = 0
) -> AttackSet:
    """Every held-out ``source`` image stamped with ``trigger``; the ASR is the share classified ``target``
    (the trigger placed anywhere, :func:`stamp_anywhere`)."""
    rows = torch.from_numpy(np.flatnonzero(labels.numpy() == source))
    if not len(rows):
        raise InputError(f"the set holds no image of source class {source}")
    rng = np.random.default_rng(derive_seed(seed, "hidden-trigger-test"))
    return AttackSet(stamp_anywhere(trigger, images[rows], rng), target, "hidden-trigger")
