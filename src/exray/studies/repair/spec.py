"""Repair study specs (issue 19 §2; EX-RAY paper §4.6, Table 8): a validated description of the population to
repair and of the equal repair budget.

Schema, with defaults (unknown keys are rejected with the key's dotted path)::

    name: <file stem>
    seed: 0                      # the Neural Cleanse inversions and the repair derive from it
    zoo: <zoo spec mapping or path>   # clean and label-specific-trojaned models (exray.zoo spec schema);
                                 # a path is relative to this file, or a shipped spec name (zoos/…)
    nc: {epochs: 150, victim_images: 20}   # NCConfig fields for the per-pair inversions
    repair: {}                   # RepairConfig fields: the same budget for every model

The zoo is built (or reused) through :func:`exray.zoo.cached_build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exray.repair import RepairConfig
from exray.scanners.neural_cleanse import NCConfig
from exray.specfile import MAX_SEED, Section, built, check_name, load_spec_file
from exray.studies.sections import load_zoo
from exray.zoo.spec import ZooSpec

KIND = "repair study spec"


@dataclass(frozen=True)
class RepairStudySpec:
    name: str
    seed: int
    zoo: ZooSpec
    nc: NCConfig = field(default_factory=NCConfig)
    repair: RepairConfig = field(default_factory=RepairConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seed": self.seed,
            "zoo": self.zoo.name,
            "nc": self.nc.to_dict(),
            "repair": self.repair.to_dict(),
        }


def parse_spec(data: Any, *, default_name: str = "repair", base: Path | None = None) -> RepairStudySpec:
    top = Section(data, "", ("name", "seed", "zoo", "nc", "repair"), kind=KIND, required=("zoo",))
    name = top.get("name", default_name)
    check_name(top, name)
    nc = Section(top.get("nc", {}), "nc", tuple(NCConfig.__dataclass_fields__), kind=KIND)
    repair = Section(top.get("repair", {}), "repair", tuple(RepairConfig.__dataclass_fields__), kind=KIND)
    nc_options = {"epochs": 150, "victim_images": 20, **nc.data}
    if nc_options.get("mode", "label_specific") != "label_specific":
        raise nc.fail("mode", "must be label_specific: the study inverts (victim, target) pairs")
    return RepairStudySpec(
        name=name,
        seed=top.int("seed", 0, 0, MAX_SEED),
        zoo=load_zoo(top.get("zoo"), base, KIND),
        nc=built(KIND, "nc", NCConfig, **nc_options),
        repair=built(KIND, "repair", RepairConfig, **repair.data),
    )


def load_spec(path: str | Path) -> RepairStudySpec:
    """Read and validate a ``.yaml``/``.json`` repair study spec (its name defaults to the file stem)."""
    return load_spec_file(path, KIND, parse_spec, relative=True)
