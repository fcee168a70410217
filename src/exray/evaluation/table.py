"""The comparison table: one row per (group, method), as the paper's Table 1 (EXP §4.1) with the TrojAI
metrics (spec §7.1).

A group is the trojaned models of one ground-truth trigger type together with *all* clean models ("the
accuracy is computed considering the same 552 clean models"); the ``all`` group is the whole population.
Each row has TP/FP/FN/TN of the model-level decisions, accuracy, the exact ROC-AUC (and the NIST
harness's 101-threshold one), the mean clipped cross-entropy, the Brier score, and the FP reduction and
TP loss relative to the scanner alone. A method that does not apply to the group's injected trigger kind
(Network Dissection on filters) gets an empty row, as the paper's blank cells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from exray.evaluation.truth import ALL, group_order
from exray.metrics import (
    ConfusionCounts,
    binary_confusion,
    brier_score,
    cross_entropy,
    fp_reduction,
    roc_auc,
    roc_auc_nist,
    tp_loss,
)
from exray.refinement import RefinementMethod

if TYPE_CHECKING:
    from exray.evaluation.config import EvaluationConfig
    from exray.evaluation.outcome import ModelEvaluation

CSV_COLUMNS = (
    "group",
    "method",
    "title",
    "trojaned",
    "clean",
    "tp",
    "fp",
    "fn",
    "tn",
    "accuracy",
    "roc_auc",
    "roc_auc_nist",
    "cross_entropy",
    "brier",
    "fp_reduction",
    "tp_loss",
    "note",
)


@dataclass(frozen=True)
class Row:
    """One method on one group. ``counts`` is ``None`` when the method does not apply (see ``note``);
    ``fp_reduction``/``tp_loss`` are ``None`` for the scanner's own row; ROC-AUC is ``None`` for a group
    without both trojaned and clean models."""

    group: str
    method: str
    title: str
    trojaned: int
    clean: int
    counts: ConfusionCounts | None
    roc_auc: float | None = None
    roc_auc_nist: float | None = None
    cross_entropy: float | None = None
    brier: float | None = None
    fp_reduction: float | None = None
    tp_loss: float | None = None
    note: str | None = None

    @property
    def accuracy(self) -> float | None:
        return None if self.counts is None else self.counts.accuracy

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "group": self.group,
            "method": self.method,
            "title": self.title,
            "trojaned": self.trojaned,
            "clean": self.clean,
            "tp": None if counts is None else counts.tp,
            "fp": None if counts is None else counts.fp,
            "fn": None if counts is None else counts.fn,
            "tn": None if counts is None else counts.tn,
            "accuracy": self.accuracy,
            "roc_auc": self.roc_auc,
            "roc_auc_nist": self.roc_auc_nist,
            "cross_entropy": self.cross_entropy,
            "brier": self.brier,
            "fp_reduction": self.fp_reduction,
            "tp_loss": self.tp_loss,
            "note": self.note,
        }


def groups_of(evaluations: Sequence[ModelEvaluation]) -> dict[str, list[ModelEvaluation]]:
    """{group: its models}: each trojaned group with all clean models, then ``all``."""
    trojaned = [e.truth.group for e in evaluations if e.truth.poisoned]
    clean = [e for e in evaluations if not e.truth.poisoned]
    groups = {g: [e for e in evaluations if e.truth.group == g] + clean for g in group_order(trojaned)}
    groups[ALL] = list(evaluations)
    return groups


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def build_rows(
    evaluations: Sequence[ModelEvaluation],
    config: EvaluationConfig,
    methods: Mapping[str, RefinementMethod],
) -> list[Row]:
    """Every (group, row) of the table, groups in table order, the scanner's row first in each."""
    rows = []
    for group, members in groups_of(evaluations).items():
        labels = [e.truth.poisoned for e in members]
        kinds = frozenset().union(*(e.truth.kinds for e in members))
        both = any(labels) and not all(labels)
        base = [e.outcomes[config.scanner].flagged for e in members]
        for name in config.rows:
            method = methods.get(name)
            title = config.scanner.upper() if method is None else method.title
            size = {"trojaned": sum(labels), "clean": len(labels) - sum(labels)}
            if method is not None and not kinds <= method.kinds:
                missing = ", ".join(sorted(kinds - method.kinds))
                rows.append(
                    Row(group, name, title, **size, counts=None, note=f"not applicable to {missing} triggers")
                )
                continue
            flags = [e.outcomes[name].flagged for e in members]
            probabilities = [e.outcomes[name].probability for e in members]
            rows.append(
                Row(
                    group,
                    name,
                    title,
                    **size,
                    counts=binary_confusion(flags, labels),
                    roc_auc=roc_auc(probabilities, labels) if both else None,
                    roc_auc_nist=roc_auc_nist(probabilities, labels) if both else None,
                    cross_entropy=cross_entropy(probabilities, labels),
                    brier=brier_score(probabilities, labels),
                    fp_reduction=None if method is None else _finite(fp_reduction(base, flags, labels)),
                    tp_loss=None if method is None else _finite(tp_loss(base, flags, labels)),
                )
            )
    return rows


def _cell(value: float | int | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as text, one block per group (the paper's Table 1 layout, transposed)."""
    header = (
        f"{'method':<16}{'TP':>5}{'FP':>5}{'FN':>5}{'TN':>5}{'Acc':>7}{'ROC-AUC':>9}{'CE':>7}"
        f"{'FP red.':>9}{'TP loss':>9}"
    )
    blocks = []
    for group in dict.fromkeys(r.group for r in rows):
        members = [r for r in rows if r.group == group]
        lines = [f"{group}  (trojaned {members[0].trojaned}, clean {members[0].clean})", header]
        for r in members:
            c = r.counts
            line = (
                f"{r.title:<16}{_cell(c and c.tp, 'd'):>5}{_cell(c and c.fp, 'd'):>5}"
                f"{_cell(c and c.fn, 'd'):>5}{_cell(c and c.tn, 'd'):>5}{_cell(r.accuracy, '.3f'):>7}"
                f"{_cell(r.roc_auc, '.3f'):>9}{_cell(r.cross_entropy, '.3f'):>7}"
                f"{_cell(r.fp_reduction, '.0%'):>9}{_cell(r.tp_loss, '.0%'):>9}"
            )
            lines.append(line + (f"  ({r.note})" if r.note else ""))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
