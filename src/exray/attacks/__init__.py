"""Poisoning attacks (design §1 ``attacks``): label-specific TrojAI-style poisoning as pure, seeded plans
(spec §7.3.7) and their rendering with the synthetic sign generator."""

from exray.attacks.poisoning import (
    ROLE_CLEAN,
    ROLE_COUNTER,
    ROLE_POISON,
    SOURCE_MODES,
    Attack,
    PoisonPlan,
    SourceMode,
    draw_source_classes,
    plan_poisoning,
)
from exray.attacks.render import (
    PoisonedDataset,
    base_labels,
    render_attack_set,
    render_clean_set,
    render_poisoned,
)

__all__ = [
    "ROLE_CLEAN",
    "ROLE_COUNTER",
    "ROLE_POISON",
    "SOURCE_MODES",
    "Attack",
    "PoisonPlan",
    "PoisonedDataset",
    "SourceMode",
    "base_labels",
    "draw_source_classes",
    "plan_poisoning",
    "render_attack_set",
    "render_clean_set",
    "render_poisoned",
]
