"""Files of an evaluation: ``table.csv``, ``evaluation.json``, ``roc.png`` and ``index.html``.

The HTML page opens without a server: the settings (scanner, calibration, how each method decided), one
table per group like the paper's Table 1, the ROC plot, and every model's decisions per method.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from exray.evaluation.table import CSV_COLUMNS, Row, groups_of
from exray.metrics import MISSING_PROBABILITY

if TYPE_CHECKING:
    from exray.evaluation.result import EvaluationResult

_LINES = ("-", "--", "-.", ":")
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td.l,th.l{text-align:left}.small{font-size:.85em;color:#555}.error{color:#b22}
tr.scanner td{background:#fafafa}
"""


def write_outputs(result: EvaluationResult) -> dict[str, Path]:
    """Write the four files into ``result.out``; returns their paths by kind."""
    out = Path(result.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "csv": write_csv(result.rows, out / "table.csv"),
        "json": out / "evaluation.json",
        "roc": roc_plot(result, out / "roc.png"),
    }
    files["json"].write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    files["html"] = write_html(result, out / "index.html")
    return files


def write_csv(rows: list[Row], path: Path) -> Path:
    """One line per (group, method) with :data:`~exray.evaluation.table.CSV_COLUMNS`."""
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.to_dict().items()})
    return path


def roc_plot(result: EvaluationResult, path: Path) -> Path:
    """ROC curves of every row's P(trojaned), one panel per group with both trojaned and clean models."""
    groups = {
        g: members
        for g, members in groups_of(result.models).items()
        if len({m.truth.poisoned for m in members}) == 2
    }
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(4.2 * max(1, len(groups)), 4.2), squeeze=False)
    for ax, (group, members) in zip(axes[0], groups.items()):
        labels = np.asarray([m.truth.poisoned for m in members])
        rows = [r for r in result.rows if r.group == group and r.counts is not None]
        for k, row in enumerate(rows):
            p = [m.outcomes[row.method].probability for m in members]
            scores = np.asarray([MISSING_PROBABILITY if v is None else v for v in p])
            fpr, tpr, _ = roc_curve(labels, scores)
            style = _LINES[k % len(_LINES)]
            width = 1.0 + 2.0 * (len(rows) - k) / len(rows)  # later rows thinner: overlapping curves show
            ax.plot(fpr, tpr, style, linewidth=width, label=f"{row.title} ({row.roc_auc:.2f})")
        ax.plot([0, 1], [0, 1], color="#bbb", linestyle=":")
        ax.set_title(f"{group} (T {labels.sum()}, C {(~labels).sum()})", fontsize=10)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(fontsize=7, loc="lower right", title="ROC-AUC", title_fontsize=7)
    if not groups:
        axes[0][0].text(0.5, 0.5, "no group has both trojaned and clean models", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _number(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _group_table(rows: list[Row], scanner: str) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("TP", "FP", "FN", "TN", "Acc", "ROC-AUC", "CE", "Brier", "FP reduction", "TP loss")
    )
    lines = [f"<table><tr><th class='l'>method</th>{head}<th class='l'>note</th></tr>"]
    for r in rows:
        c = r.counts
        cells = [
            _number(c and c.tp, "d"),
            _number(c and c.fp, "d"),
            _number(c and c.fn, "d"),
            _number(c and c.tn, "d"),
            _number(r.accuracy, ".3f"),
            _number(r.roc_auc, ".3f"),
            _number(r.cross_entropy, ".3f"),
            _number(r.brier, ".3f"),
            _number(r.fp_reduction, ".0%"),
            _number(r.tp_loss, ".0%"),
        ]
        css = " class='scanner'" if r.method == scanner else ""
        lines.append(
            f"<tr{css}><td class='l'>{html.escape(r.title)}</td>"
            + "".join(f"<td>{v}</td>" for v in cells)
            + f"<td class='l small'>{html.escape(r.note or '')}</td></tr>"
        )
    return "\n".join(lines) + "</table>"


def write_html(result: EvaluationResult, path: Path) -> Path:
    """The evaluation page (settings, tables per group, ROC plot, per-model decisions)."""
    config = result.config
    titles = {r.method: r.title for r in result.rows}
    decided = "".join(
        f"<li>{html.escape(titles.get(name, name))}: {html.escape(info['rule'])} "
        f"<span class='small'>{html.escape(json.dumps(info['thresholds']))}</span></li>"
        for name, info in result.thresholds.items()
    )
    parts = [
        f"<h1>exray evaluate: {html.escape(Path(result.zoo).name)}</h1>",
        f"<p>{len(result.models)} models from <code>{html.escape(result.zoo)}</code>; scanner "
        f"<b>{html.escape(config.scanner.upper())}</b>; seed {config.seed}; layer "
        f"{html.escape(config.layer or 'default (second-to-last conv block)')}; triggers judged when their "
        f"ASR ≥ {config.gate:.3g}.</p>",
        f"<p>{html.escape(result.calibration_note)}</p>",
        f"<ul>{decided}</ul>",
    ]
    for group in result.groups:
        rows = [r for r in result.rows if r.group == group]
        parts.append(f"<h2>{html.escape(group)} (trojaned {rows[0].trojaned}, clean {rows[0].clean})</h2>")
        parts.append(_group_table(rows, config.scanner))
    parts.append("<h2>ROC</h2><img src='roc.png' alt='ROC curves' style='max-width:100%'>")
    row_names = list(config.rows)
    head = "".join(f"<th>{html.escape(titles.get(n, n))}</th>" for n in row_names)
    lines = [f"<h2>Models</h2><table><tr><th class='l'>model</th><th>truth</th><th>triggers</th>{head}</tr>"]
    for m in result.models:
        truth = f"trojaned ({m.truth.group})" if m.truth.poisoned else "clean"
        if m.triggers is None:
            error = html.escape(m.errors.get("scan", "")[:300])
            lines.append(
                f"<tr><td class='l'>{html.escape(m.name)}</td><td>{truth}</td>"
                f"<td class='l error' colspan='{len(row_names) + 1}'>{error}</td></tr>"
            )
            continue
        cells = "".join(
            f"<td>{'flagged' if m.outcomes[n].flagged else '·'} "
            f"<span class='small'>{_number(m.outcomes[n].probability, '.2f')}</span></td>"
            for n in row_names
        )
        lines.append(
            f"<tr><td class='l'>{html.escape(m.name)}</td><td>{truth}</td>"
            f"<td>{len(m.triggers)}</td>{cells}</tr>"
        )
    parts.append("\n".join(lines) + "</table>")
    errors = [
        f"<li>{html.escape(m)} / {html.escape(s)}: {html.escape(e[:300])}</li>"
        for m, stages in result.errors.items()
        for s, e in stages.items()
    ]
    if errors:
        parts.append("<h2>Errors</h2><ul class='error'>" + "".join(errors) + "</ul>")
    page = (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>exray evaluate</title>"
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
    path.write_text(page)
    return path
