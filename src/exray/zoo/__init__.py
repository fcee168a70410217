"""Model populations (design §1 ``zoo``, spec §7.3.8): specs, deterministic per-model draws, builds that
are parallel, cached and resumable, METADATA.csv, and a shared build cache for test suites."""

from exray.zoo.build import build_zoo, default_workers, inspect_zoo
from exray.zoo.cache import cache_dir, cached_build
from exray.zoo.draw import ModelDesign, ModelDraw, designs, draw_model, model_name, recipe_hash
from exray.zoo.model import build_model_dir
from exray.zoo.records import (
    METADATA_COLUMNS,
    METADATA_FILE,
    ZOO_FILE,
    BuildSummary,
    ModelRecord,
    read_metadata,
)
from exray.zoo.spec import SHIPPED_SPECS, TRIGGER_TYPES, ZooSpec, load_spec, parse_spec

__all__ = [
    "METADATA_COLUMNS",
    "METADATA_FILE",
    "SHIPPED_SPECS",
    "TRIGGER_TYPES",
    "ZOO_FILE",
    "BuildSummary",
    "ModelDesign",
    "ModelDraw",
    "ModelRecord",
    "ZooSpec",
    "build_model_dir",
    "build_zoo",
    "cache_dir",
    "cached_build",
    "default_workers",
    "designs",
    "draw_model",
    "inspect_zoo",
    "load_spec",
    "model_name",
    "parse_spec",
    "read_metadata",
    "recipe_hash",
]
