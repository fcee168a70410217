"""The repair study (issue 19 §2; EX-RAY paper §4.6, Table 8, and Appendix C, Tables 21-22): injected
backdoors can be unlearned at a small accuracy cost, natural ones cannot.

For each model of the study's zoo (clean models and label-specific-trojaned ones of one design):

1. Neural Cleanse inverts every ordered (victim, target) pair on the model's clean examples: the matrix of
   trigger sizes (mask L1 norms, pixels) before repair — the paper's Tables 21a / 22a.
2. The backdoor to repair: a trojaned model's planted pair (its first source class → its target, from the
   ground truth: the paper's "the injected trigger flips class 1 to class 0"); a clean model's natural one,
   the pair with the smallest trigger (the paper's benign model: 3 → 5, among its smallest).
   The chosen pair is inverted once more from another seed: a clean model's pair is the smallest of many
   noisy sizes, so its size in the matrix is biased low; the re-inversion gives its ``size_before`` and
   the trigger that is unlearned (for both groups alike).
3. Unlearning with that pair's Neural Cleanse trigger (:func:`exray.repair.repair_model`, the paper's
   method [77]), every model under the same budget (the spec's ``repair`` section); the repaired model's
   accuracy is measured on held-out examples.
4. Neural Cleanse again on the repaired model: the matrix after (Tables 21b / 22b).

Table 8 averages, per group (natural = the clean models' pairs, injected = the trojaned models'), the
accuracy and the repaired pair's trigger size before and after. Each model's record is cached in
``OUT/models/<name>.json``: a rerun resumes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from exray.errors import InputError
from exray.evaluation.truth import ModelTruth, read_model_truth
from exray.models.io import model_info
from exray.pipeline.loading import load_scan_inputs
from exray.repair import repair_model
from exray.scanners.neural_cleanse import NeuralCleanseScanner
from exray.studies.repair.spec import RepairStudySpec
from exray.utils import derive_seed, versions
from exray.version import __version__
from exray.zoo import cached_build, read_metadata

#: Bumped when a change makes cached per-model records stale.
RECORD_REVISION = 2


def size_matrix(num_classes: int, inverted: list[Any]) -> list[list[float | None]]:
    """``matrix[target][victim]``: the trigger size flipping ``victim`` to ``target`` (the paper's layout:
    columns are victims, rows targets); None on the diagonal and for pairs not inverted."""
    matrix: list[list[float | None]] = [[None] * num_classes for _ in range(num_classes)]
    for pair in inverted:
        matrix[pair.target][pair.victim] = float(pair.norm)
    return matrix


def chosen_pair(truth: ModelTruth, inverted: list[Any]) -> tuple[tuple[int, int], str]:
    """(victim, target) to repair and why (module docstring, step 2)."""
    if truth.poisoned:
        trigger = truth.triggers[0]
        victims = sorted({p.victim for p in inverted} - {trigger.target})
        sources = [v for v in (trigger.sources or victims) if v in victims]
        if not sources:
            raise InputError(f"{truth.name}: no clean examples of the planted trigger's source classes")
        return (sources[0], trigger.target), "planted"  # the lowest source class with examples
    smallest = min(inverted, key=lambda p: (p.norm, p.victim, p.target))
    return (smallest.victim, smallest.target), "smallest trigger"


def repair_one(spec: RepairStudySpec, directory: Path, *, progress: bool = False) -> dict[str, Any]:
    """Steps 1-4 of the module docstring for one model directory; returns its record."""
    start = time.perf_counter()
    model, examples = load_scan_inputs(directory, device="cpu")
    truth = read_model_truth(directory)
    num_classes = model_info(model).num_classes or max(examples) + 1
    seed = derive_seed(spec.seed, "repair-study", directory.name)
    nc = NeuralCleanseScanner(**spec.nc.to_dict())
    before = nc.invert_pairs(model, examples, seed=seed, progress=progress)
    (victim, target), reason = chosen_pair(truth, before)
    # a clean model's pair is the smallest of many noisy sizes, so its own size is biased low: measure the
    # chosen pair again, from another seed, and repair with that trigger (both groups alike)
    (trigger,) = nc.invert_pairs(model, examples, [(victim, target)], seed=derive_seed(seed, "chosen"))
    result = repair_model(
        model,
        examples,
        [trigger.found()],
        natural=[not truth.poisoned],
        include_natural=True,
        config=spec.repair,
        seed=seed,
    )
    after = nc.invert_pairs(model, examples, seed=seed, progress=progress)
    matrix_before, matrix_after = size_matrix(num_classes, before), size_matrix(num_classes, after)
    others = [
        (p.norm, q.norm)
        for p, q in zip(before, after, strict=True)
        if (p.victim, p.target) != (victim, target)
    ]
    return {
        "revision": RECORD_REVISION,
        "model": directory.name,
        "poisoned": truth.poisoned,
        "group": "injected" if truth.poisoned else "natural",
        "pair": [victim, target],
        "chosen_by": reason,
        "accuracy_before": result.accuracy_before,
        "accuracy_after": result.accuracy_after,
        "size_before": float(trigger.norm),
        "size_in_matrix_before": matrix_before[target][victim],
        "size_after": matrix_after[target][victim],
        "asr_before": result.unlearned[0]["asr_before"],
        "asr_after": result.unlearned[0]["asr_after"],
        "other_sizes_before": float(np.mean([a for a, _ in others])) if others else None,
        "other_sizes_after": float(np.mean([b for _, b in others])) if others else None,
        "repair": {"stopped": result.stopped, "epochs": result.epochs},
        "matrix_before": matrix_before,
        "matrix_after": matrix_after,
        "seed": seed,
        "seconds": time.perf_counter() - start,
    }


def run_repair_study(
    spec: RepairStudySpec,
    out: str | Path,
    *,
    workers: int = 1,
    progress: bool = False,
    cache_root: str | Path | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the zoo, repair every model (cached per model in ``out/models``) and return the
    study's results: ``records`` per model, ``table`` (Table 8 per group), provenance."""
    out = Path(out)
    start = time.perf_counter()
    zoo = cached_build(spec.zoo, cache_root, workers=workers, progress=progress)
    cache = out / "models"
    cache.mkdir(parents=True, exist_ok=True)
    records = []
    for row in read_metadata(zoo):
        path = cache / f"{row['name']}.json"
        record = _read_record(path)
        if record is not None:
            same = record.get("settings") == spec.to_dict() and record.get("zoo") == zoo.name
            if record.get("revision") == RECORD_REVISION and same:
                records.append({**record, "cached": True})
                continue
        with torch.random.fork_rng(devices=[]):
            record = repair_one(spec, zoo / row["name"], progress=progress)
        record["settings"], record["zoo"] = spec.to_dict(), zoo.name
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        tmp.replace(path)  # a record is whole or absent
        records.append({**record, "cached": False})
    return {
        "study": spec.to_dict(),
        "zoo": str(zoo),
        "records": records,
        "table": table8(records),
        "seconds": time.perf_counter() - start,
        "exray_version": __version__,
        "versions": versions(),
    }


def _read_record(path: Path) -> dict[str, Any] | None:
    """A cached per-model record, or None when absent or unreadable (then the model is recomputed)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def table8(records: list[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Per group (natural, injected): models, mean accuracy and mean repaired-pair trigger size before and
    after (the paper's Table 8), and the mean size of every other pair before and after."""
    table = {}
    for group in ("natural", "injected"):
        rows = [r for r in records if r["group"] == group]
        if not rows:
            continue
        keys = ("accuracy_before", "accuracy_after", "size_before", "size_after")
        keys += ("other_sizes_before", "other_sizes_after")
        table[group] = {"models": len(rows)}
        for key in keys:
            values = [r[key] for r in rows if r[key] is not None]
            table[group][key] = float(np.mean(values)) if values else float("nan")
    return table
