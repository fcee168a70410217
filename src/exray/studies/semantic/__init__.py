"""The semantic-backdoor study (issue 19 §2; EX-RAY paper §4.4, Tables 4-6, and the CVPR appendix's WaNet /
input-aware rows): ABS alone vs ABS + EX-RAY on populations trojaned with semantic and input-dependent
triggers, per attack, next to the paper's numbers — ``exray study semantic SPEC --out DIR``.

The population: a zoo whose ``triggers.types`` are the attacks that are image triggers (``reflection`` —
Refool, Table 5 — and ``warp`` — WaNet), built with :func:`exray.zoo.cached_build`, plus the models of the
spec's ``attacks`` trained by their own procedures (composite, hidden trigger, input-aware;
:mod:`exray.studies.semantic.trained`). Every trojaned group is evaluated against the same clean models
with :func:`exray.evaluation.evaluate_zoo` (ABS with the spec's options, or an attack's own, e.g. the
paper's raised size bound for composite triggers, and EX-RAY).
"""

from exray.studies.semantic.runner import PAPER, STEM, build_population, run_semantic_study
from exray.studies.semantic.spec import KIND, SemanticStudySpec, load_spec, parse_spec
from exray.studies.semantic.trained import TRAINED_ATTACKS, TrainedAttack, build_trained_model

__all__ = [
    "KIND",
    "PAPER",
    "STEM",
    "TRAINED_ATTACKS",
    "SemanticStudySpec",
    "TrainedAttack",
    "build_population",
    "build_trained_model",
    "load_spec",
    "parse_spec",
    "run_semantic_study",
]
