"""The semantic study's spec (issue 19 §2): the zoo whose trigger types are attacks, the procedure-trained
attacks (:mod:`exray.studies.semantic.trained`) and the ABS + EX-RAY settings.

Schema (unknown keys are rejected)::

    name: <file stem>
    seed: 0
    zoo: <zoo spec mapping or path>      # clean models + trojaned ones per attack type (reflection, warp, …)
    attacks:                             # optional: attacks trained by their own procedures
      composite: {models: 5, fraction: 0.1, min_attack_success_rate: 0.9,
                  scanner_options: {max_size_fraction: 0.59}}     # the paper's 600 px bound
      hidden: {models: 5, fraction: 0.5, epsilon: 0.251, steps: 300, lr: 0.1, head_epochs: 20,
               head_lr: 0.005, min_attack_success_rate: 0.3}
      input_aware: {models: 3, epochs: 30, mask_epochs: 10, …InputAwareConfig fields}
      wanet: {models: 5, fraction: 0.1, strength: 0.5, grid: 4, cross_ratio: 2.0, epochs: 8}
    scan: {layer: block:-2, policy: r2, precision: fp32, patience: 20,   # precision: fp32, bf16, fp16 or
           scanner_options: {epochs: 20, top_n_neurons: 2}}              # auto (bf16 where native)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exray.evaluation import EvaluationConfig
from exray.specfile import MAX_SEED, Section, built, check_name, load_spec_file
from exray.studies.sections import ScanSpec, check_abs, load_zoo, parse_scan
from exray.studies.semantic.trained import TrainedAttack, check_against, parse_attacks
from exray.zoo.schema import ZooSpec

KIND = "semantic study spec"
#: Where the study's models run (precision: auto resolves there).
STUDY_DEVICE = "cpu"


@dataclass(frozen=True)
class SemanticStudySpec:
    name: str
    zoo: ZooSpec
    seed: int = 0
    scan: ScanSpec = field(default_factory=ScanSpec)
    attacks: tuple[TrainedAttack, ...] = ()

    def evaluation(self, groups: tuple[str, ...] | None = None, **scanner_options: Any) -> EvaluationConfig:
        """ABS + EX-RAY on the trojaned models of ``groups`` (all: None) and every clean model, ABS with the
        study's options updated by ``scanner_options``."""
        return EvaluationConfig(
            methods=("exray",),
            scanner_options={**self.scan.scanner_options, **scanner_options},
            seed=self.seed,
            layer=self.scan.layer,
            policy=self.scan.policy,
            mask_config=self.scan.mask_config(STUDY_DEVICE),
            device=STUDY_DEVICE,
            groups=groups,
        )


def parse_spec(data: Any, *, default_name: str = "semantic", base: Path | None = None) -> SemanticStudySpec:
    top = Section(data, "", ("name", "seed", "zoo", "attacks", "scan"), kind=KIND, required=("zoo",))
    name = top.get("name", default_name)
    check_name(top, name)
    zoo = load_zoo(top.get("zoo"), base, KIND)
    if zoo.models.clean < 1:
        raise top.fail("zoo", "needs clean models")
    attacks = parse_attacks(top)
    if zoo.models.trojaned < 1 and not attacks:
        raise top.fail("zoo", "needs trojaned models, or give the study trained 'attacks'")
    scan = parse_scan(top, KIND)
    for attack in attacks:
        path = f"attacks.{attack.attack}"
        built(KIND, path, check_against, attack, zoo)
        if attack.scanner_options:  # checked as the evaluation uses them: over the study's ABS options
            built(
                KIND, f"{path}.scanner_options", check_abs, {**scan.scanner_options, **attack.scanner_options}
            )
    return SemanticStudySpec(name, zoo, top.int("seed", 0, 0, MAX_SEED), scan, attacks)


def load_spec(path: str | Path) -> SemanticStudySpec:
    """Read and validate a ``.yaml``/``.json`` semantic study spec (its name defaults to the file stem)."""
    return load_spec_file(path, KIND, parse_spec, relative=True)
