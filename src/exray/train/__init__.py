"""The training loop (design §1): seeded, with a progress bar, clean accuracy and attack success rate on
held-out data, optional round-3 adversarial training (spec §7.2), and extra loss terms on captured
features (the SDRM/adaptive-attack extension point, spec §5.1, §6.1)."""

from exray.train.adversarial import AdversarialConfig, perturb
from exray.train.config import TrainConfig
from exray.train.data import AttackSet, EvalSet, PoisonRedraw, TrainSet
from exray.train.loop import (
    Batch,
    EpochRecord,
    LossTerm,
    TrainResult,
    attack_success_rate,
    clean_accuracy,
    predict_labels,
    seeded_model,
    train_model,
)

__all__ = [
    "AdversarialConfig",
    "AttackSet",
    "Batch",
    "EpochRecord",
    "EvalSet",
    "LossTerm",
    "PoisonRedraw",
    "TrainConfig",
    "TrainResult",
    "TrainSet",
    "attack_success_rate",
    "clean_accuracy",
    "perturb",
    "predict_labels",
    "seeded_model",
    "train_model",
]
