"""The training procedures of the semantic study's trained attacks (:mod:`exray.studies.semantic.trained`):
each takes a :class:`Task` — a model drawn like a clean model of the study's zoo, its clean data, a drawn
target — and returns a :class:`Trained`: the model with its clean accuracy, ASR and ground truth.

* **composite** — :func:`exray.attacks.composite.composite_set`: mixes of two drawn source classes
  relabelled to a drawn target, same-class mixes kept at their label; the zoo's training recipe.
* **hidden** — the attacker's clean model of the design is the feature extractor; ``fraction`` of the
  target class's images are perturbed (L∞ ``epsilon``) to collide with source images stamped with a polygon
  drawn as the zoo draws one (:func:`exray.attacks.hidden.hidden_trigger_set`), the features computed in the
  zoo's training precision (``bf16: auto``: bf16 where native, 3× faster with AMX); the victim fine-tunes
  the extractor's last layer on the set (the paper's transfer-learning victim) for ``head_epochs``.
* **input_aware** — :func:`exray.attacks.input_aware.train_input_aware` with its generators, all-to-one to a
  drawn target.
* **wanet** — the warp of :class:`exray.attacks.warp.WarpTrigger` (``strength``, ``grid``), all-to-one to a
  drawn target: ``fraction`` of the other classes' images get a warped copy, and WaNet's noise mode adds
  ``cross_ratio`` × as many noise-warped images at their true labels (:func:`exray.attacks.with_noise_mode`);
  the zoo's training recipe for ``epochs`` epochs (WaNet trains far longer than a zoo model: a zoo's warp
  trigger type shares the zoo's budget).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from exray.attacks import render_clean_set
from exray.attacks.catalog import AttackRecipe, static_set, triggered_set
from exray.attacks.composite import composite_set, composite_test_set
from exray.attacks.hidden import HiddenTriggerConfig, hidden_trigger_set, hidden_trigger_test_set
from exray.attacks.input_aware import InputAwareConfig, train_input_aware
from exray.data.synth import SignRenderer
from exray.models import build_model
from exray.models.hooks import last_to_run
from exray.train import EvalSet, TrainConfig, TrainSet, seeded_model, train_model
from exray.train.loop import attack_success_rate, clean_accuracy
from exray.utils import derive_seed
from exray.zoo.draw import ModelDraw, draw_trigger
from exray.zoo.schema import ZooSpec


def wanet_recipe(settings: dict[str, Any], target: int) -> AttackRecipe:
    """The WaNet attack of ``settings`` (fraction, strength, grid, cross_ratio) toward ``target``."""
    options = {k: settings[k] for k in ("strength", "grid", "cross_ratio")}
    return AttackRecipe("warp", target_class=target, fraction=settings["fraction"], options=options)


def hidden_config(settings: dict[str, Any], bf16: bool | str = False) -> HiddenTriggerConfig:
    """The hidden-trigger poisoning of ``settings``, its features in the precision ``bf16`` (the zoo's)."""
    return HiddenTriggerConfig(
        epsilon=settings["epsilon"], steps=settings["steps"], lr=settings["lr"], bf16=bf16
    )


@dataclass
class Trained:
    """A procedure's result: the trained model, its clean accuracy and ASR, the ground-truth trigger record
    and details for the model's ``config.json``."""

    model: torch.nn.Module
    clean_accuracy: float
    attack_success_rate: float
    trigger: dict[str, Any]
    details: dict[str, Any]


@dataclass
class Task:
    """What every procedure starts from: the drawn model's clean training and test sets, its untrained
    network, a drawn target and the seeded generator that draws the rest."""

    zoo: ZooSpec
    draw: ModelDraw
    settings: dict[str, Any]
    clean: EvalSet
    test: EvalSet
    model: torch.nn.Module
    target: int
    others: list[int]
    rng: np.random.Generator


def task(zoo: ZooSpec, settings: dict[str, Any], draw: ModelDraw) -> Task:
    """What the procedures start from, for ``draw`` of ``zoo`` and the attack's ``settings``."""
    renderer = SignRenderer(draw.classes, size=zoo.image_size, options=zoo.data.options())
    rng = np.random.default_rng(derive_seed(draw.seed, "trained-attack"))
    target = int(rng.integers(draw.num_classes))
    arch = draw.design.architecture
    return Task(
        zoo=zoo,
        draw=draw,
        settings=settings,
        clean=render_clean_set(renderer, zoo.data.train_per_class, derive_seed(draw.data_seed, "train")),
        test=render_clean_set(renderer, zoo.data.test_per_class, derive_seed(draw.data_seed, "test")),
        model=seeded_model(lambda: build_model(arch.name, draw.num_classes, **arch.kwargs), draw.train_seed),
        target=target,
        others=[c for c in range(draw.num_classes) if c != target],
        rng=rng,
    )


def _composite(t: Task) -> Trained:
    a, b = (int(c) for c in t.rng.choice(t.others, 2, replace=False))
    fraction = float(t.settings["fraction"])
    data = composite_set(t.clean.images, t.clean.labels, (a, b), t.target, fraction, t.draw.data_seed)
    asr_set = composite_test_set(
        t.test.images, t.test.labels, (a, b), t.target, t.zoo.data.attack_per_class, t.draw.data_seed
    )
    result = train_model(
        t.model, data, config=t.draw.training, seed=t.draw.train_seed, test=t.test, attacks=[asr_set],
        progress=False,
    )  # fmt: skip
    trigger = {"type": "composite", "source_classes": [a, b], "target_class": t.target, "fraction": fraction}
    return Trained(
        t.model, result.clean_accuracy or 0.0, result.attack_success_rate or 0.0, trigger,
        {"history": result.to_dict()["history"]},
    )  # fmt: skip


def _hidden(t: Task) -> Trained:
    source = int(t.rng.choice(t.others))
    polygon = draw_trigger(t.zoo, "polygon", [t.draw.classes[source]], [], t.rng)
    extractor = t.model  # the attacker's clean model
    train_model(
        extractor, TrainSet(t.clean.images, t.clean.labels), config=t.draw.training, seed=t.draw.train_seed,
        progress=False,
    )  # fmt: skip
    fraction = float(t.settings["fraction"])
    data = hidden_trigger_set(
        extractor, t.clean.images, t.clean.labels, polygon, source, t.target, fraction,
        hidden_config(t.settings, t.draw.training.bf16), seed=t.draw.data_seed,
    )  # fmt: skip
    head = TrainConfig(
        epochs=t.settings["head_epochs"], lr=t.settings["head_lr"], bf16=t.draw.training.bf16,
        channels_last=t.draw.training.channels_last,
    )  # fmt: skip
    victim = _fine_tune_head(extractor, data, head, t.draw)
    asr_set = hidden_trigger_test_set(
        t.test.images, t.test.labels, polygon, source, t.target, t.draw.data_seed
    )
    trigger = {"type": "hidden", "source_classes": [source], "target_class": t.target, "fraction": fraction}
    return Trained(
        victim, clean_accuracy(victim, t.test), attack_success_rate(victim, asr_set),
        trigger | {"stamp": polygon.to_config()},
        {"extractor_clean_accuracy": clean_accuracy(extractor, t.test)},
    )  # fmt: skip


def _input_aware(t: Task) -> Trained:
    # the zoo's precision unless the attack's settings name one
    config = InputAwareConfig(target_class=t.target, **{"bf16": t.draw.training.bf16, **t.settings})
    train = TrainSet(t.clean.images, t.clean.labels)
    result = train_input_aware(t.model, train, config, seed=t.draw.train_seed, test=t.test)
    trigger = {"type": "input_aware", "source_classes": "all", "target_class": t.target}
    return Trained(
        t.model, result.clean_accuracy or 0.0, result.attack_success_rate or 0.0, trigger,
        {"cross_accuracy": result.cross_accuracy, "history": result.history},
    )  # fmt: skip


def _wanet(t: Task) -> Trained:
    recipe = wanet_recipe(t.settings, t.target)
    attack = recipe.build(t.draw.num_classes, t.draw.data_seed)
    seed = derive_seed(t.draw.data_seed, "wanet")
    train = static_set(recipe, attack, t.clean.images, t.clean.labels, seed, num_classes=t.draw.num_classes)
    asr_set = triggered_set(t.test.images, t.test.labels, attack, name="wanet")
    config = dataclasses.replace(t.draw.training, epochs=int(t.settings["epochs"]))
    result = train_model(
        t.model, train, config=config, seed=t.draw.train_seed, test=t.test, attacks=[asr_set], progress=False
    )
    trigger = {
        "type": "wanet", "source_classes": "all", "target_class": t.target, "fraction": recipe.fraction,
        "stamp": attack.trigger.to_config(), "cross_ratio": recipe.options["cross_ratio"],
    }  # fmt: skip
    return Trained(
        t.model, result.clean_accuracy or 0.0, result.attack_success_rate or 0.0, trigger,
        {"history": result.to_dict()["history"], "epochs": config.epochs},
    )  # fmt: skip


#: Each attack's training procedure.
PROCEDURES = {"composite": _composite, "hidden": _hidden, "input_aware": _input_aware, "wanet": _wanet}


def _fine_tune_head(
    extractor: torch.nn.Module, data: TrainSet, config: TrainConfig, draw: ModelDraw
) -> torch.nn.Module:
    """The paper's victim (transfer learning): only the last ``nn.Linear`` is trained, from the extractor's
    weights; every other weight and the BatchNorm running statistics stay the extractor's (momentum 0 while
    the head trains: the training loop runs in train mode, whose batch statistics would otherwise move
    them)."""
    victim = copy.deepcopy(extractor)
    head = last_to_run(victim, data.images[:1], torch.nn.Linear)
    for name, parameter in victim.named_parameters():
        parameter.requires_grad_(name.startswith(f"{head}."))
    norms = [m for m in victim.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.momentum = 0.0
    train_model(victim, data, config=config, seed=derive_seed(draw.train_seed, "victim"), progress=False)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    for parameter in victim.parameters():
        parameter.requires_grad_(True)
    return victim
