"""The input-aware dynamic attack (Nguyen & Tran, "Input-Aware Dynamic Backdoor Attack", NeurIPS 2020;
EX-RAY's CVPR appendix: ABS + EX-RAY 0.875 on input-aware models; issue 19 §1).

Every input gets its own trigger: a generator network G draws a pattern from the image and a mask network M
where to put it, ``B(x) = x + (G(x) − x) ⊙ M(x)``. The classifier is trained with, per batch, a share
``backdoor_ratio`` of images replaced by their backdoored versions labelled the target (all-to-one), a share
``cross_ratio`` stamped with the trigger *made from another image* and kept at their true label (the
cross-trigger mode: a trigger works only on the input it was made for), and the rest clean. G is trained
jointly with the classifier under the cross-entropy plus a diversity loss ``‖x − x'‖ / ‖G(x) − G(x')‖``
(different inputs, different triggers); M is trained first, alone, under the diversity loss on masks and
``norm_weight`` × the mean excess of the mask over ``mask_density``, then frozen.

As the authors' code (VinAIResearch/input-aware-backdoor-attack-release, train.py, config.py,
networks/models.py): the encoder-decoder generators with ``tanh(x)/2 + 0.5`` outputs and the mask
threshold ``tanh(20x − 10)/2 + 0.5``, two shuffled passes over the data per epoch (the second gives the
cross triggers and the diversity partners), SGD (momentum 0.9, weight decay 5e-4) for the classifier, Adam
(betas 0.5, 0.9) for the generators, step decays by 10, the paper's ratios, weights and mask density.
Scaled to CPU: smaller generators (``generator_channels``, ``generator_steps``), fewer epochs, the decay
milestones as fractions of the epochs, patterns in [0, 1] pixel space (exray's models take [0, 1] images)
and no random crop / rotation of the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from exray.errors import ConfigError, InputError
from exray.models.runtime import bf16_autocast, check_bf16, frozen, model_device
from exray.options import Options, check_int, check_real
from exray.train.data import EvalSet, TrainSet
from exray.utils import derive_seed

_EPSILON = 1e-7


def _block(inputs: int, outputs: int, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(inputs, outputs, 3, padding=1), nn.BatchNorm2d(outputs)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class TriggerGenerator(nn.Sequential):
    """The authors' encoder-decoder: ``steps`` × (two conv blocks, 2× max-pool) from ``channels`` up, a middle
    block, ``steps`` × (2× upsampling, two conv blocks) down to ``outputs`` channels; values in (0, 1)."""

    def __init__(self, outputs: int = 3, *, channels: int = 16, steps: int = 2, inputs: int = 3) -> None:
        super().__init__()
        current, width = inputs, channels
        for step in range(steps):
            self.add_module(f"down{step}", nn.Sequential(_block(current, width), _block(width, width)))
            self.add_module(f"pool{step}", nn.MaxPool2d(2))
            current = width
            width = width * 2 if step < steps - 1 else width
        self.add_module("middle", _block(current, current))
        for step in range(steps):
            last = step == steps - 1
            nxt = outputs if last else current // 2
            self.add_module(f"up{step}", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.add_module(
                f"conv{step}", nn.Sequential(_block(current, current), _block(current, nxt, not last))
            )
            current = nxt

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.tanh(super().forward(images)) / (2 + _EPSILON) + 0.5

    @staticmethod
    def threshold(masks: torch.Tensor) -> torch.Tensor:
        """The authors' soft binarisation of a mask: near 0 below 0.45, near 1 above 0.55."""
        return torch.tanh(masks * 20 - 10) / (2 + _EPSILON) + 0.5


@dataclass(frozen=True)
class InputAwareConfig(Options):
    """The attack's settings (module docstring; the authors' names in brackets): ``target_class``
    [target_label], ``backdoor_ratio`` [p_attack] and ``cross_ratio`` [p_cross] per batch,
    ``diversity_weight`` [lambda_div], ``norm_weight`` [lambda_norm], ``mask_density``, ``mask_epochs``
    (the mask network's own training, 25), ``epochs`` of joint training [n_iters], ``batch_size``
    [batchsize], learning rates [lr_C, lr_G, lr_M], the decays (×0.1) at fractions of the epochs, the
    generators' size, and ``bf16`` (true, false or ``"auto"``: bf16 autocast of the networks' forward
    passes, as :class:`exray.train.TrainConfig`'s; the diversity loss is computed in fp32).

    The decays: the authors' mask milestones (10 and 20 of 25 epochs) as fractions; the classifier and the
    generator decay at 1/2 and 3/4 of the epochs, where the authors decay at 100, 200, 300, 400 (classifier)
    and 200 … 500 (generator) of 600 epochs. At tens of epochs, decaying the classifier at 1/6 leaves too
    few steps at the full rate (measured on tests/train's 16×16 task, one seed: ASR 0.39 against 0.76)."""

    target_class: int = 0
    backdoor_ratio: float = 0.1
    cross_ratio: float = 0.1
    diversity_weight: float = 1.0
    norm_weight: float = 100.0
    mask_density: float = 0.032
    mask_epochs: int = 25
    epochs: int = 30
    batch_size: int = 128
    lr_classifier: float = 0.01
    lr_generator: float = 0.01
    lr_mask: float = 0.01
    classifier_milestones: tuple[float, ...] = (0.5, 0.75)
    generator_milestones: tuple[float, ...] = (0.5, 0.75)
    mask_milestones: tuple[float, ...] = (0.4, 0.8)
    generator_channels: int = 16
    generator_steps: int = 2
    bf16: bool | str = False

    def __post_init__(self) -> None:
        check_int("target_class", self.target_class, 0)
        self._positive_int("mask_epochs", "epochs", "batch_size", "generator_channels", "generator_steps")
        check_real("backdoor_ratio", self.backdoor_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_real("cross_ratio", self.cross_ratio, 0.0, 1.0, high_open=True)
        if not (
            self.backdoor_ratio > 0 and self.cross_ratio >= 0 and self.backdoor_ratio + self.cross_ratio < 1
        ):
            raise ConfigError(
                f"backdoor_ratio > 0, cross_ratio >= 0 and their sum < 1, got {self.backdoor_ratio}, "
                f"{self.cross_ratio}"
            )
        if int(self.backdoor_ratio * self.batch_size) < 1:
            raise ConfigError(
                "backdoor_ratio × batch_size must leave at least one backdoored image per batch"
            )
        if self.diversity_weight and 2 * self.backdoor_ratio > 1:
            raise ConfigError(
                "with the diversity loss, backdoor_ratio must be <= 0.5: each backdoored image needs a "
                f"partner row of the second pass, got {self.backdoor_ratio}"
            )
        check_bf16(self.bf16)
        for name in ("diversity_weight", "norm_weight"):
            check_real(name, getattr(self, name), 0.0)
        self._fraction("mask_density", closed=False)
        self._positive("lr_classifier", "lr_generator", "lr_mask")
        for name in ("classifier_milestones", "generator_milestones", "mask_milestones"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise ConfigError(f"{name} must be a list of fractions of the epochs, got {value!r:.60}")
            object.__setattr__(self, name, tuple(value))
            for milestone in value:
                check_real(f"{name}' entry", milestone, 0.0, 1.0, low_open=True, high_open=True)


@dataclass
class InputAwareTrigger:
    """A trained pattern generator and mask network: :meth:`stamp` backdoors a batch, each image with the
    trigger made from itself (or, for the cross-trigger test, from ``sources``)."""

    pattern: TriggerGenerator
    mask: TriggerGenerator

    def stamp(self, images: torch.Tensor, sources: torch.Tensor | None = None) -> torch.Tensor:
        sources = images if sources is None else sources
        if sources.shape != images.shape:
            raise InputError("sources must have the shape of the images they stamp")
        device = model_device(self.pattern)
        with frozen(self.pattern), frozen(self.mask), torch.no_grad():
            stamped = _backdoor(images.to(device), sources.to(device), self.pattern, self.mask)[0]
        return stamped.clamp(0, 1).to(images.device)


@dataclass
class InputAwareResult:
    """The trained trigger and, if a test set was given, the authors' three test numbers: clean accuracy,
    attack success rate (non-target test images backdoored) and cross-trigger accuracy (test images stamped
    with another image's trigger, classified as their true label)."""

    trigger: InputAwareTrigger
    clean_accuracy: float | None = None
    attack_success_rate: float | None = None
    cross_accuracy: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _backdoor(
    images: torch.Tensor, sources: torch.Tensor, pattern: nn.Module, mask: nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    patterns = pattern(sources)
    masks = TriggerGenerator.threshold(mask(sources))
    return images + (patterns - images) * masks, patterns


def _diversity(
    first: torch.Tensor, second: torch.Tensor, made_first: torch.Tensor, made_second: torch.Tensor
):
    """The authors' diversity loss: mean over rows of ‖x − x'‖ / ‖g(x) − g(x')‖ (RMS distances), in fp32."""
    first, second, made_first, made_second = (x.float() for x in (first, second, made_first, made_second))
    images = (first - second).pow(2).mean(dim=(1, 2, 3)).sqrt()
    made = (made_first - made_second).pow(2).mean(dim=(1, 2, 3)).sqrt()
    return (images / (made + _EPSILON)).mean()


def _batches(count: int, size: int, gen: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(count, generator=gen).split(size))


def _scheduler(optimizer: torch.optim.Optimizer, fractions: tuple[float, ...], epochs: int):
    milestones = sorted({max(1, round(f * epochs)) for f in fractions})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, 0.1)


def train_input_aware(
    classifier: nn.Module,
    train: TrainSet,
    config: InputAwareConfig,
    *,
    seed: int = 0,
    test: EvalSet | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> InputAwareResult:
    """Train ``classifier`` (in place) with the input-aware backdoor on ``train``'s clean images and labels,
    and the trigger networks with it (module docstring); ``progress`` receives each epoch's record."""
    images, labels = train.images, train.labels
    if images.ndim != 4 or len(images) != len(labels) or len(images) < 2 * config.batch_size:
        raise InputError("train_input_aware needs (N, C, H, W) images with N labels, N >= 2 batches")
    if any(side % 2**config.generator_steps for side in images.shape[-2:]):
        raise InputError(f"image sides must be divisible by 2^generator_steps = {2**config.generator_steps}")
    with torch.random.fork_rng(devices=[]):  # dropout and the generators' init: seeded, global state kept
        torch.manual_seed(derive_seed(seed, "input-aware-init") % (2**63))
        return _train(classifier, images, labels, config, seed, test, progress)


def _usable(n: int, config: InputAwareConfig) -> tuple[int, int] | None:
    """(backdoored, cross) rows of a batch of ``n``, or None when the batch is too short for them."""
    num_bd, num_cross = int(config.backdoor_ratio * n), int(config.cross_ratio * n)
    if num_bd < 1 or num_bd + num_cross > n or (config.diversity_weight and 2 * num_bd > n):
        return None
    return num_bd, num_cross


def _train(
    classifier: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: InputAwareConfig,
    seed: int,
    test: EvalSet | None,
    progress: Callable[[dict[str, float]], None] | None,
) -> InputAwareResult:
    device = model_device(classifier)
    gen = torch.Generator().manual_seed(derive_seed(seed, "input-aware") % (2**63))
    shape = {
        "channels": config.generator_channels,
        "steps": config.generator_steps,
        "inputs": images.shape[1],
    }
    pattern = TriggerGenerator(images.shape[1], **shape).to(device)
    mask = TriggerGenerator(1, **shape).to(device)
    history: list[dict[str, float]] = []

    optimizer_m = torch.optim.Adam(mask.parameters(), config.lr_mask, betas=(0.5, 0.9))
    scheduler_m = _scheduler(optimizer_m, config.mask_milestones, config.mask_epochs)
    mask.train()
    for epoch in range(config.mask_epochs):
        for first, second in zip(
            *(_batches(len(images), config.batch_size, gen) for _ in range(2)), strict=False
        ):
            n = min(len(first), len(second))
            x1, x2 = images[first[:n]].to(device), images[second[:n]].to(device)
            with bf16_autocast(device, config.bf16):
                m1, m2 = TriggerGenerator.threshold(mask(x1)), TriggerGenerator.threshold(mask(x2))
            norm = F.relu(m1.float() - config.mask_density).mean()
            loss = config.norm_weight * norm + config.diversity_weight * _diversity(x1, x2, m1, m2)
            optimizer_m.zero_grad()
            loss.backward()
            optimizer_m.step()
        scheduler_m.step()
        history.append({"stage": 0.0, "epoch": float(epoch), "mask_norm": norm.item()})
    mask.eval()
    mask.requires_grad_(False)

    optimizer_c = torch.optim.SGD(
        classifier.parameters(), config.lr_classifier, momentum=0.9, weight_decay=5e-4
    )
    optimizer_g = torch.optim.Adam(pattern.parameters(), config.lr_generator, betas=(0.5, 0.9))
    scheduler_c = _scheduler(optimizer_c, config.classifier_milestones, config.epochs)
    scheduler_g = _scheduler(optimizer_g, config.generator_milestones, config.epochs)
    for epoch in range(config.epochs):
        classifier.train()
        pattern.train()
        totals = dict.fromkeys(("loss", "cross_entropy", "backdoor_accuracy", "batches"), 0.0)
        for first, second in zip(
            *(_batches(len(images), config.batch_size, gen) for _ in range(2)), strict=False
        ):
            n = min(len(first), len(second))
            x1, y1 = images[first[:n]].to(device), labels[first[:n]].to(device)
            x2 = images[second[:n]].to(device)
            rows = _usable(n, config)
            if rows is None:
                continue  # a short last batch: too few rows for the backdoored and partner images
            num_bd, num_cross = rows
            with bf16_autocast(device, config.bf16):
                stamped, patterns1 = _backdoor(x1[:num_bd], x1[:num_bd], pattern, mask)
                crossed, _ = _backdoor(
                    x1[num_bd : num_bd + num_cross], x2[num_bd : num_bd + num_cross], pattern, mask
                )
                inputs = torch.cat([stamped, crossed, x1[num_bd + num_cross :]])
                targets = torch.cat([torch.full_like(y1[:num_bd], config.target_class), y1[num_bd:]])
                logits = classifier(inputs)
                loss = F.cross_entropy(logits, targets)
                # the authors pair the backdoored images with the *next* rows of the second pass
                partners = pattern(x2[num_bd : 2 * num_bd]) if config.diversity_weight else None
            totals["cross_entropy"] += loss.item()
            totals["backdoor_accuracy"] += (
                (logits[:num_bd].argmax(1) == config.target_class).float().mean().item()
            )
            if partners is not None:
                loss = loss + config.diversity_weight * _diversity(
                    x1[:num_bd], x2[num_bd : 2 * num_bd], patterns1, partners
                )
            optimizer_c.zero_grad()
            optimizer_g.zero_grad()
            loss.backward()
            optimizer_c.step()
            optimizer_g.step()
            totals["loss"] += loss.item()
            totals["batches"] += 1
        if not totals["batches"]:
            raise InputError(f"no batch of {config.batch_size} could hold the backdoored and cross rows")
        scheduler_c.step()
        scheduler_g.step()
        batches = totals.pop("batches")
        record = {"stage": 1.0, "epoch": float(epoch), **{k: v / batches for k, v in totals.items()}}
        history.append(record)
        if progress is not None:
            progress(record)
    classifier.eval()
    trigger = InputAwareTrigger(pattern.eval(), mask)
    result = InputAwareResult(trigger, history=history)
    if test is not None:
        result.clean_accuracy, result.attack_success_rate, result.cross_accuracy = evaluate_input_aware(
            classifier, trigger, test, config.target_class, seed=seed
        )
    return result


def evaluate_input_aware(
    classifier: nn.Module,
    trigger: InputAwareTrigger,
    test: EvalSet,
    target_class: int,
    *,
    seed: int = 0,
    batch_size: int = 256,
) -> tuple[float, float, float]:
    """(clean accuracy, attack success rate on the non-target test images, cross-trigger accuracy with a
    seeded derangement of the test images as the trigger sources), in batches of ``batch_size``."""
    images, labels = test.images, test.labels
    if len(images) < 2 or not (labels != target_class).any():
        raise InputError("the test set needs at least two images and one of a class other than the target")
    gen = torch.Generator().manual_seed(derive_seed(seed, "input-aware-cross") % (2**63))
    order = torch.randperm(len(images), generator=gen)
    partners = torch.empty_like(order)
    partners[order] = order.roll(1)  # one random cycle: no image is its own trigger's source
    device = model_device(classifier)
    clean = asr = cross = 0
    with frozen(classifier), torch.no_grad():
        for rows in torch.arange(len(images)).split(batch_size):
            x, y = images[rows], labels[rows].to(device)
            clean += int((classifier(x.to(device)).argmax(1) == y).sum())
            victims = x[(y != target_class).cpu()]
            if len(victims):
                hit = classifier(trigger.stamp(victims).to(device)).argmax(1) == target_class
                asr += int(hit.sum())
            crossed = trigger.stamp(x, images[partners[rows]]).to(device)
            cross += int((classifier(crossed).argmax(1) == y).sum())
    return clean / len(images), asr / int((labels != target_class).sum()), cross / len(images)
