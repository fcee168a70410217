"""The seeded training loop (design §1 ``train``): clean accuracy and attack success rate on held-out data.

:func:`train_model` trains any registry model on a :class:`~exray.train.data.TrainSet` with
cross-entropy plus optional extra :class:`LossTerm` s — callables that receive the :class:`Batch` (inputs,
labels, poison flags, logits) and the outputs of the layers they name, captured with forward hooks. That is
the extension point for feature-space regularisers such as the SDRM/ML-MMDR term (spec §6.1) and the
EX-RAY adaptive loss (spec §5.1). Optional: adversarial training (spec §7.2, :mod:`exray.train.adversarial`),
``channels_last`` memory format and bf16 autocast (2–4× faster on the CPUs we measured; see
``benchmarks/bench_zoo.py``).

Everything random — shuffling, adversarial starts, dropout — is drawn from streams derived from ``seed``;
the caller seeds the model's initialisation (see :func:`exray.train.seeded_model`). Metrics are measured in
fp32 on the contiguous model, i.e. as the saved model will behave.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from exray.errors import ConfigError, InputError
from exray.models.layers import capture
from exray.models.runtime import bf16_autocast, model_device, predict_labels, resolve_bf16
from exray.train.adversarial import perturb
from exray.train.config import TrainConfig, augment_batch, build_optimizer, build_scheduler
from exray.train.data import AttackSet, EpochData, EvalSet, TrainSet
from exray.utils import derive_seed, torch_generator


@dataclass(frozen=True)
class Batch:
    """One training step's batch as the loss terms see it.

    ``images`` are the model's inputs (adversarial rows already replaced), ``adversarial`` marks those
    rows; ``poisoned`` marks poison samples; ``true_labels`` are the pre-poisoning labels.
    """

    images: torch.Tensor
    labels: torch.Tensor
    true_labels: torch.Tensor
    poisoned: torch.Tensor
    adversarial: torch.Tensor
    logits: torch.Tensor


LossFn = Callable[[Batch, Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class LossTerm:
    """An extra loss ``weight · fn(batch, features)`` added to cross-entropy at every step.

    ``features`` maps each name in ``layers`` (a module name from ``model.named_modules()``) to that
    module's output for the batch, with gradients. ``fn`` returns a scalar tensor.
    """

    fn: LossFn
    layers: tuple[str, ...] = ()
    weight: float = 1.0
    name: str = "extra"

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise ConfigError("a loss term needs a callable fn(batch, features)")
        if not math.isfinite(self.weight):
            raise ConfigError(f"loss term weight must be finite, got {self.weight}")
        object.__setattr__(self, "layers", tuple(self.layers))


@dataclass(frozen=True)
class EpochRecord:
    """Per-epoch means of the training loss (total and per extra term) and batch accuracy, the epoch's
    seconds, and the held-out metrics when measured that epoch."""

    epoch: int
    loss: float
    accuracy: float
    seconds: float
    terms: dict[str, float] = field(default_factory=dict)
    clean_accuracy: float | None = None
    attack_success_rate: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced.

    ``attack_success_rate`` is the *lowest* ASR over the attack sets (None without any), ``asr`` has each
    set's; ``seconds`` is the wall time of the whole run including evaluation; ``bf16`` whether it ran under
    bf16 autocast (``config.bf16`` resolved on the model's device).
    """

    history: tuple[EpochRecord, ...]
    clean_accuracy: float | None
    attack_success_rate: float | None
    asr: dict[str, float]
    seconds: float
    seed: int
    config: TrainConfig
    bf16: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "bf16": self.bf16,
            "history": [asdict(r) for r in self.history],
            "clean_accuracy": self.clean_accuracy,
            "attack_success_rate": self.attack_success_rate,
            "asr": dict(self.asr),
            "seconds": self.seconds,
            "seed": self.seed,
            "config": self.config.to_dict(),
        }


def seeded_model(builder: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Call ``builder`` (e.g. ``lambda: build_model(...)``) with torch's global RNG seeded from ``seed``,
    leaving the caller's RNG state untouched: the model's initial weights depend on ``seed`` only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init") % (2**63))
        return builder()


def clean_accuracy(model: nn.Module, data: EvalSet, batch_size: int = 256) -> float:
    """Fraction of ``data`` classified correctly."""
    return float((predict_labels(model, data.images, batch_size) == data.labels).float().mean())


def attack_success_rate(model: nn.Module, data: AttackSet, batch_size: int = 256) -> float:
    """Fraction of the triggered images classified as the attack's target."""
    return float((predict_labels(model, data.images, batch_size) == data.target_class).float().mean())


def _evaluate(
    model: nn.Module, test: EvalSet | None, attacks: Sequence[AttackSet], batch_size: int
) -> tuple[float | None, dict[str, float]]:
    acc = None if test is None else clean_accuracy(model, test, batch_size)
    return acc, {a.name: attack_success_rate(model, a, batch_size) for a in attacks}


def train_model(
    model: nn.Module,
    data: TrainSet,
    *,
    config: TrainConfig | None = None,
    seed: int = 0,
    test: EvalSet | None = None,
    attacks: Sequence[AttackSet] = (),
    loss_terms: Sequence[LossTerm] = (),
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` in place on ``data``; return history and held-out clean accuracy / ASR.

    ``test``: held-out clean images (clean accuracy). ``attacks``: held-out triggered source-class images
    per attack (ASR). ``loss_terms``: extra losses (see :class:`LossTerm`). ``progress``: a tqdm bar over
    all steps. The model is left in eval mode, contiguous, in fp32.
    """
    config = config if config is not None else TrainConfig()
    names = sorted({a.name for a in attacks})
    if len(names) != len(attacks):
        raise InputError("attack sets need distinct names")
    term_names = [t.name for t in loss_terms]
    if len(set(term_names)) != len(term_names) or {"loss", "correct"} & set(term_names):
        raise ConfigError(f"loss terms need distinct names other than 'loss'/'correct', got {term_names}")
    layers = sorted({layer for term in loss_terms for layer in term.layers})
    start = time.perf_counter()
    n = len(data)
    steps_per_epoch = math.ceil(n / config.batch_size)
    shuffle_gen = torch_generator(derive_seed(seed, "shuffle"))
    adv_gen = torch_generator(derive_seed(seed, "adversarial"))
    augment_gen = torch_generator(derive_seed(seed, "augment"))
    redraw_gen = torch_generator(derive_seed(seed, "redraw"))
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch)
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    clean_images = data.images.contiguous(memory_format=memory)
    history: list[EpochRecord] = []
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        desc=description,
        disable=not progress,
        leave=False,
        unit="step",
    )
    with torch.random.fork_rng(devices=[]), bar:
        torch.manual_seed(derive_seed(seed, "torch") % (2**63))
        model.to(memory_format=memory)
        for epoch in range(config.epochs):
            model.train()
            epoch_start = time.perf_counter()
            sums = {"loss": 0.0, "correct": 0.0, **{t.name: 0.0 for t in loss_terms}}
            epoch_data = data.epoch(clean_images, redraw_gen)
            for idx in torch.randperm(n, generator=shuffle_gen).split(config.batch_size):
                step = _step(model, epoch_data, idx, config, loss_terms, layers, adv_gen, augment_gen)
                optimizer.zero_grad(set_to_none=True)
                step["loss"].backward()
                optimizer.step()
                scheduler.step()
                for key, value in step.items():
                    sums[key] += float(value.detach()) * idx.numel()
                bar.update(1)
                bar.set_postfix(epoch=epoch + 1, loss=f"{float(step['loss'].detach()):.3f}")
            record = {
                "epoch": epoch + 1,
                "loss": sums["loss"] / n,
                "accuracy": sums["correct"] / n,
                "terms": {t.name: sums[t.name] / n for t in loss_terms},
            }
            if config.eval_every_epoch or epoch + 1 == config.epochs:
                model.to(memory_format=torch.contiguous_format)
                acc, asr = _evaluate(model, test, attacks, config.eval_batch_size)
                model.to(memory_format=memory)
                record["clean_accuracy"] = acc
                record["attack_success_rate"] = min(asr.values()) if asr else None
            history.append(EpochRecord(seconds=time.perf_counter() - epoch_start, **record))
        model.to(memory_format=torch.contiguous_format).eval()
    acc, asr = _evaluate(model, test, attacks, config.eval_batch_size)
    return TrainResult(
        history=tuple(history),
        clean_accuracy=acc,
        attack_success_rate=min(asr.values()) if asr else None,
        asr=asr,
        seconds=time.perf_counter() - start,
        seed=seed,
        config=config,
        bf16=resolve_bf16(config.bf16, model_device(model)),
    )


def _step(
    model: nn.Module,
    data: EpochData,
    idx: torch.Tensor,
    config: TrainConfig,
    loss_terms: Sequence[LossTerm],
    layers: Sequence[str],
    adv_gen: torch.Generator,
    augment_gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Loss (with graph) and diagnostics of one step; adversarial rows are the batch's leading rows."""
    device = model_device(model)  # the batch is drawn and augmented on the CPU, then moved
    x, y = augment_batch(data.images[idx], config, augment_gen).to(device), data.labels[idx].to(device)
    adversarial = torch.zeros(idx.numel(), dtype=torch.bool, device=device)
    if config.adversarial is not None:
        k = max(1, round(config.adversarial.ratio * idx.numel()))
        x = x.clone()
        x[:k] = perturb(model, x[:k], y[:k], config.adversarial, adv_gen, bf16=config.bf16)
        adversarial[:k] = True
    autocast = bf16_autocast(device, config.bf16)
    with ExitStack() as stack:
        features = stack.enter_context(capture(model, layers)) if layers else {}
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=config.label_smoothing)
            out: dict[str, torch.Tensor] = {}
            if loss_terms:
                true_labels, poisoned = data.true_labels[idx].to(device), data.poisoned[idx].to(device)
                batch = Batch(x, y, true_labels, poisoned, adversarial, logits)
                for term in loss_terms:
                    value = term.fn(batch, features)
                    out[term.name] = value.detach()
                    loss = loss + term.weight * value
    out["loss"] = loss
    out["correct"] = (logits.argmax(dim=1) == y).float().mean().detach()
    return out
