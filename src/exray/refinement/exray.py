"""EX-RAY and its one-sided variants as refinement methods (paper §3; baselines 7 and 8 of Table 1).

All three run :func:`exray.differencing.compare_triggers` (every trigger of a model in one batched call)
and keep its verdict: the score is 1.0 for an injected trigger and 0.0 for a natural one, decided at 0.5.

* ``exray``: symmetric masks, the full method.
* ``exray_v2t`` — "1-sided (V→T)": only the constraint that the victim features, given the other set's
  masked channels, flip to T (barrier ℓ₁, ``sides="a_to_b"``), for M1 and M2; same comparison rule.
* ``exray_t2v`` — "1-sided (T→V)": only the reverse constraint (barrier ℓ₂, ``sides="b_to_a"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, ClassVar

from torch import nn

from exray.differencing import MaskConfig, TriggerCase, compare_triggers
from exray.differencing.config import Sides
from exray.differencing.policies import Policy, resolve_policy
from exray.refinement.base import RefinementMethod, TriggerScore


class ExrayMethod(RefinementMethod):
    """Symmetric feature differencing (paper §3): natural when the trigger's features (M2) are the V/T
    distinguishing features (M1), by ``policy`` (spec §4.5). ``config``: the mask optimisation."""

    name = "exray"
    title = "EX-RAY"
    fixed_threshold = 0.5
    sides: ClassVar[Sides] = "both"

    def __init__(self, *, policy: str | Policy = "official", config: MaskConfig | None = None):
        super().__init__()
        resolve_policy(policy)  # validates a name or a policy object
        self.policy = policy
        self.config = config or MaskConfig()

    def options(self) -> dict[str, Any]:
        policy = self.policy if isinstance(self.policy, str) else repr(self.policy)
        return {"policy": policy, "sides": self.sides, "config": self.config.to_dict()}

    def measurement_options(self) -> dict[str, Any]:
        """The masks and cross-check accuracies do not depend on the policy: stored verdicts are re-decided
        (:meth:`redecide`), not recomputed, when only the policy changes."""
        return {k: v for k, v in self.options().items() if k != "policy"}

    def redecide(self, scores: Sequence[TriggerScore]) -> list[TriggerScore]:
        """Each stored verdict decided by this method's policy from its stored masks (``Verdict.under``)."""
        decided = []
        for score in scores:
            if score.verdict is not None:
                verdict = score.verdict.under(resolve_policy(self.policy, score.verdict.kind))
                score = replace(score, value=0.0 if verdict.natural else 1.0, verdict=verdict)
            decided.append(score)
        return decided

    def _score(
        self, model: nn.Module, cases: list[TriggerCase], *, layer: str | None, seed: int, progress: bool
    ) -> list[TriggerScore]:
        verdicts = compare_triggers(
            model,
            cases,
            layer=layer,
            policy=self.policy,
            sides=self.sides,
            config=self.config,
            seed=seed,
            progress=progress,
        )
        return [TriggerScore(0.0 if v.natural else 1.0, {"layer": v.layer}, verdict=v) for v in verdicts]


class OneSidedVictimToTargetMethod(ExrayMethod):
    """Baseline 7: EX-RAY with only the V→T constraint (``sides="a_to_b"``)."""

    name = "exray_v2t"
    title = "1-sided (V→T)"
    sides = "a_to_b"


class OneSidedTargetToVictimMethod(ExrayMethod):
    """Baseline 8: EX-RAY with only the T→V constraint (``sides="b_to_a"``)."""

    name = "exray_t2v"
    title = "1-sided (T→V)"
    sides = "b_to_a"
