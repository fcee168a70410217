"""Poisoning attacks (design §1 ``attacks``): label-specific TrojAI-style poisoning as pure, seeded plans
(spec §7.3.7) and their rendering with the synthetic sign generator; the SDRM study's attacks (BadNets,
Blended, filter, WaNet-style warp) on any image set; the paper's other attacks (composite, reflection via
``exray.triggers``, hidden trigger, input-aware dynamic, the adaptive loss); the SDRM / ML-MMDR
regulariser (spec §6.1)."""

from exray.attacks.adaptive import AdaptiveConfig, AdaptiveLoss
from exray.attacks.catalog import (
    ATTACK_KINDS,
    ATTACK_OPTIONS,
    AttackRecipe,
    poison_images,
    redrawn_set,
    triggered_set,
    with_noise_mode,
)
from exray.attacks.composite import composite_mix, composite_set, composite_test_set
from exray.attacks.hidden import (
    HiddenTriggerConfig,
    hidden_trigger_poisons,
    hidden_trigger_set,
    hidden_trigger_test_set,
)
from exray.attacks.input_aware import (
    InputAwareConfig,
    InputAwareResult,
    InputAwareTrigger,
    TriggerGenerator,
    train_input_aware,
)
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
from exray.attacks.sdrm import SDRMConfig, SDRMRegularizer, default_levels, stage_outputs
from exray.attacks.warp import WarpTrigger

__all__ = [
    "ATTACK_KINDS",
    "ATTACK_OPTIONS",
    "ROLE_CLEAN",
    "ROLE_COUNTER",
    "ROLE_POISON",
    "SOURCE_MODES",
    "AdaptiveConfig",
    "AdaptiveLoss",
    "Attack",
    "AttackRecipe",
    "HiddenTriggerConfig",
    "InputAwareConfig",
    "InputAwareResult",
    "InputAwareTrigger",
    "PoisonPlan",
    "PoisonedDataset",
    "SDRMConfig",
    "SDRMRegularizer",
    "SourceMode",
    "TriggerGenerator",
    "WarpTrigger",
    "base_labels",
    "composite_mix",
    "composite_set",
    "composite_test_set",
    "default_levels",
    "draw_source_classes",
    "hidden_trigger_poisons",
    "hidden_trigger_set",
    "hidden_trigger_test_set",
    "plan_poisoning",
    "poison_images",
    "redrawn_set",
    "render_attack_set",
    "render_clean_set",
    "render_poisoned",
    "stage_outputs",
    "train_input_aware",
    "triggered_set",
    "with_noise_mode",
]
