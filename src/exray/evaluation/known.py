"""Triggers whose verdict is known by construction, for a model of a zoo exray built.

EX-RAY (paper §3) calls a trigger natural when the feature maps that flip victim V to V+trigger (M2) lie
inside those that separate clean V from clean T (M1). Whether that premise holds on a population can be
checked without any trigger-inversion scanner, on two kinds of trigger re-rendered from the model's draw:

* **planted**: each trojaned model's own trigger, stamped exactly as in training on the model's held-out
  example scenes of each source class — an *injected* trigger;
* **glyph swap**: for each glyph-only confusion pair (a, b), the victim's example scenes re-rendered with
  class b's sign (same background, pose and lighting; only the glyph differs) — a *natural* trigger by
  construction (the "stamped" image is a class-b image), in both directions.

Used by ``benchmarks/premise_by_layer.py`` and by the tests on trained fixtures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from exray.data.examples import load_examples
from exray.data.synth import SignRenderer
from exray.differencing.compare import TriggerCase
from exray.errors import ModelLoadError
from exray.scanners.result import FILTER_TYPES
from exray.utils import derive_seed
from exray.zoo import ZOO_FILE, designs, draw_model, parse_spec


@dataclass(frozen=True)
class KnownTrigger:
    """A trigger case with the verdict it has by construction."""

    description: str  # e.g. "planted polygon 0→1", "glyph swap 2→3"
    natural: bool  # True for glyph swaps, False for planted triggers
    case: TriggerCase


def quantised(images: torch.Tensor) -> torch.Tensor:
    """As the model sees its example PNGs: 8 bits per channel."""
    return (images * 255.0).round() / 255.0


def known_triggers(zoo: str | Path, name: str) -> list[KnownTrigger]:
    """The planted triggers and glyph swaps of model ``name`` of the built zoo ``zoo``, judged against the
    model directory's own clean examples."""
    zoo = Path(zoo)
    try:
        spec = parse_spec(json.loads((zoo / ZOO_FILE).read_text())["spec"])
        config = json.loads((zoo / name / "config.json").read_text())
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"{zoo / name} is not a model of a zoo exray built: {err}") from None
    design = next((d for d in designs(spec) if d.name == name), None)
    if design is None:
        raise ModelLoadError(f"{name} is not a model of the zoo spec in {zoo / ZOO_FILE}")
    examples = load_examples(zoo / name)
    draw = draw_model(spec, design, int(config["attempt"]))
    renderer = SignRenderer(draw.classes, size=spec.image_size, options=spec.data.options())

    def scenes(label: int, scene_class: int, trigger=None) -> torch.Tensor:
        labels = np.full(draw.examples_per_class, label)
        seed = derive_seed(draw.examples_seed, scene_class)
        return quantised(renderer.render(labels, seed, triggers=trigger).images)

    known = []
    for attack in draw.attacks:
        kind = "filter" if attack.trigger.type in FILTER_TYPES else "patch"
        target = attack.target_class
        for source in attack.source_classes:
            case = TriggerCase(
                examples[source],
                examples[target],
                scenes(source, source, attack.trigger),
                source,
                target,
                kind,
            )
            known.append(KnownTrigger(f"planted {attack.trigger.type} {source}→{target}", False, case))
    for a, b in draw.confusion_pairs():
        for victim, target in ((a, b), (b, a)):
            case = TriggerCase(
                examples[victim], examples[target], scenes(target, victim), victim, target, "patch"
            )
            known.append(KnownTrigger(f"glyph swap {victim}→{target}", True, case))
    return known
