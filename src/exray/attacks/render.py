"""Render a poisoned training set and held-out triggered sets with the sign generator (spec §7.3.7).

A triggered copy shows *the same scene* as its base image: the base set is rendered in seeded chunks, and
a chunk that holds triggered rows is rendered again from the same seed with those rows' triggers
(:class:`~exray.data.synth.SignRenderer` draws triggers from a separate stream, so scenes are identical).
Polygons are therefore pasted inside the sign before its geometric transforms, exactly as in the clean
image's scene; filters act on the finished image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from exray.attacks.poisoning import Attack, PoisonPlan, plan_poisoning
from exray.data.synth import SignRenderer
from exray.errors import ConfigError
from exray.train.data import AttackSet, EvalSet, TrainSet
from exray.triggers import Trigger
from exray.utils import derive_seed


@dataclass(frozen=True)
class PoisonedDataset:
    """A rendered poisoned training set: one row per :class:`PoisonPlan` row.

    ``images`` (M, 3, H, W) float32 in [0, 1]; ``labels`` training labels; ``true_labels`` the classes
    shown; ``poisoned`` (M,) bool poison flags; ``masks`` (M, 1, H, W) bool sign masks; ``plan`` the plan.
    """

    images: torch.Tensor
    labels: torch.Tensor
    true_labels: torch.Tensor
    poisoned: torch.Tensor
    masks: torch.Tensor
    plan: PoisonPlan

    @classmethod
    def from_plan(cls, plan: PoisonPlan, images: torch.Tensor, masks: torch.Tensor) -> PoisonedDataset:
        """The rendered ``images`` and ``masks`` of ``plan``'s rows, with the plan's labels and flags."""
        return cls(
            images=images,
            labels=torch.from_numpy(plan.labels),
            true_labels=torch.from_numpy(plan.true_labels),
            poisoned=torch.from_numpy(plan.poisoned),
            masks=masks,
            plan=plan,
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def train_set(self) -> TrainSet:
        """The set as the training loop takes it (poison flags and true labels included)."""
        return TrainSet(self.images, self.labels, poisoned=self.poisoned, true_labels=self.true_labels)


def base_labels(num_classes: int, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` labels of every class in a seeded random order (the base set's labels)."""
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    order = np.random.default_rng(derive_seed(seed, "order")).permutation(num_classes * per_class)
    return np.repeat(np.arange(num_classes), per_class)[order]


def render_poisoned(
    renderer: SignRenderer,
    per_class: int,
    attacks: Sequence[Attack],
    seed: int,
    *,
    chunk_size: int = 256,
) -> PoisonedDataset:
    """Render ``per_class`` base images per class and the poisoned rows that ``attacks`` add or stamp.

    The plan is :func:`plan_poisoning` of the base labels with seed ``derive_seed(seed, "plan")``; chunk i
    renders from ``derive_seed(seed, "chunk", i)``. A clean model is ``attacks=()``.
    """
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    labels = base_labels(renderer.num_classes, per_class, seed)
    plan = plan_poisoning(labels, attacks, derive_seed(seed, "plan"), num_classes=renderer.num_classes)
    m, size = len(plan), renderer.size
    images = torch.empty(m, 3, size, size)
    masks = torch.empty(m, 1, size, size, dtype=torch.bool)

    # The k-th triggered row of a base image is rendered in pass k of that image's chunk.
    passes: dict[int, list[int]] = {}
    rows_of_base: dict[int, int] = {}
    for row in np.flatnonzero(plan.trigger_index >= 0):
        base = int(plan.base_index[row])
        k = rows_of_base.get(base, 0)
        rows_of_base[base] = k + 1
        passes.setdefault(k, []).append(int(row))

    for c, start in enumerate(range(0, labels.size, chunk_size)):
        stop = min(start + chunk_size, labels.size)
        chunk_seed = derive_seed(seed, "chunk", c)
        clean = renderer.render(labels[start:stop], chunk_seed)
        images[start:stop], masks[start:stop] = clean.images, clean.masks
        for rows in passes.values():
            here = [r for r in rows if start <= plan.base_index[r] < stop]
            if not here:
                continue
            triggers = [None] * (stop - start)
            for r in here:
                triggers[int(plan.base_index[r]) - start] = plan.trigger_of(r)
            stamped = renderer.render(labels[start:stop], chunk_seed, triggers=triggers)
            local = torch.as_tensor(plan.base_index[here] - start)
            images[torch.as_tensor(here)] = stamped.images[local]
            masks[torch.as_tensor(here)] = stamped.masks[local]
    return PoisonedDataset.from_plan(plan, images, masks)


def _render_chunked(
    renderer: SignRenderer, labels: np.ndarray, seed: int, trigger: Trigger | None, chunk_size: int
) -> torch.Tensor:
    return torch.cat(
        [
            renderer.render(labels[start : start + chunk_size], derive_seed(seed, i), triggers=trigger).images
            for i, start in enumerate(range(0, labels.size, chunk_size))
        ]
    )


def render_clean_set(renderer: SignRenderer, per_class: int, seed: int, *, chunk_size: int = 256) -> EvalSet:
    """A held-out clean set of ``per_class`` images per class."""
    labels = base_labels(renderer.num_classes, per_class, seed)
    images = _render_chunked(renderer, labels, derive_seed(seed, "clean-set"), None, chunk_size)
    return EvalSet(images, torch.from_numpy(labels.astype(np.int64)))


def render_attack_set(
    renderer: SignRenderer,
    attack: Attack,
    per_class: int,
    seed: int,
    *,
    name: str = "attack",
    chunk_size: int = 256,
) -> AttackSet:
    """Held-out images of every source class of ``attack`` with its trigger (the ASR set), ``per_class``
    each; the target class is never a source, so no target image is counted."""
    if per_class < 1:
        raise ConfigError(f"per_class must be >= 1, got {per_class}")
    attack.check_classes(renderer.num_classes)
    labels = np.tile(np.asarray(attack.source_classes), per_class)
    images = _render_chunked(renderer, labels, derive_seed(seed, "attack-set"), attack.trigger, chunk_size)
    return AttackSet(images, attack.target_class, name)
