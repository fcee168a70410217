"""The adaptive study's outputs: Table 7 next to the paper's (markdown), its CSV, the JSON results."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exray.studies.output import write_study_files

STEM = "study-adaptive"
#: EX-RAY paper Table 7 (NiN on CIFAR-10, one trojaned model per weight, 20 clean models).
PAPER_TABLE7 = {
    1: {"clean_accuracy": 0.89, "attack_success_rate": 0.99, "fp": 0.0, "tp": 1.0},
    10: {"clean_accuracy": 0.88, "attack_success_rate": 0.99, "fp": 0.2, "tp": 1.0},
    100: {"clean_accuracy": 0.87, "attack_success_rate": 0.99, "fp": 0.2, "tp": 1.0},
    1000: {"clean_accuracy": 0.82, "attack_success_rate": 0.97, "fp": 0.65, "tp": 1.0},
    10000: {"clean_accuracy": 0.1, "attack_success_rate": None, "fp": None, "tp": None},
}
COLUMNS = (
    "weight", "models", "clean_accuracy", "attack_success_rate", "tp_rate", "fp_rate", "abs_tp_rate",
    "abs_fp_rate", "paper_fp_rate",
)  # fmt: skip


def _fmt(value: Any) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def markdown(results: Mapping[str, Any]) -> str:
    lines = [
        f"# Adaptive-attack study `{results['study']['name']}` (EX-RAY Table 7)",
        "",
        f"{len(results['clean'])} clean models; per weight, the trojaned models trained with the adaptive "
        "loss. TP / FP: flagged by ABS + EX-RAY at the calibration's cut-off; FP at weakest trojan: the "
        "paper's reading (clean models scoring at least the weakest trojan's score).",
        "",
        "| weight | acc | ASR | TP | FP | ABS TP | ABS FP | FP at weakest trojan "
        "| paper: acc | ASR | FP | TP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["table"]:
        paper = PAPER_TABLE7.get(int(row["weight"]), {})
        cells = [row[k] for k in COLUMNS if k != "models"]
        cells += [paper.get(k) for k in ("clean_accuracy", "attack_success_rate", "fp", "tp")]
        lines.append("| " + " | ".join(_fmt(c) if i else f"{c:g}" for i, c in enumerate(cells)) + " |")
    return "\n".join(lines) + "\n"


def write_report(results: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the markdown table, the CSV and the JSON results into ``out``."""
    return write_study_files(out, STEM, markdown(results), results["table"], COLUMNS, results)
