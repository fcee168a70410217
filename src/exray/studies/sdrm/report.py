"""The SDRM study's outputs (issue 6): the paper-style table of detector F1 for regularly trained (RBT)
vs SDRM models, as Markdown, CSV and JSON, and a per-level distance plot (PNG, matplotlib's Agg canvas —
no display, no global backend change).

Files written into the study directory: ``sdrm-table.md``, ``sdrm-table.csv`` (one row per run and
variant, every number), ``sdrm-results.json`` (written by the runner: spec, records, versions) and
``sdrm-distances.png``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from exray.studies.sdrm.measure import METRICS, PENULTIMATE

TABLE_MD = "sdrm-table.md"
TABLE_CSV = "sdrm-table.csv"
DISTANCE_PLOT = "sdrm-distances.png"

#: (scope, detector, column title) of the detector columns, in table order.
DETECTOR_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("target", "activation_clustering", "AC"),
    ("target", "spectral_signatures", "SS"),
    ("all", "scan", "SCAn"),
    ("all", "activation_clustering", "AC (all)"),
    ("all", "spectral_signatures", "SS (all)"),
)
_METRIC_TITLES = {"mmd": "MMD²", "energy": "energy distance", "swd": "sliced Wasserstein-2"}


def _pairs(records: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(RBT, SDRM) record pairs of every run, in run order."""
    by_run: dict[tuple[str, str, str], dict[str, Mapping[str, Any]]] = {}
    for r in records:
        by_run.setdefault((r["data"], r["architecture"], r["attack"]), {})[r["variant"]] = r
    return [(v["rbt"], v["sdrm"]) for v in by_run.values() if "rbt" in v and "sdrm" in v]


def _level_names(records: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for r in records:
        for level in r["distances"]:
            if level not in names and level != PENULTIMATE:
                names.append(level)
    return [*sorted(names, key=lambda n: int(n[1:])), PENULTIMATE]


def _f1(record: Mapping[str, Any], scope: str, detector: str) -> float:
    return float(record["detectors"][scope][detector]["f1"])


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(records: Sequence[Mapping[str, Any]]) -> str:
    """The paper-style table: per run, clean accuracy, ASR and detector F1 as ``RBT → SDRM``, the last
    level's MMD², and a mean row; then the per-level distances averaged over the runs."""
    pairs = _pairs(records)
    last = _level_names(records)[-2]  # the last stage output (the penultimate representation follows)
    head = ["data", "architecture", "attack", "clean acc", "ASR"]
    head += [f"{title} F1" for _, _, title in DETECTOR_COLUMNS] + [f"MMD² {last}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(cells: list[str]) -> None:
        lines.append("| " + " | ".join(cells) + " |")

    def arrow(a: float | None, b: float | None, digits: int = 2) -> str:
        return f"{_fmt(a, digits)} → {_fmt(b, digits)}"

    for rbt, sdrm in pairs:
        cells = [rbt["data"], rbt["architecture"], rbt["attack"]]
        cells += [arrow(rbt["clean_accuracy"], sdrm["clean_accuracy"], 3)]
        cells += [arrow(rbt["attack_success_rate"], sdrm["attack_success_rate"], 3)]
        cells += [arrow(_f1(rbt, s, d), _f1(sdrm, s, d)) for s, d, _ in DETECTOR_COLUMNS]
        cells += [arrow(rbt["distances"][last]["mmd"], sdrm["distances"][last]["mmd"], 3)]
        row(cells)
    if len(pairs) > 1:

        def mean(values: list[float | None]) -> float | None:
            present = [v for v in values if v is not None]
            return float(np.mean(present)) if present else None

        cells = ["**mean**", "", ""]
        for key, digits in (("clean_accuracy", 3), ("attack_success_rate", 3)):
            cells.append(arrow(mean([p[0][key] for p in pairs]), mean([p[1][key] for p in pairs]), digits))
        for s, d, _ in DETECTOR_COLUMNS:
            cells.append(
                arrow(mean([_f1(p[0], s, d) for p in pairs]), mean([_f1(p[1], s, d) for p in pairs]))
            )
        cells.append(
            arrow(
                mean([p[0]["distances"][last]["mmd"] for p in pairs]),
                mean([p[1]["distances"][last]["mmd"] for p in pairs]),
                3,
            )
        )
        row(cells)

    lines += [
        "",
        "Per-level distances between clean target-class and poisoned test representations "
        "(mean over runs, RBT → SDRM):",
        "",
    ]
    head = ["level"] + [_METRIC_TITLES[m] for m in METRICS]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for level in _level_names(records):
        cells = [level]
        for metric in METRICS:
            a = [p[0]["distances"][level][metric] for p in pairs if level in p[0]["distances"]]
            b = [p[1]["distances"][level][metric] for p in pairs if level in p[1]["distances"]]
            cells.append(arrow(float(np.mean(a)) if a else None, float(np.mean(b)) if b else None, 3))
        row(cells)
    return "\n".join(lines) + "\n"


def csv_table(records: Sequence[Mapping[str, Any]]) -> str:
    """One row per run and variant with every measured number (long format)."""
    levels = _level_names(records)
    fields = ["data", "architecture", "attack", "variant", "seed", "clean_accuracy", "attack_success_rate"]
    fields += ["train_seconds", "train_samples", "poisoned_samples", "target_class_samples"]
    for scope, detector, _ in DETECTOR_COLUMNS:
        fields += [f"{detector}_{scope}_{m}" for m in ("f1", "precision", "recall", "flagged")]
    fields += [f"{metric}_{level}" for level in levels for metric in METRICS]
    fields += [f"module_{level}" for level in levels if level != PENULTIMATE]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in records:
        row: dict[str, Any] = {k: r[k] for k in fields[:8]}
        row |= {
            "train_samples": r["counts"]["train"],
            "poisoned_samples": r["counts"]["poisoned"],
            "target_class_samples": r["counts"]["target_class"],
        }
        for scope, detector, _ in DETECTOR_COLUMNS:
            for m in ("f1", "precision", "recall", "flagged"):
                row[f"{detector}_{scope}_{m}"] = r["detectors"][scope][detector][m]
        for level in levels:
            for metric in METRICS:
                row[f"{metric}_{level}"] = r["distances"].get(level, {}).get(metric)
        for level in r["levels"]:
            row[f"module_{level['name']}"] = level["module"]
        writer.writerow(row)
    return buffer.getvalue()


def distance_plot(records: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Three panels (MMD², energy, sliced Wasserstein), x = level; bars are the mean over runs for RBT and
    SDRM, dots the individual runs; log scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pairs = _pairs(records)
    levels = _level_names(records)
    fig = Figure(figsize=(4.0 * len(METRICS), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    x = np.arange(len(levels))
    for i, metric in enumerate(METRICS):
        ax = fig.add_subplot(1, len(METRICS), i + 1)
        for j, (variant, color) in enumerate((("RBT", "tab:red"), ("SDRM", "tab:blue"))):
            values = [
                [p[j]["distances"][lv][metric] for p in pairs if lv in p[j]["distances"]] for lv in levels
            ]
            means = [float(np.mean(v)) if v else np.nan for v in values]
            offset = (j - 0.5) * 0.38
            ax.bar(x + offset, means, width=0.36, color=color, alpha=0.55, label=variant)
            for k, v in enumerate(values):
                ax.scatter(np.full(len(v), x[k] + offset), v, s=9, color=color, zorder=3)
        ax.set_xticks(x, levels)
        ax.set_yscale("log")
        ax.set_title(_METRIC_TITLES[metric])
        ax.set_xlabel("level")
        if i == 0:
            ax.set_ylabel("clean target vs poisoned (test)")
            ax.legend()
    fig.suptitle(f"Per-level distances, {len(pairs)} run(s): bars = mean, dots = runs")
    fig.savefig(path, dpi=120)


def write_report(results: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the Markdown and CSV tables and the distance plot of ``results`` (from the runner)."""
    out = Path(out)
    records = results["records"]
    spec = results["spec"]
    header = (
        f"# SDRM study `{spec['name']}`\n\n"
        f"Detector F1 (and clean accuracy, ASR, MMD²) of regularly trained backdoored models → the same "
        f"models trained with SDRM (λ = {spec['sdrm']['weight']}, mode {spec['sdrm']['mode']}). "
        "AC/SS: the detector inspects the target class; SCAn and “(all)”: the detector inspects every "
        "class and decides which are poisoned. F1 over the whole poisoned training set.\n\n"
    )
    paths = {"markdown": out / TABLE_MD, "csv": out / TABLE_CSV, "plot": out / DISTANCE_PLOT}
    paths["markdown"].write_text(header + markdown_table(records))
    paths["csv"].write_text(csv_table(records))
    distance_plot(records, paths["plot"])
    return paths
