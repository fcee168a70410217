"""Ground truth of a model population: which models are trojaned, with which triggers (design §4 "Zoo").

A zoo is a directory of model directories listed in ``METADATA.csv``; each model's ``config.json`` holds
``poisoned`` and ``triggers`` (``type``, ``source_classes``, ``target_class``). A directory without
``METADATA.csv`` is read as every sub-directory with a ``config.json`` (the ground truth then comes from
``config.json`` or ``ground_truth.csv``).

The paper's Table 1 reports each kind of injected trigger separately against the same clean models
(EXP §4.1: "the accuracy is computed considering the same 552 clean models"): a trojaned model belongs to
the *group* of its ground-truth trigger type — ``filter`` for whole-image colour transforms (Instagram
filters), ``polygon`` for polygons, the type's own name otherwise, ``mixed`` for a model with triggers of
several groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exray.errors import InputError, ModelLoadError
from exray.files import read_json, read_text
from exray.scanners import FoundTrigger
from exray.scanners.result import FILTER_TYPES
from exray.zoo import METADATA_FILE, read_metadata

#: Table groups in the order of the paper's columns; other groups follow alphabetically, "all" is last.
GROUP_ORDER = ("polygon", "filter")
ALL = "all"


@dataclass(frozen=True)
class TruthTrigger:
    """One injected trigger: its type, its source classes (``None``: every other class) and target."""

    type: str
    sources: tuple[int, ...] | None
    target: int

    @property
    def kind(self) -> str:
        """The trigger kind a scanner would find it as: ``filter`` or ``patch``."""
        return "filter" if self.type in FILTER_TYPES else "patch"


@dataclass(frozen=True)
class ModelTruth:
    """A model of the population and its ground truth; ``group`` is ``None`` for a clean model."""

    name: str
    path: Path
    poisoned: bool
    triggers: tuple[TruthTrigger, ...]

    @property
    def group(self) -> str | None:
        if not self.poisoned:
            return None
        groups = {trigger_group(t.type) for t in self.triggers} or {"unknown"}
        return groups.pop() if len(groups) == 1 else "mixed"

    @property
    def kinds(self) -> frozenset[str]:
        """Kinds of the injected triggers (empty for a clean model)."""
        return frozenset(t.kind for t in self.triggers)

    def injected(self, found: FoundTrigger) -> bool:
        """Whether a found trigger is the injected backdoor: the model is trojaned and one of its triggers
        has the found target and (any source, or) the found victim among its sources. [CHOICE] The kind is
        not compared: a scanner may invert a polygon trigger as a filter and still have found it."""
        return self.poisoned and any(
            t.target == found.target and (t.sources is None or found.victim in t.sources)
            for t in self.triggers
        )


def trigger_group(trigger_type: str) -> str:
    """The table group of a ground-truth trigger type."""
    return "filter" if trigger_type in FILTER_TYPES else trigger_type


def group_order(groups: Sequence[str]) -> list[str]:
    """Groups in table order: the paper's first, then the others alphabetically."""
    known = [g for g in GROUP_ORDER if g in groups]
    return known + sorted(set(groups) - set(known))


def _class_index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 100_000:
        raise ValueError(f"a class index must be an integer >= 0, got {value!r:.40}")
    return value


def _parse_trigger(data: object) -> TruthTrigger:
    if not isinstance(data, dict):
        raise ValueError(f"a trigger must be an object, got {data!r:.40}")
    sources = data.get("source_classes")
    if sources not in (None, "all") and not isinstance(sources, list):
        raise ValueError(f"source_classes must be a list or 'all', got {sources!r:.40}")
    kind = data.get("type", "unknown")
    if not isinstance(kind, str):
        raise ValueError(f"a trigger's type must be a name, got {kind!r:.40}")
    return TruthTrigger(
        type=kind,
        sources=None if sources in (None, "all") else tuple(_class_index(s) for s in sources),
        target=_class_index(data["target_class"]),
    )


def read_model_truth(path: Path) -> ModelTruth:
    """The ground truth in a model directory's ``config.json`` (or ``ground_truth.csv``)."""
    try:
        config = read_json(path / "config.json", "config.json")
    except InputError as err:
        raise ModelLoadError(f"{path}: no readable config.json ({err})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path}: config.json is not a JSON object")
    poisoned = config.get("poisoned")
    if poisoned is None and (path / "ground_truth.csv").exists():
        try:
            flag = read_text(path / "ground_truth.csv", "ground truth", limit=64).strip()
        except InputError as err:
            raise ModelLoadError(str(err)) from None
        poisoned = {"1": True, "0": False}.get(flag)
    if not isinstance(poisoned, bool):
        raise ModelLoadError(f"{path}: no ground truth (config.json 'poisoned' or ground_truth.csv)")
    try:
        listed = config.get("triggers") or ()
        if not isinstance(listed, list | tuple):
            raise ValueError(f"'triggers' must be a list, got {listed!r:.40}")
        triggers = tuple(_parse_trigger(t) for t in listed) if poisoned else ()
    except (KeyError, TypeError, ValueError) as err:
        raise ModelLoadError(f"{path}: malformed 'triggers' in config.json ({err})") from None
    return ModelTruth(path.name, path, poisoned, triggers)


def read_truth(zoo_dir: str | Path) -> tuple[list[ModelTruth], dict[str, str]]:
    """(models with their ground truth, {model: why it was skipped}) of a population directory.

    Models listed in ``METADATA.csv`` whose build failed, or whose ground truth cannot be read, are
    skipped with the reason.
    """
    zoo = Path(zoo_dir)
    if not zoo.is_dir():
        raise ModelLoadError(f"{zoo} is not a directory")
    if (zoo / METADATA_FILE).exists():
        rows = read_metadata(zoo)
        names = [r["name"] for r in rows]
        skipped = {
            r["name"]: f"build status {r.get('status')!r}" for r in rows if r.get("status", "ok") != "ok"
        }
    else:
        names = sorted(p.name for p in zoo.iterdir() if (p / "config.json").is_file())
        skipped = {}
    models = []
    for name in names:
        if name in skipped:
            continue
        try:
            models.append(read_model_truth(zoo / name))
        except ModelLoadError as err:
            skipped[name] = str(err)
    if not models:
        raise ModelLoadError(f"{zoo} holds no model directory with ground truth")
    return models, skipped
