"""Running the semantic study (issue 19 §2): build the zoo and the procedure-trained attacks' models, gather
them into one population, evaluate ABS and ABS + EX-RAY per attack group and write the table next to the
paper's numbers."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from exray.evaluation import evaluate_zoo
from exray.evaluation.truth import read_truth
from exray.files import read_json
from exray.studies.output import write_study_files
from exray.studies.semantic.spec import SemanticStudySpec
from exray.studies.semantic.trained import TRAIN_THREADS, TRAINING_ORDER, trained_model_job
from exray.utils import run_pooled, versions
from exray.zoo import cached_build, read_metadata

STEM = "study-semantic"
#: The paper's numbers per attack (ABS alone → ABS + EX-RAY accuracy; EX-RAY paper Tables 4-6, the CVPR
#: appendix).
PAPER = {
    "composite": "Table 4 (CIFAR-10, 600 px bound): ABS 0.20 → ABS + EX-RAY 0.84",
    "reflection": "Table 5 (CIFAR-10): ABS 0.65 → ABS + EX-RAY 0.85",
    "hidden": "Table 6 (ImageNet, 4,000 px bound): ABS 0.30 → ABS + EX-RAY 0.82",
    "warp": "CVPR appendix (WaNet, CIFAR-10): ABS + EX-RAY 0.825",
    "input_aware": "CVPR appendix (input-aware, CIFAR-10): ABS + EX-RAY 0.875",
}
PAPER["wanet"] = PAPER["warp"]  # the same attack, trained by its own recipe


def build_population(
    spec: SemanticStudySpec,
    out: Path,
    *,
    workers: int,
    progress: bool,
    cache_root: str | Path | None,
    seconds: dict[str, float] | None = None,
) -> tuple[Path, dict[str, str]]:
    """``out/population``: links to the zoo's models that passed their quality bar and to the trained attacks'
    models that passed theirs (built into ``out/trained`` by ``workers`` processes, cached), and the trained
    models that failed, with the reason (the study goes on without them). ``seconds`` receives the wall
    time of the zoo (``zoo``) and of the trained attacks (``trained_attacks``)."""
    failures: dict[str, str] = {}
    seconds = {} if seconds is None else seconds
    start = time.perf_counter()
    zoo = cached_build(spec.zoo, cache_root, workers=workers, progress=progress, allow_failed=True)
    seconds["zoo"] = time.perf_counter() - start
    for row in read_metadata(zoo):
        if row.get("status", "ok") != "ok":
            failures[row["name"]] = (
                f"{row.get('trigger_type') or 'clean'} model below the quality bar ({row.get('status')}: "
                f"clean accuracy {row.get('clean_accuracy')}, ASR {row.get('attack_success_rate') or '–'})"
            )
    members = {
        row["name"]: zoo / row["name"] for row in read_metadata(zoo) if row.get("status", "ok") == "ok"
    }
    costliest_first = sorted(spec.attacks, key=lambda a: TRAINING_ORDER.index(a.attack))
    jobs = [(attack, index) for attack in costliest_first for index in range(attack.models)]
    tasks = [(spec.zoo, attack, index, out / "trained") for attack, index in jobs]
    pool = min(workers, max(len(jobs), 1))
    start = time.perf_counter()
    with tqdm(total=len(jobs), desc="trained attacks", unit="model", disable=not progress or not jobs) as bar:
        for i, config, died in run_pooled(trained_model_job, tasks, pool, TRAIN_THREADS):
            attack, index = jobs[i]
            error = died or (config or {}).get("error")
            if error:
                failures[attack.name(index)] = error
            elif config["quality"]["passed"]:
                members[attack.name(index)] = out / "trained" / attack.name(index)
            bar.update()
    seconds["trained_attacks"] = time.perf_counter() - start
    population = out / "population"
    if population.exists():
        shutil.rmtree(population)
    population.mkdir(parents=True)
    for name, path in members.items():
        os.symlink(path.resolve(), population / name, target_is_directory=True)
    return population, failures


def _population_rows(spec: SemanticStudySpec, population: Path) -> list[dict[str, Any]]:
    """Per trojaned group: models built, passed, their mean clean accuracy and ASR."""
    models, _ = read_truth(population)
    rows = []
    groups = sorted({m.group for m in models if m.group is not None})
    for group in groups:
        configs = [read_json(m.path / "config.json", "config.json") for m in models if m.group == group]
        rows.append(
            {
                "attack": group,
                "models": len(configs),
                "clean_accuracy": sum(c["clean_accuracy"] for c in configs) / len(configs),
                "attack_success_rate": sum(c["attack_success_rate"] for c in configs) / len(configs),
            }
        )
    built = {a.attack: a.models for a in spec.attacks}
    for row in rows:
        row["built"] = built.get(row["attack"])
    return rows


#: Intra-op threads of each model's scan and masks: one, so that the study's numbers do not depend on
#: ``workers`` (as every model trains on one); the cores go to worker processes.
EVALUATION_THREADS = 1


def run_semantic_study(
    spec: SemanticStudySpec,
    out: str | Path,
    *,
    workers: int = 1,
    progress: bool = False,
    cache_root: str | Path | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the population, evaluate ABS and ABS + EX-RAY per attack group (an attack with its own
    ABS options in its own evaluation, against the same clean models), write the study table and the wall
    time of each stage of this run (work reused from a cache counts only its reading). ``workers`` models
    train and are evaluated at once; each evaluated model runs on ``threads`` intra-op threads (default
    :data:`EVALUATION_THREADS`)."""
    threads = EVALUATION_THREADS if threads is None else threads
    out, start, seconds = Path(out), time.perf_counter(), {}
    population, failures = build_population(
        spec, out, workers=workers, progress=progress, cache_root=cache_root, seconds=seconds
    )
    stage = time.perf_counter()
    models, _ = read_truth(population)
    present = sorted({m.group for m in models if m.group is not None})
    separate = [a for a in spec.attacks if a.scanner_options and a.attack in present]
    shared = tuple(g for g in present if g not in {a.attack for a in separate})
    results, files = [], {}
    pool = {"progress": progress, "workers": workers, "threads": threads}
    if shared:
        config = spec.evaluation(shared if separate else None)
        results.append(evaluate_zoo(population, out / "evaluation", config=config, **pool))
        files.update(results[-1].files)
        seconds["evaluation"] = time.perf_counter() - stage
    for attack in separate:
        stage = time.perf_counter()
        config = spec.evaluation((attack.attack,), **attack.scanner_options)
        result = evaluate_zoo(population, out / f"evaluation-{attack.attack}", config=config, **pool)
        result.rows = [row for row in result.rows if row.group == attack.attack]
        results.append(result)
        files.update({f"{attack.attack}-{key}": path for key, path in result.files.items()})
        seconds[f"evaluation-{attack.attack}"] = time.perf_counter() - stage
    rows = []
    for result in results:
        abs_options = {**spec.scan.scanner_options, **result.config.scanner_options}
        for row in result.rows:
            group = row.group
            if group == "all" and separate:  # the shared evaluation's "all" leaves the separate groups out
                group = f"all but {', '.join(a.attack for a in separate)}"
            rows.append(
                {
                    "attack": group,
                    "method": row.title,
                    "trojaned": row.trojaned,
                    "clean": row.clean,
                    "tp": row.counts.tp if row.counts else None,
                    "fp": row.counts.fp if row.counts else None,
                    "accuracy": row.accuracy,
                    "roc_auc": row.roc_auc,
                    "abs_max_size_fraction": abs_options.get("max_size_fraction"),
                    "paper": PAPER.get(row.group, ""),
                }
            )
    trojans = _population_rows(spec, population)
    seconds["total"] = time.perf_counter() - start
    record = {
        "seconds": seconds,
        "workers": workers,
        "threads": torch.get_num_threads(),
        "evaluation_threads": threads,
        "mask_precision": results[0].config.mask_config.precision if results else None,  # what ran
        "versions": versions(),
    }
    markdown = _markdown(spec, rows, trojans, failures, seconds)
    written = write_study_files(out, STEM, markdown, rows, list(rows[0]), results=record)
    return {
        "rows": rows,
        "trojans": trojans,
        "population": str(population),
        "failed": failures,
        "files": {**written, **files},
        "seconds": seconds["total"],
        "stage_seconds": seconds,
    }


def _markdown(
    spec: SemanticStudySpec,
    rows: list[dict[str, Any]],
    trojans: list[dict[str, Any]],
    failures: dict[str, str],
    seconds: dict[str, float],
) -> str:
    header = "| attack | method | trojaned | clean | TP | FP | accuracy | ABS size bound | paper |"
    lines = [f"# Semantic-backdoor study `{spec.name}`", "", header, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        accuracy = "–" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        bound = "–" if r["abs_max_size_fraction"] is None else f"{r['abs_max_size_fraction']:g}"
        lines.append(
            f"| {r['attack']} | {r['method']} | {r['trojaned']} | {r['clean']} | {r['tp']} | {r['fp']} | "
            f"{accuracy} | {bound} | {r['paper']} |"
        )
    lines += ["", "Trojaned models that passed their quality bar (in the population):", ""]
    lines += ["| attack | models (of trained) | mean clean accuracy | mean ASR |", "|---|---|---|---|"]
    for t in trojans:
        of = "" if t["built"] is None else f" (of {t['built']})"
        lines.append(
            f"| {t['attack']} | {t['models']}{of} | {t['clean_accuracy']:.3f} | "
            f"{t['attack_success_rate']:.3f} |"
        )
    if failures:
        lines += ["", "Models left out (below their quality bar, or failed):", ""]
        lines += [f"- {name}: {reason}" for name, reason in sorted(failures.items())]
    stages = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    lines += ["", f"Wall time of this run (work reused from a cache counts only its reading): {stages}."]
    return "\n".join(lines) + "\n"
