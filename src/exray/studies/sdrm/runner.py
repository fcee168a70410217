"""Run an SDRM study (issue 6; spec §6): for every configured (data, architecture, attack), train the
regular backdoored model (RBT) and the SDRM one with the same seed on the same poisoned data, then measure
clean accuracy, attack success rate, per-level distances and the detectors.

Distances are measured at the last three stage outputs (s1, s2, s3; spec §6.5), whatever levels the SDRM
variant regularises (recorded as ``regularised_levels``), and at the penultimate representation.

Seeds (all derived from the spec's ``seed``): data ``("data", d)``, the trigger ``("attack", k)``, the
poisoning plan ``("poison", d, k)``, the model's initialisation and training ``("run", d, a, k)`` (the same
for RBT and SDRM), the measurements ``("measure", d, a, k)``.

Resumable: each variant of each run lives in ``DIR/runs/<data>-<architecture>-<attack>/<variant>/`` —
``model/`` (a model directory), ``train.json`` and ``analysis.json``, each with the hash of the settings it
depends on. A finished training whose hash matches is loaded instead of retrained; an analysis whose hash
matches is reused. Files are written atomically, so an interrupted study restarts cleanly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from exray.attacks.catalog import redrawn_set, static_set, triggered_set
from exray.attacks.poisoning import Attack
from exray.attacks.sdrm import SDRMConfig, default_levels
from exray.data.datasets import render_train_test
from exray.data.digits import DigitsOptions, render_digits_train_test
from exray.data.examples import write_examples
from exray.data.signs import draw_classes
from exray.data.synth import AugmentOptions
from exray.models.io import load_model, save_model
from exray.models.runtime import model_device, resolve_device
from exray.studies.sdrm.measure import PENULTIMATE, level_distances, level_features, run_detectors, subset
from exray.studies.sdrm.spec import DataSpec, Run, StudySpec
from exray.train import AttackSet, EvalSet, TrainSet, seeded_model, train_model
from exray.utils import derive_seed, torch_generator, versions

VARIANTS: tuple[str, ...] = ("rbt", "sdrm")
RESULTS_FILE = "sdrm-results.json"
#: Clean examples per class written into every trained model's directory (from the held-out test set),
#: so that model-level scanners run on the study's models as on any model directory (`exray scan`).
EXAMPLES_PER_CLASS = 20


@dataclass(frozen=True)
class DataSplit:
    """A rendered data source: training and test images (N, 3, H, W), labels and foreground masks."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    train_masks: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    test_masks: torch.Tensor
    num_classes: int


def load_data(spec: DataSpec, seed: int) -> DataSplit:
    """Render a data source of the study (signs: classes drawn from ``seed`` too)."""
    if spec.source == "digits":
        train, test = render_digits_train_test(
            spec.train_per_class,
            spec.test_per_class,
            seed,
            size=spec.image_size,
            options=DigitsOptions.from_dict(spec.options),
        )
    else:
        classes = draw_classes(spec.classes, derive_seed(seed, "classes"))
        train, test = render_train_test(
            classes,
            spec.train_per_class,
            spec.test_per_class,
            seed,
            size=spec.image_size,
            options=AugmentOptions.from_dict(spec.options),
        )
    return DataSplit(
        train.images, train.labels, train.masks, test.images, test.labels, test.masks, spec.classes
    )


def run_seeds(spec: StudySpec, run: Run) -> dict[str, int]:
    """Every seed of a run, derived from the spec's seed (see the module docstring)."""
    return {
        "data": derive_seed(spec.seed, "data", run.data),
        "attack": derive_seed(spec.seed, "attack", run.attack),
        "poison": derive_seed(spec.seed, "poison", run.data, run.attack),
        "run": derive_seed(spec.seed, "run", run.data, run.architecture, run.attack),
        "measure": derive_seed(spec.seed, "measure", run.data, run.architecture, run.attack),
    }


@dataclass(frozen=True)
class PreparedRun:
    """The training set and held-out sets of one run.

    ``train``: what the models train on; ``poisoned``: the poisoned training set the detectors inspect —
    ``train`` itself with static poisoning, one seeded draw of it with poisoning re-drawn every epoch.
    """

    attack: Attack
    train: TrainSet
    poisoned: TrainSet
    test: EvalSet
    attack_set: AttackSet
    num_classes: int


def prepare_run(spec: StudySpec, run: Run, data: DataSplit) -> PreparedRun:
    """Build the attack, poison the training set and make the clean and triggered test sets."""
    seeds = run_seeds(spec, run)
    recipe = spec.attacks[run.attack]
    attack = recipe.build(data.num_classes, seeds["attack"])
    if recipe.poisoning == "redrawn":
        train = redrawn_set(
            data.train_images,
            data.train_labels,
            attack,
            recipe.fraction,
            masks=data.train_masks,
            seed=seeds["poison"],
        )
        draw = train.epoch(train.images, torch_generator(derive_seed(seeds["poison"], "inspected")))
        poisoned = TrainSet(draw.images, draw.labels, poisoned=draw.poisoned, true_labels=draw.true_labels)
    else:
        train = static_set(
            recipe,
            attack,
            data.train_images,
            data.train_labels,
            seeds["poison"],
            masks=data.train_masks,
            num_classes=data.num_classes,
        )
        poisoned = train
    test = EvalSet(data.test_images, data.test_labels)
    attack_set = triggered_set(
        data.test_images, data.test_labels, attack, masks=data.test_masks, name=run.attack
    )
    return PreparedRun(attack, train, poisoned, test, attack_set, data.num_classes)


def _hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def sdrm_config(spec: StudySpec, run: Run, target_class: int) -> SDRMConfig:
    """The run's regulariser: the architecture's SDRM settings with the attack's target."""
    return dataclasses.replace(spec.sdrm_for(run.architecture), target_class=target_class)


def _train_key(spec: StudySpec, run: Run, variant: str, device: torch.device) -> str:
    arch = spec.architectures[run.architecture]
    payload = {
        "seed": spec.seed,
        "data": spec.data[run.data].to_dict(),
        "architecture": {"name": arch.architecture, "kwargs": dict(arch.kwargs)},
        "attack": spec.attacks[run.attack].to_dict(),
        "training": spec.training_for(run.architecture).to_dict(),
        "variant": variant,
    }
    if variant == "sdrm":
        payload["sdrm"] = spec.sdrm_for(run.architecture).to_dict()
    if device.type != "cpu":  # a GPU trains other weights; CPU keys stay what they were
        payload["device"] = device.type
    return _hash(payload)


def _train_or_load(
    spec: StudySpec,
    run: Run,
    variant: str,
    prepared: PreparedRun,
    directory: Path,
    progress: bool,
    device: torch.device,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    key = _train_key(spec, run, variant, device)
    record = _read_json(directory / "train.json")
    model_dir = directory / "model"
    if record is not None and record.get("key") == key and (model_dir / "model.safetensors").exists():
        return load_model(model_dir, device=device), {**record, "cached": True}
    arch = spec.architectures[run.architecture]
    seed = run_seeds(spec, run)["run"]
    model = seeded_model(lambda: arch.build(prepared.num_classes), seed).to(device)
    terms = []
    if variant == "sdrm":
        sample = prepared.poisoned.images[:1].to(device)
        terms = [sdrm_config(spec, run, prepared.attack.target_class).loss_term(model, sample)]
    result = train_model(
        model,
        prepared.train,
        config=spec.training_for(run.architecture),
        seed=seed,
        test=prepared.test,
        attacks=[prepared.attack_set],
        loss_terms=terms,
        progress=progress,
        description=f"{run.label} {variant}",
    )
    directory.mkdir(parents=True, exist_ok=True)
    save_model(
        model.cpu(),
        model_dir,
        input_size=tuple(prepared.poisoned.images.shape[1:]),
        metadata={
            "poisoned": True,
            "triggers": [prepared.attack.to_config()],
            "seed": seed,
            "sdrm": variant == "sdrm",
        },
    )
    record = {
        "key": key,
        "seed": seed,
        "clean_accuracy": result.clean_accuracy,
        "attack_success_rate": result.attack_success_rate,
        "train_seconds": result.seconds,
        "history": result.to_dict()["history"],
    }
    _write_json(directory / "train.json", record)
    return model.to(device), {**record, "cached": False}


def _analyse(
    spec: StudySpec, run: Run, variant: str, model: torch.nn.Module, prepared: PreparedRun
) -> dict[str, Any]:
    seed = run_seeds(spec, run)["measure"]
    ev = spec.evaluation
    target = prepared.attack.target_class
    sample = prepared.test.images[:1].to(model_device(model))
    modules = default_levels(model, sample)
    regularised = sdrm_config(spec, run, target).resolve_levels(model, sample) if variant == "sdrm" else ()
    names = [f"s{i + 1}" for i in range(len(modules))]
    clean = prepared.test.images[prepared.test.labels == target]
    clean = clean[subset(len(clean), ev.max_per_group, derive_seed(seed, "clean"))]
    triggered = prepared.attack_set.images
    triggered = triggered[subset(len(triggered), ev.max_per_group, derive_seed(seed, "poisoned"))]
    a = level_features(model, clean, modules, ev.batch_size)
    b = level_features(model, triggered, modules, ev.batch_size)
    rename = dict(zip(modules, names, strict=True)) | {PENULTIMATE: PENULTIMATE}
    distances = level_distances(
        {rename[k]: v for k, v in a.items()},
        {rename[k]: v for k, v in b.items()},
        projections=ev.projections,
        seed=seed,
    )
    data = prepared.poisoned
    features = level_features(model, data.images, (), ev.batch_size)[PENULTIMATE]
    # SCAn's clean reference: the held-out clean test set, as the authors' ports use (issue 17).
    reference = (
        level_features(model, prepared.test.images, (), ev.batch_size)[PENULTIMATE],
        prepared.test.labels,
    )
    detectors = run_detectors(
        features, data.labels, data.poisoned, target, spec.detectors, seed, reference=reference
    )
    return {
        "levels": [{"name": n, "module": m} for n, m in zip(names, modules, strict=True)],
        "regularised_levels": list(regularised),
        "distance_samples": {"clean": len(clean), "poisoned": len(triggered)},
        "distances": distances,
        "detectors": detectors,
        "counts": {
            "train": len(data),
            "poisoned": int(data.poisoned.sum()),
            "target_class": int((data.labels == target).sum()),
        },
    }


def _analysis_key(spec: StudySpec, train_key: str) -> str:
    return _hash(
        {
            "train": train_key,
            "evaluation": spec.evaluation.to_dict(),
            "detectors": spec.detectors.to_dict(),
            "scan_reference": "clean test set",
        }
    )


def run_variant(
    spec: StudySpec,
    run: Run,
    variant: str,
    prepared: PreparedRun,
    out: Path,
    *,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Train (or load) and analyse (or reuse) one variant of one run on ``device``; returns its record."""
    directory = out / "runs" / run.label / variant
    device = resolve_device(device)
    model, trained = _train_or_load(spec, run, variant, prepared, directory, progress, device)
    write_examples(directory / "model", prepared.test.images, prepared.test.labels, EXAMPLES_PER_CLASS)
    key = _analysis_key(spec, trained["key"])
    analysis = _read_json(directory / "analysis.json")
    if analysis is None or analysis.get("key") != key:
        analysis = {"key": key, **_analyse(spec, run, variant, model, prepared)}
        _write_json(directory / "analysis.json", analysis)
    return {
        "data": run.data,
        "architecture": run.architecture,
        "attack": run.attack,
        "variant": variant,
        "seed": trained["seed"],
        "seeds": run_seeds(spec, run),
        "clean_accuracy": trained["clean_accuracy"],
        "attack_success_rate": trained["attack_success_rate"],
        "train_seconds": trained["train_seconds"],
        "cached": trained["cached"],
        **{k: v for k, v in analysis.items() if k != "key"},
    }


def run_study(
    spec: StudySpec,
    out: str | Path,
    *,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Run every configured (data, architecture, attack) in both variants; write ``DIR/sdrm-results.json``.

    ``device``: where the models train and are measured (default the CPU; ``"auto"``/``"cuda"`` for a
    GPU, :func:`~exray.models.runtime.resolve_device`; a GPU-trained model is cached under its own key).

    Returns the results: ``spec``, ``records`` (one per run and variant, see :func:`run_variant`),
    ``versions``, ``seconds``. ``on_record`` is called after each record (e.g. to print progress).
    """
    out = Path(out)
    device = resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data: dict[str, DataSplit] = {}
    records = []
    bar = tqdm(
        total=len(spec.runs) * len(VARIANTS),
        desc=f"sdrm study {spec.name}",
        unit="model",
        disable=not progress,
    )
    with bar:
        for run in spec.runs:
            if run.data not in data:
                data[run.data] = load_data(spec.data[run.data], run_seeds(spec, run)["data"])
            prepared = prepare_run(spec, run, data[run.data])
            for variant in VARIANTS:
                bar.set_postfix_str(f"{run.label} {variant}")
                record = run_variant(spec, run, variant, prepared, out, progress=progress, device=device)
                records.append(record)
                if on_record is not None:
                    on_record(record)
                bar.update(1)
    results = {
        "spec": spec.to_dict(),
        "records": records,
        "versions": versions(["sklearn", "matplotlib", "yaml"]),
        "device": str(device),
        "seconds": time.perf_counter() - start,
    }
    _write_json(out / RESULTS_FILE, results)
    return results
