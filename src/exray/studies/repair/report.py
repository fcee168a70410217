"""The repair study's outputs: Table 8 next to the paper's (markdown), one row per model (CSV), and the
trigger-size matrices before and after repair as heat-maps (the paper's Tables 21-22 / Figs. 21-22)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from exray.studies.output import write_study_files

STEM = "study-repair"
#: EX-RAY paper Table 8 (CIFAR-10, 5 benign and 5 trojaned models): accuracy and trigger size.
PAPER_TABLE8 = {
    "natural": {"accuracy_before": 0.887, "accuracy_after": 0.859, "size_before": 25.8, "size_after": 60.2},
    "injected": {"accuracy_before": 0.864, "accuracy_after": 0.854, "size_before": 19.0, "size_after": 97.0},
}
CSV_COLUMNS = (
    "model", "group", "pair", "chosen_by", "accuracy_before", "accuracy_after", "size_before", "size_after",
    "asr_before", "asr_after", "other_sizes_before", "other_sizes_after", "repair_stopped", "repair_epochs",
    "seconds",
)  # fmt: skip


def _row(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {k: record.get(k) for k in CSV_COLUMNS}
    row["pair"] = "{} -> {}".format(*record["pair"])
    row["repair_stopped"], row["repair_epochs"] = record["repair"]["stopped"], record["repair"]["epochs"]
    return {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}


def markdown(results: Mapping[str, Any]) -> str:
    lines = [
        f"# Repair study `{results['study']['name']}` (EX-RAY Table 8)",
        "",
        "| group | models | accuracy before | after | trigger size before | after | other pairs before "
        "| after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for group, row in results["table"].items():
        lines.append(
            f"| {group} | {row['models']} | {row['accuracy_before']:.3f} | {row['accuracy_after']:.3f} | "
            f"{row['size_before']:.1f} | {row['size_after']:.1f} | {row['other_sizes_before']:.1f} | "
            f"{row['other_sizes_after']:.1f} |"
        )
    for group, row in PAPER_TABLE8.items():
        lines.append(
            f"| paper: {group} | 5 | {row['accuracy_before']:.3f} | {row['accuracy_after']:.3f} | "
            f"{row['size_before']:.1f} | {row['size_after']:.1f} | – | – |"
        )
    lines += ["", "| model | group | pair | accuracy | trigger size | ASR of the pair's trigger | repair |"]
    lines.append("|---|---|---|---|---|---|---|")
    for r in results["records"]:
        lines.append(
            f"| {r['model']} | {r['group']} | {r['pair'][0]} → {r['pair'][1]} ({r['chosen_by']}) | "
            f"{r['accuracy_before']:.3f} → {r['accuracy_after']:.3f} | {r['size_before']:.1f} → "
            f"{r['size_after']:.1f} | {r['asr_before']:.2f} → {r['asr_after']:.2f} | "
            f"{r['repair']['stopped']}, {r['repair']['epochs']} epochs |"
        )
    return "\n".join(lines) + "\n"


def heatmap(record: Mapping[str, Any], path: Path) -> Path:
    """Trigger sizes before and after repair (columns: victim, rows: target), the repaired pair boxed."""
    before = np.array(record["matrix_before"], dtype=float)
    after = np.array(record["matrix_after"], dtype=float)
    top = np.nanmax(np.concatenate([before.ravel(), after.ravel()]))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    victim, target = record["pair"]
    for ax, matrix, title in ((axes[0], before, "before repair"), (axes[1], after, "after repair")):
        image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=top)
        ax.set_title(f"{record['model']} ({record['group']}): {title}")
        ax.set_xlabel("victim class")
        ax.set_ylabel("target class")
        ax.add_patch(plt.Rectangle((victim - 0.5, target - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
        for (t, v), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                ax.text(v, t, f"{value:.0f}", ha="center", va="center", color="white", fontsize=7)
    fig.colorbar(image, ax=axes, label="trigger size (mask L1, pixels)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(results: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the markdown table, the CSV, the JSON results and a heat-map per model into ``out``."""
    rows = [_row(r) for r in results["records"]]
    paths = write_study_files(out, STEM, markdown(results), rows, CSV_COLUMNS, results)
    for record in results["records"]:
        paths[f"heatmap:{record['model']}"] = heatmap(record, Path(out) / f"sizes-{record['model']}.png")
    return paths
