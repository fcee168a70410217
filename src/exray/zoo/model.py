"""Build one model of a zoo: render its data, poison, train, check the quality bar, write its directory.

The directory (design §4) is assembled under ``.<name>.partial`` and renamed into place when complete,
so a model directory either is absent or holds everything: ``config.json`` (full ground truth),
``model.safetensors``, ``ground_truth.csv`` and ``clean-example-data/class_{c}_example_{k}.png``.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exray.attacks import render_attack_set, render_clean_set, render_poisoned
from exray.attacks.adaptive import AdaptiveConfig
from exray.data.examples import example_filename
from exray.data.images import write_image
from exray.data.signs import classes_to_config
from exray.data.synth import SignRenderer
from exray.models import build_model
from exray.models.io import read_config, save_model
from exray.models.layers import layer_shape
from exray.models.runtime import model_device, resolve_device
from exray.train import LossTerm, TrainResult, seeded_model, train_model
from exray.utils import derive_seed, versions
from exray.version import __version__
from exray.zoo.draw import ModelDesign, ModelDraw, draw_model, recipe, recipe_hash
from exray.zoo.spec import ZooSpec

EXAMPLES_DIR = "clean-example-data"


@dataclass
class Attempt:
    """One trained attempt and whether it meets the quality bar."""

    draw: ModelDraw
    model: torch.nn.Module
    result: TrainResult
    rows: dict[str, int]
    passed: bool
    margin: float

    def summary(self) -> dict[str, Any]:
        return {
            "attempt": self.draw.attempt,
            "seed": self.draw.seed,
            "clean_accuracy": self.result.clean_accuracy,
            "attack_success_rate": self.result.attack_success_rate,
            "passed": self.passed,
        }


def train_attempt(
    spec: ZooSpec, design: ModelDesign, attempt: int, *, progress: bool = False, device: str = "cpu"
) -> Attempt:
    """Draw, render, poison and train attempt ``attempt`` of a model on ``device``; measure it against the
    quality bar. The model is returned on the CPU."""
    draw = draw_model(spec, design, attempt)
    renderer = SignRenderer(draw.classes, size=spec.image_size, options=spec.data.options())
    data = render_poisoned(renderer, spec.data.train_per_class, draw.attacks, draw.data_seed)
    test = render_clean_set(renderer, spec.data.test_per_class, derive_seed(draw.data_seed, "test"))
    attack_sets = [
        render_attack_set(
            renderer,
            attack,
            spec.data.attack_per_class,
            derive_seed(draw.data_seed, "asr", i),
            name=f"trigger_{i}",
        )
        for i, attack in enumerate(draw.attacks)
    ]
    arch = design.architecture
    model = seeded_model(lambda: build_model(arch.name, draw.num_classes, **arch.kwargs), draw.train_seed)
    model = model.to(resolve_device(device))
    terms = adaptive_terms(spec, design, draw, model, test.images[:1])
    result = train_model(
        model,
        data.train_set(),
        config=draw.training,
        seed=draw.train_seed,
        test=test,
        attacks=attack_sets,
        loss_terms=terms,
        progress=progress,
        description=f"{design.name} attempt {attempt + 1}",
    )
    q = spec.quality
    margins = [(result.clean_accuracy or 0.0) - q.min_clean_accuracy]
    if design.poisoned:
        margins.append((result.attack_success_rate or 0.0) - q.min_attack_success_rate)
    margin = min(margins)
    return Attempt(draw, model.cpu(), result, data.plan.counts(), margin >= 0.0, margin)


def adaptive_terms(
    spec: ZooSpec, design: ModelDesign, draw: ModelDraw, model: torch.nn.Module, sample: torch.Tensor
) -> list[LossTerm]:
    """The adaptive attack's loss terms of a trojaned model (``training.adaptive``, EX-RAY §4.5): one per
    target of its triggers; none for a clean model or at weight 0."""
    adaptive = spec.training.adaptive
    if not design.poisoned or adaptive.weight <= 0:
        return []
    return [
        AdaptiveConfig(
            target_class=target,
            weight=adaptive.weight,
            layer=adaptive.layer,
            variant=adaptive.variant,  # type: ignore[arg-type]
        ).loss_term(model, sample.to(model_device(model)), name=f"adaptive_{target}")
        for target in sorted({attack.target_class for attack in draw.attacks})
    ]


def build_model_dir(
    spec: ZooSpec, design: ModelDesign, out: Path, *, progress: bool = False, device: str = "cpu"
) -> dict[str, Any]:
    """Train model ``design`` (retrying below the quality bar) and write its directory into ``out``.

    Returns the written ``config.json`` contents. A model that never meets the bar is written with
    ``quality.passed = false`` — reported, never silently kept.
    """
    start = time.perf_counter()
    attempts: list[Attempt] = []
    for a in range(spec.quality.attempts):
        attempts.append(train_attempt(spec, design, a, progress=progress, device=device))
        if attempts[-1].passed:
            break
    best = max(attempts, key=lambda t: t.margin)
    draw, result = best.draw, best.result
    config = {
        "poisoned": design.poisoned,
        "triggers": [attack.to_config() for attack in draw.attacks],
        "clean_accuracy": result.clean_accuracy,
        "attack_success_rate": result.attack_success_rate,
        "asr_per_trigger": [result.asr[f"trigger_{i}"] for i in range(len(draw.attacks))],
        "seed": draw.seed,
        "model_seed": design.model_seed,
        "attempt": draw.attempt,
        "quality": {
            "passed": best.passed,
            "min_clean_accuracy": spec.quality.min_clean_accuracy,
            "min_attack_success_rate": spec.quality.min_attack_success_rate,
            "attempts": [t.summary() for t in attempts],
        },
        "exray_layer": exray_layer(best.model, spec.image_size),
        "sign_classes": classes_to_config(draw.classes),
        "confusion_pairs": [list(p) for p in draw.confusion_pairs()],
        "image_size": spec.image_size,
        "data": {
            "train_per_class": spec.data.train_per_class,
            "test_per_class": spec.data.test_per_class,
            "attack_per_class": spec.data.attack_per_class,
            "examples_per_class": draw.examples_per_class,
            "augment": spec.data.options().to_dict(),
            "seed": draw.data_seed,
            "train_rows": best.rows,
        },
        "training": {
            **draw.training.to_dict(),
            **({"bf16_resolved": result.bf16} if draw.training.bf16 == "auto" else {}),
            "seed": draw.train_seed,
            "threads": torch.get_num_threads(),  # the weights depend on it (zoo.build._job)
            # and on the device; a CPU build records none, as every build did before devices were chosen
            **({} if resolve_device(device).type == "cpu" else {"device": str(resolve_device(device))}),
            "seconds": result.seconds,
            "history": result.to_dict()["history"],
        },
        "exray_version": __version__,
        "versions": versions(),
        "zoo": {
            "name": spec.name,
            "index": design.index,
            "recipe_hash": recipe_hash(spec, design),
            "recipe": recipe(spec, design),
        },
    }
    config["build_seconds"] = time.perf_counter() - start
    return write_model_dir(out / design.name, best.model, config, draw, spec)


def write_model_dir(
    final: Path, model: torch.nn.Module, config: dict[str, Any], draw: ModelDraw, spec: ZooSpec
) -> dict[str, Any]:
    """Write ``model`` with ``config`` and its draw's clean examples as the model directory ``final``:
    assembled under ``.<name>.partial`` beside it and renamed into place (module docstring). Returns the
    written ``config.json`` contents."""
    partial = final.parent / f".{final.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    write_examples(partial / EXAMPLES_DIR, draw, spec)
    save_model(model, partial, input_size=(3, spec.image_size, spec.image_size), metadata=config)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return read_config(final)


def exray_layer(model: torch.nn.Module, image_size: int) -> dict[str, Any]:
    """EX-RAY's default layer (the second-to-last convolutional block, paper §4) of a zoo model: its
    module, channels and feature-map size — the width the method's premise needs (issue 16)."""
    name, shape = layer_shape(model, None, torch.zeros(1, 3, image_size, image_size))
    return {"layer": name, "channels": shape[0], "map": list(shape[1:])}


def write_examples(folder: Path, draw: ModelDraw, spec: ZooSpec) -> None:
    """``examples_per_class`` held-out clean images per class as ``class_{c}_example_{k}.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    renderer = SignRenderer(draw.classes, size=spec.image_size, options=spec.data.options())
    for c in range(draw.num_classes):
        labels = np.full(draw.examples_per_class, c)
        batch = renderer.render(labels, derive_seed(draw.examples_seed, c))
        for k, image in enumerate(batch.images):
            write_image(folder / example_filename(c, k), image)
