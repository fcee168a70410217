"""Adaptive-attack study specs (issue 19 §2; EX-RAY paper §4.5, Table 7).

Schema, with defaults (unknown keys are rejected with the key's dotted path)::

    name: <file stem>
    zoo: <zoo spec mapping or path>   # the design: its ``clean`` models are the reference population;
                                      # its ``trojaned`` count is trained once per weight
    weights: [1, 10, 100, 1000, 10000]   # the adaptive loss weights (the paper's Table 7)
    variant: moments                  # or mse (exray.attacks.adaptive)
    layer: null                       # the loss's layer (null: EX-RAY's default, the second-to-last block)
    seed: 0                           # the scans' seed
    scan: {layer: block:-2, policy: r2, precision: fp32, patience: 20,   # ABS + EX-RAY, the demo's
           scanner_options: {epochs: 20, top_n_neurons: 2}}              # settings; precision may be auto

A weight that breaks training is a result (the paper's 10,000: accuracy 0.1), so the weighted zoos keep
every model whatever its accuracy or ASR (their quality bar is 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from exray.specfile import MAX_SEED, Section, check_name, load_spec_file
from exray.studies.sections import ScanSpec, load_zoo, parse_scan
from exray.zoo.schema import AdaptiveSpec, ModelCounts, QualitySpec, ZooSpec

KIND = "adaptive study spec"


@dataclass(frozen=True)
class AdaptiveStudySpec:
    name: str
    zoo: ZooSpec
    weights: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0, 10000.0)
    variant: str = "moments"
    layer: str | None = None
    seed: int = 0
    scan: ScanSpec = field(default_factory=ScanSpec)

    def clean_zoo(self) -> ZooSpec:
        """The reference population: the design's clean models."""
        return replace(self.zoo, name=f"{self.name}-clean", models=ModelCounts(self.zoo.models.clean, 0))

    def weighted_zoo(self, weight: float) -> ZooSpec:
        """The design's trojaned models trained with the adaptive loss at ``weight`` (quality bar 0)."""
        training = replace(self.zoo.training, adaptive=AdaptiveSpec(float(weight), self.variant, self.layer))
        return replace(
            self.zoo,
            name=f"{self.name}-w{weight:g}",
            models=ModelCounts(0, self.zoo.models.trojaned),
            training=training,
            quality=QualitySpec(0.0, 0.0, 1),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "zoo": self.zoo.to_dict(),
            "weights": list(self.weights),
            "variant": self.variant,
            "layer": self.layer,
            "seed": self.seed,
            "scan": self.scan.to_dict(),
        }


def parse_spec(data: Any, *, default_name: str = "adaptive", base: Path | None = None) -> AdaptiveStudySpec:
    top = Section(
        data, "", ("name", "zoo", "weights", "variant", "layer", "seed", "scan"), kind=KIND, required=("zoo",)
    )
    name = top.get("name", default_name)
    check_name(top, name)
    zoo = load_zoo(top.get("zoo"), base, KIND)
    if zoo.models.clean < 1 or zoo.models.trojaned < 1:
        raise top.fail("zoo", "needs clean models (the reference) and trojaned ones (trained per weight)")
    layer = top.get("layer")
    if layer is not None and (not isinstance(layer, str) or not layer):
        raise top.fail("layer", f"must be null or a module name / block:K, got {layer!r}")
    spec = AdaptiveStudySpec(
        name=name,
        zoo=zoo,
        weights=top.numbers("weights", (1.0, 10.0, 100.0, 1000.0, 10000.0), 0.0, 1e6),
        variant=top.choice("variant", "moments", ("moments", "mse")),
        layer=layer,
        seed=top.int("seed", 0, 0, MAX_SEED),
        scan=parse_scan(top, KIND),
    )
    return spec


def load_spec(path: str | Path) -> AdaptiveStudySpec:
    """Read and validate a ``.yaml``/``.json`` adaptive study spec (its name defaults to the file stem)."""
    return load_spec_file(path, KIND, parse_spec, relative=True)
