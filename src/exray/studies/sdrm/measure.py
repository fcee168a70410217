"""What the SDRM study measures on a trained model (spec §6.3–6.5): per-level distribution distances
between clean target-class and poisoned representations, and the three detectors on the poisoned
training set's penultimate representations.

Representations are read with hooks that are removed on exit; the model runs in eval mode without
gradients, in batches, and its mode is restored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from exray.detectors import ActivationClustering, DetectionResult, PoisonDetector, SCAn, SpectralSignatures
from exray.errors import LayerError
from exray.metrics import energy_distance, mmd, sliced_wasserstein
from exray.models.hooks import capture, capture_inputs, last_to_run
from exray.models.runtime import model_device
from exray.studies.sdrm.spec import DetectorSpec
from exray.utils import derive_seed

#: Key of the penultimate representation among the measured levels.
PENULTIMATE = "penultimate"
#: The distances of spec §6.5, in report order.
METRICS: tuple[str, ...] = ("mmd", "energy", "swd")
#: Detector scopes: the detector inspects the attack's target class only, or the whole training set.
SCOPES: tuple[str, ...] = ("target", "all")


def level_features(
    model: nn.Module, images: torch.Tensor, levels: Sequence[str], batch_size: int = 256
) -> dict[str, torch.Tensor]:
    """Flattened outputs (N, D_level) of the named modules, plus the penultimate representation, on the
    CPU (the model runs on its own device)."""
    device = model_device(model)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in (*levels, PENULTIMATE)}
    was_training = model.training
    model.eval()
    try:
        linear = last_to_run(model, images[:1].to(device), nn.Linear)
        if linear is None:
            raise LayerError("the model has no nn.Linear layer: its penultimate representation is undefined")
        with torch.no_grad():
            for chunk in images.split(batch_size):
                with capture(model, levels) as seen, capture_inputs(model, [linear], call="last") as inputs:
                    model(chunk.to(device))
                for name in levels:
                    parts[name].append(seen[name].detach().flatten(1).cpu())
                parts[PENULTIMATE].append(inputs[linear].detach().flatten(1).cpu())
    finally:
        model.train(was_training)
    return {name: torch.cat(chunks).float() for name, chunks in parts.items()}


def subset(n: int, limit: int, seed: int) -> torch.Tensor:
    """At most ``limit`` of ``n`` row indices, a seeded random choice (all rows, in order, if n <= limit)."""
    if n <= limit:
        return torch.arange(n)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.sort(rng.choice(n, size=limit, replace=False)))


def level_distances(
    clean: Mapping[str, torch.Tensor], poisoned: Mapping[str, torch.Tensor], *, projections: int, seed: int
) -> dict[str, dict[str, float]]:
    """MMD (biased, spec §6.1 kernel), energy distance and sliced Wasserstein-2 (spec §6.5) per level."""
    out = {}
    for name in clean:
        x, y = clean[name].double(), poisoned[name].double()
        out[name] = {
            "mmd": float(mmd(x, y)),
            "energy": float(energy_distance(x, y)),
            "swd": float(sliced_wasserstein(x, y, projections, seed=derive_seed(seed, "swd", name) % 2**63)),
        }
    return out


def _prf(result: DetectionResult, truth: np.ndarray) -> dict[str, Any]:
    prf = result.evaluate(truth)
    return {
        "f1": prf.f1,
        "precision": prf.precision,
        "recall": prf.recall,
        "flagged": result.n_flagged,
    }


def run_detectors(
    features: torch.Tensor,
    labels: torch.Tensor,
    poisoned: torch.Tensor,
    target_class: int,
    spec: DetectorSpec,
    seed: int,
    reference: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """F1 / precision / recall of the detectors against the poison flags, over the whole training set.

    Scope ``"target"``: the defender inspects the attack's target class only (the others count as
    predicted clean); activation clustering and spectral signatures (every inspected class acted on).
    Scope ``"all"``: the detectors run on every class and decide themselves which classes are poisoned
    (activation clustering's relative-size test unless the spec names an analysis, spectral signatures
    with ``class_selection`` as configured, SCAn's J* test — SCAn compares classes, so it has this scope
    only). With
    ``poison_rate: auto`` the spectral-signature budget of the target class equals its poison count.

    ``reference``: clean held-out (features, labels) — SCAn fits its global model on them, as its authors
    do (``exray.detectors.contamination``); its entry then also records ``reference_size`` and
    ``pca_components``.
    """
    x = features.numpy()
    y = labels.numpy()
    truth = poisoned.numpy().astype(bool)
    in_target = y == target_class
    ss_options = dict(spec.spectral_signatures)
    if spec.ss_auto_rate:
        factor = float(ss_options.get("removal_factor", 1.5))
        ss_options["poison_rate"] = min(
            1.0, max(1, int(truth[in_target].sum())) / (factor * int(in_target.sum()))
        )
    ac = ActivationClustering(**{"seed": derive_seed(seed, "ac") % 2**31, **spec.activation_clustering})
    scan = SCAn(**{"seed": derive_seed(seed, "scan") % 2**31, **spec.scan})
    out: dict[str, dict[str, dict[str, Any]]] = {scope: {} for scope in SCOPES}

    rows = np.flatnonzero(in_target)
    in_target_detectors: tuple[tuple[str, PoisonDetector], ...] = (
        ("activation_clustering", ac),
        ("spectral_signatures", SpectralSignatures(**{**ss_options, "class_selection": "all"})),
    )
    for name, detector in in_target_detectors:
        partial = detector.detect(x[rows], y[rows])
        flags = np.zeros(y.size, dtype=bool)
        flags[rows] = partial.flags
        scores = np.zeros(y.size)
        scores[rows] = partial.scores
        full = DetectionResult(partial.detector, partial.options, scores, flags, partial.classes)
        out["target"][name] = _prf(full, truth)

    # Over every class AC must decide which classes are poisoned: ART's default analysis ("smaller") flags
    # a cluster in every class, so this scope uses the relative-size test unless the spec names one.
    ac_all = ActivationClustering(
        **{
            "seed": derive_seed(seed, "ac") % 2**31,
            "analysis": "relative-size",
            **spec.activation_clustering,
        }
    )
    every_class_detectors: tuple[tuple[str, PoisonDetector], ...] = (
        ("activation_clustering", ac_all),
        ("spectral_signatures", SpectralSignatures(**ss_options)),
        ("scan", scan),
    )
    for name, detector in every_class_detectors:
        if name == "scan" and reference is not None:
            result = scan.detect(x, y, reference[0].numpy(), reference[1].numpy())
            out["all"][name] = _prf(result, truth) | {
                "reference_size": result.summary["reference_size"],
                "pca_components": result.summary["pca_components"],
            }
        else:
            out["all"][name] = _prf(detector.detect(x, y), truth)
    return out
