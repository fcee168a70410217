"""Verdicts: is a trigger natural (made of the features that separate V from T) or injected?

Paper §3.2, spec §4.2 and §4.5. For a trigger t that flips victim class V to target T:

* M1 = symmetric mask between clean V and clean T images (the natural V/T differences);
* M2 = symmetric mask between V images and the same images stamped with t (the trigger's features);
* overlaps I1 = Σmin(M1,M2)/ΣM1 and I2 = Σmin(M1,M2)/ΣM2, and four cross-check accuracies that swap
  M1 onto the V/V+t pair and M2 onto the V/T pair;
* a decision policy turns them into natural / injected.

This module holds the :class:`Verdict` and the decision (:func:`overlaps`, :func:`decide`); the masks are
computed by :mod:`exray.differencing.compare`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from exray.differencing.policies import Policy


@dataclass
class Verdict:
    """EX-RAY's judgement of one trigger (design §2).

    ``natural``: the trigger consists of V/T-distinguishing features. ``m1``/``m2``: per-channel masks in
    [0, 1]. ``overlap`` = (I1, I2). ``cross_accuracy``: the four cross-check accuracies (see
    :mod:`exray.differencing.policies`). ``reasons``: the policy rules that fired. ``trigger_success``:
    fraction of stamped victim images classified as the target. ``derived_target``: the target re-derived
    from the stamped predictions (−1: the trigger flips nothing). ``coverage`` = (|M1|/C, |M2|/C), each
    mask's share of the layer's C channels: an M1 that covers most of the layer contains any M2, whatever
    the trigger (the layer is too entangled for EX-RAY's premise). ``degenerate`` = (M1, M2): no feasible
    mask smaller than the initial all-ones one was found; a degenerate mask never by itself makes a
    trigger natural (``notes`` says when it would have).
    """

    natural: bool
    victim_label: int
    target_label: int
    derived_target: int
    kind: str
    m1: torch.Tensor
    m2: torch.Tensor
    overlap: tuple[float, float]
    cross_accuracy: dict[str, float]
    policy: str
    reasons: list[str]
    sides: str
    trigger_success: float
    m1_flip_accuracy: tuple[float, float]
    m2_flip_accuracy: tuple[float, float]
    m1_feasible: bool
    m2_feasible: bool
    epochs_run: tuple[int, int]
    layer: str
    seed: int
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    coverage: tuple[float, float] = (0.0, 0.0)
    degenerate: tuple[bool, bool] = (False, False)

    @property
    def injected(self) -> bool:
        return not self.natural

    @property
    def entangled(self) -> bool:
        """M1 covers more than :data:`ENTANGLED_COVERAGE` of the layer: the layer is too entangled for
        EX-RAY's premise, and a natural verdict here says little (beyond the paper)."""
        return self.coverage[0] > ENTANGLED_COVERAGE

    @property
    def m1_size(self) -> float:
        return float(self.m1.sum())

    @property
    def m2_size(self) -> float:
        return float(self.m2.sum())

    def under(self, policy: Policy) -> Verdict:
        """This verdict as ``policy`` decides it from the same masks and cross-check accuracies (they do not
        depend on the policy): the decision of :func:`compare_triggers`, which calls this. A verdict read
        back from JSON holds masks rounded to 6 decimals: re-decided, it can differ from a fresh one only
        where a mask value or an overlap lies within about 1e-6 of a cut-off (none of the 1,204 verdicts
        stored by the evaluations of 2026-11/12 did)."""
        i1, i2 = overlaps(self.m1, self.m2, getattr(policy, "binarize", None))
        natural, reasons, set_aside = decide(policy, self.m1, self.m2, self.cross_accuracy, self.degenerate)
        notes = [n for n in self.notes if not n.startswith(SET_ASIDE_NOTE)]
        if set_aside:
            notes.append(f"{SET_ASIDE_NOTE}: {set_aside}")
        return replace(
            self, natural=natural, reasons=reasons, overlap=(i1, i2), policy=policy.name, notes=notes
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (masks as lists of floats)."""
        data = asdict(self)
        data["m1"] = [round(float(v), 6) for v in self.m1]
        data["m2"] = [round(float(v), 6) for v in self.m2]
        data["overlap"] = list(self.overlap)
        data["m1_flip_accuracy"] = list(self.m1_flip_accuracy)
        data["m2_flip_accuracy"] = list(self.m2_flip_accuracy)
        data["epochs_run"] = list(self.epochs_run)
        data["coverage"] = list(self.coverage)
        data["degenerate"] = list(self.degenerate)
        data["entangled"] = self.entangled
        return data

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        data = dict(data)
        data.pop("entangled", None)  # derived from coverage
        data["m1"] = torch.tensor(data["m1"], dtype=torch.float32)
        data["m2"] = torch.tensor(data["m2"], dtype=torch.float32)
        for key in (
            "overlap",
            "m1_flip_accuracy",
            "m2_flip_accuracy",
            "epochs_run",
            "coverage",
            "degenerate",
        ):
            if key in data:  # coverage and degenerate are missing from records of exray < 0.x
                data[key] = tuple(data[key])
        return cls(**data)

    def summary(self) -> str:
        """One line for terminals and logs."""
        word = "NATURAL" if self.natural else "INJECTED"
        i1, i2 = self.overlap
        why = "; ".join(self.reasons) if self.reasons else "no natural-trigger rule fired"
        return (
            f"{word}: {self.kind} trigger {self.victim_label}→{self.target_label} "
            f"(success {self.trigger_success:.2f}) |M1|={self.m1_size:.1f} |M2|={self.m2_size:.1f} "
            f"I1={i1:.2f} I2={i2:.2f} — {why}; {coverage_text(self)}"
        )


def coverage_text(verdict: Verdict) -> str:
    """Each mask's share of the layer, with a warning for degenerate masks: "M1 covers 31 % of 64
    channels, M2 4 %"."""
    parts = []
    for name, share, degenerate in zip(("M1", "M2"), verdict.coverage, verdict.degenerate):
        parts.append(f"{name} {share:.0%}" + (" (degenerate)" if degenerate else ""))
    text = f"{parts[0]} and {parts[1]} of {verdict.m1.numel()} channels"
    if verdict.entangled:
        text += " — the layer is too entangled for EX-RAY to judge (M1 covers most of it)"
    return text


#: The note of a verdict kept injected because its natural-trigger rules fired only through a degenerate mask.
SET_ASIDE_NOTE = "kept: the natural-trigger rules fired only through a degenerate mask"

#: M1 covering more than this share of the layer's channels: the layer is too entangled for EX-RAY's
#: premise (M1 then contains any trigger's M2), so a *natural* verdict there says little.
ENTANGLED_COVERAGE = 0.5


def overlaps(m1: torch.Tensor, m2: torch.Tensor, binarize: float | None = None) -> tuple[float, float]:
    """(I1, I2) = (Σmin(M1,M2)/ΣM1, Σmin(M1,M2)/ΣM2), spec §4.5.

    With ``binarize``, the overlaps of the binarised masks B = {channels with mask > binarize}:
    (|B1∩B2|/|B1|, |B1∩B2|/|B2|), an empty B giving 1 (the TrojAI round-2 submission's form).
    """
    if binarize is not None:
        b1, b2 = m1 > binarize, m2 > binarize
        inter, n1, n2 = int((b1 & b2).sum()), int(b1.sum()), int(b2.sum())
        return (inter / n1 if n1 else 1.0, inter / n2 if n2 else 1.0)
    inter = torch.minimum(m1, m2).sum()
    return float(inter / m1.sum().clamp(min=1e-12)), float(inter / m2.sum().clamp(min=1e-12))


def decide(
    policy: Policy,
    m1: torch.Tensor,
    m2: torch.Tensor,
    accuracy: dict[str, float],
    degenerate: tuple[bool, bool] = (False, False),
) -> tuple[bool, list[str], str]:
    """``policy``'s verdict on masks ``m1``/``m2`` and the cross-check ``accuracy``: (natural, rules that
    fired, and — when a natural verdict came only through a degenerate mask and was therefore reversed —
    the rules that had fired, else ""). :meth:`Verdict.under` applies it (for :func:`compare_triggers`, and
    to re-decide a stored verdict under another policy).

    An all-ones mask contains any other: the terms it makes true by construction are set aside and the
    policy decides on the rest, so a degenerate mask is never by itself the reason for a natural verdict
    (issue 16 §1c)."""
    i1, i2 = overlaps(m1, m2, getattr(policy, "binarize", None))
    natural, reasons = policy.decide(i1, i2, accuracy)
    if not (natural and any(degenerate)):
        return natural, reasons, ""
    fired = "; ".join(reasons)
    natural, reasons = policy.decide(*_set_aside_degenerate(i1, i2, accuracy, degenerate))
    return natural, reasons, "" if natural else fired


def _set_aside_degenerate(
    i1: float, i2: float, accuracy: dict[str, float], degenerate: tuple[bool, bool]
) -> tuple[float, float, dict[str, float]]:
    """The policy inputs with the terms a degenerate mask makes true by construction zeroed: an all-ones
    M1 contains M2 (I2 ≈ 1) and, swapped onto V/V+t, flips it both ways (acc2_*); an all-ones M2 likewise
    gives I1 ≈ 1 and acc1_*."""
    accuracy = dict(accuracy)
    if degenerate[0]:
        i2, accuracy["acc2_1"], accuracy["acc2_2"] = 0.0, 0.0, 0.0
    if degenerate[1]:
        i1, accuracy["acc1_1"], accuracy["acc1_2"] = 0.0, 0.0, 0.0
    return i1, i2, accuracy
