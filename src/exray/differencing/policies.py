"""Decision policies: is a trigger natural, given the overlaps of M1 and M2 and the cross-check accuracies?

Spec §4.5. Inputs: I1 = Σmin(M1, M2)/ΣM1, I2 = Σmin(M1, M2)/ΣM2 and four cross-check accuracies:

* ``acc1_1``: V with T's M2-channels → T;  ``acc1_2``: T with V's M2-channels → V (M2 on the V/T pair);
* ``acc2_1``: V with (V+t)'s M1-channels → T;  ``acc2_2``: V+t with V's M1-channels → V (M1 on V/V+t).

Policies return the verdict and the names of the rules that fired, so a report can say *why*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from exray.errors import ConfigError

ACCURACY_KEYS = ("acc1_1", "acc1_2", "acc2_1", "acc2_2")


class Policy(Protocol):
    name: str

    def decide(self, i1: float, i2: float, acc: dict[str, float]) -> tuple[bool, list[str]]:
        """(natural?, rules that fired)."""
        ...


@dataclass(frozen=True)
class PaperPolicy:
    """Paper eq. (5) and (6): natural if Σmin(M1,M2) > β·min(ΣM1, ΣM2), i.e. max(I1, I2) > β, or if all
    four cross-check accuracies exceed γ (β = γ = 0.8, EXA App. G)."""

    beta: float = 0.8
    gamma: float = 0.8
    cross_check: bool = True
    name: str = "paper"

    def decide(self, i1: float, i2: float, acc: dict[str, float]) -> tuple[bool, list[str]]:
        fired = []
        if max(i1, i2) > self.beta:
            fired.append(f"max(I1, I2) > beta={self.beta}")
        if self.cross_check and all(acc[k] > self.gamma for k in ACCURACY_KEYS):
            fired.append(f"all cross-check accuracies > gamma={self.gamma}")
        return bool(fired), fired


def overlap_rules(
    i1: float,
    i2: float,
    acc: dict[str, float],
    overlaps: tuple[float, float],
    flips: tuple[float, float],
    *,
    both_ways: bool,
) -> list[str]:
    """The four rules the official script and the round-3 submission share, those that fired: I1 > t1; I1 > I2
    and M1 flips V/V+t (its cross-check accuracies, the better one — or, ``both_ways``, both — ≥ a1); I2 > t2;
    I2 > I1 and M2 flips V/T (≥ a2). ``overlaps`` = (t1, t2), ``flips`` = (a1, a2)."""
    side = min if both_ways else max
    ways = " both ways" if both_ways else ""
    fired = []
    if i1 > overlaps[0]:
        fired.append(f"I1 > {overlaps[0]}")
    if i1 > i2 and side(acc["acc2_1"], acc["acc2_2"]) >= flips[0]:
        fired.append(f"I1 > I2 and M1 flips V/V+t{ways} (acc >= {flips[0]})")
    if i2 > overlaps[1]:
        fired.append(f"I2 > {overlaps[1]}")
    if i2 > i1 and side(acc["acc1_1"], acc["acc1_2"]) >= flips[1]:
        fired.append(f"I2 > I1 and M2 flips V/T{ways} (acc >= {flips[1]})")
    return fired


@dataclass(frozen=True)
class OfficialPolicy:
    """The official script's rules (EXF ``mask_prune_by_neuron_mask`` / ``filter_prune_by_neuron_mask``).

    Natural if any of: (1) I1 > ``i1``; (2) I1 > I2 and max(acc2_1, acc2_2) ≥ ``side_acc``; (3) I2 > ``i2``;
    (4) I2 > I1 and max(acc1_1, acc1_2) ≥ ``side_acc``; (5) at least 3 accuracies ≥ ``majority_acc`` (and,
    if set, I2 > ``majority_min_i2``); (6) all accuracies ≥ ``all_acc_floor`` (if set); (7) I1 and I2 both
    > ``joint_overlap`` (if set). :data:`EXF_MASK` and :data:`EXF_FILTER` hold the two shipped variants.
    """

    name: str
    i1: float
    i2: float
    side_acc: float
    majority_acc: float
    majority_min_i2: float | None = None
    all_acc_floor: float | None = None
    joint_overlap: float | None = None

    def decide(self, i1: float, i2: float, acc: dict[str, float]) -> tuple[bool, list[str]]:
        fired = overlap_rules(
            i1, i2, acc, (self.i1, self.i2), (self.side_acc, self.side_acc), both_ways=False
        )
        majority = sum(acc[k] >= self.majority_acc for k in ACCURACY_KEYS) >= 3
        if majority and (self.majority_min_i2 is None or i2 > self.majority_min_i2):
            fired.append(f"3 of 4 cross-check accuracies >= {self.majority_acc}")
        if self.all_acc_floor is not None and all(acc[k] >= self.all_acc_floor for k in ACCURACY_KEYS):
            fired.append(f"all cross-check accuracies >= {self.all_acc_floor}")
        if self.joint_overlap is not None and i1 > self.joint_overlap and i2 > self.joint_overlap:
            fired.append(f"I1 and I2 > {self.joint_overlap}")
        return bool(fired), fired


@dataclass(frozen=True)
class R3Policy:
    """The round-3 submission's stricter patch rule (spec §4.5): natural if I1 > 0.9; or I1 > I2 and both
    M1 cross-accuracies ≥ 0.95; or I2 > 0.9; or I2 > I1 and both M2 cross-accuracies ≥ 0.99."""

    overlap: float = 0.9
    m1_acc: float = 0.95
    m2_acc: float = 0.99
    name: str = "r3"

    def decide(self, i1: float, i2: float, acc: dict[str, float]) -> tuple[bool, list[str]]:
        fired = overlap_rules(
            i1, i2, acc, (self.overlap, self.overlap), (self.m1_acc, self.m2_acc), both_ways=True
        )
        return bool(fired), fired


@dataclass(frozen=True)
class R2Policy(R3Policy):
    """The round-2 submission's rule (naiyeleo/ABS, TrojAI round 2, ``prune_by_neuron_mask``): R3's
    thresholds on the overlaps of *binarised* masks — a channel counts when its mask value is above
    ``binarize`` (0.9), I1 = |B1∩B2|/|B1|, I2 = |B1∩B2|/|B2|, and an empty binarised mask gives 1. The
    cross-check accuracies use the soft masks, as the submission does."""

    binarize: float = 0.9
    name: str = "r2"


EXF_MASK = OfficialPolicy("exf_mask", i1=0.8, i2=0.8, side_acc=0.8, majority_acc=0.8, all_acc_floor=0.4)
EXF_FILTER = OfficialPolicy(
    "exf_filter", i1=0.9, i2=0.88, side_acc=0.99, majority_acc=0.9, majority_min_i2=0.85, joint_overlap=0.6
)
POLICY_NAMES = ("official", "exf_mask", "exf_filter", "paper", "r3", "r2")


def resolve_policy(policy: str | Policy, trigger_kind: str = "patch") -> Policy:
    """A policy object from a name; ``"official"`` picks the filter variant for filter triggers."""
    if not isinstance(policy, str):
        if not callable(getattr(policy, "decide", None)):
            raise ConfigError(f"a policy needs a decide(i1, i2, acc) method, got {type(policy).__name__}")
        return policy
    if policy == "official":
        return EXF_FILTER if trigger_kind == "filter" else EXF_MASK
    named = {
        "exf_mask": EXF_MASK,
        "exf_filter": EXF_FILTER,
        "paper": PaperPolicy(),
        "r3": R3Policy(),
        "r2": R2Policy(),
    }
    if policy not in named:
        raise ConfigError(f"unknown policy {policy!r}; choose one of {POLICY_NAMES} or pass a Policy object")
    return named[policy]
