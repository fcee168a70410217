"""Clean example images of a model directory, in every layout TrojAI and exray use (design §4).

Layouts (looked up in this order inside a model directory, or the directory itself):
``clean-example-data/``, ``clean_example_data/``, ``example_data/``. File naming:
``class_{c}_example_{k}.png`` (label = c), or ``<name>.png|jpg`` next to ``<name>.json`` holding the label
(an integer, or an object with a ``label``/``class``/``clean_label`` key).
"""

from __future__ import annotations

import os
import re
import shutil
from collections import defaultdict
from pathlib import Path

import torch

from exray.data.images import IMAGE_SUFFIXES, MAX_TOTAL_PIXELS, check_size, read_images, write_image
from exray.errors import InputError
from exray.files import read_json

EXAMPLE_DIRS = ("clean-example-data", "clean_example_data", "example_data")
#: ``class_<c>_example_<k>`` (ASCII digits; not inside a longer word, so ``xxclass_2_…`` is no class 2).
_CLASS_NAME = re.compile(r"(?<![A-Za-z0-9])class_([0-9]+)_example_([0-9]+)$")
_LABEL_KEYS = ("label", "class", "clean_label")


def examples_dir(path: str | Path) -> Path:
    """The folder holding the example images of the model directory ``path`` (or ``path`` itself)."""
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise InputError(f"an example folder must be a str or Path, got {type(path).__name__}")
    path = Path(path)
    for name in EXAMPLE_DIRS:
        if (path / name).is_dir():
            return path / name
    if path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir()):
        return path
    raise InputError(f"{path} holds no example images (looked for {', '.join(EXAMPLE_DIRS)} or image files)")


def _label_of(image: Path) -> tuple[int, str]:
    match = _CLASS_NAME.search(image.stem)
    if match:
        return int(match.group(1)), f"{int(match.group(2)):09d}"
    sidecar = image.with_suffix(".json")
    if not sidecar.exists():
        raise InputError(
            f"cannot tell the class of {image.name}: not named class_<c>_example_<k> and no {sidecar.name}"
        )
    value = read_json(sidecar, "label file", limit=2**16)
    if isinstance(value, dict):
        value = next((value[k] for k in _LABEL_KEYS if k in value), None)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{sidecar} does not hold an integer class label")
    return value, image.stem


def list_examples(path: str | Path) -> dict[int, list[Path]]:
    """Example image files per class, each list in example order."""
    folder = examples_dir(path)
    found: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for image in sorted(folder.iterdir()):
        if image.suffix.lower() in IMAGE_SUFFIXES:
            label, key = _label_of(image)
            found[label].append((key, image))
    return {label: [p for _, p in sorted(items)] for label, items in sorted(found.items())}


def load_examples(path: str | Path, *, size: tuple[int, int] | None = None) -> dict[int, torch.Tensor]:
    """Example images per class: ``{class: Tensor[N, 3, H, W]}``, float32 RGB in [0, 1].

    ``size`` centre-crops every image (TrojAI's 256×256 examples feed a 224×224 model); without it all
    images must have one size.
    """
    if size is not None:
        size = check_size(size)
    files = list_examples(path)
    examples, total = {}, 0
    for label, paths in files.items():
        examples[label] = read_images(paths, size)
        total += examples[label].shape[0] * examples[label].shape[-1] * examples[label].shape[-2]
        if total > MAX_TOTAL_PIXELS:
            raise InputError(
                f"the example images of {path} hold more than {MAX_TOTAL_PIXELS:,} pixels; "
                "pass fewer or smaller example images"
            )
    shapes = {tuple(x.shape[1:]) for x in examples.values()}
    if len(shapes) > 1:
        raise InputError(f"example classes have different image sizes {sorted(shapes)}; pass size=(H, W)")
    return examples


def example_filename(label: int, k: int) -> str:
    """Class ``label``'s ``k``-th example file name, as TrojAI names it (read by :func:`_label_of`)."""
    return f"class_{label}_example_{k}.png"


def write_examples(model_dir: str | Path, images: torch.Tensor, labels: torch.Tensor, per_class: int) -> None:
    """Write a model directory's clean examples — the first ``per_class`` images of each label, as
    ``class_{c}_example_{k}.png`` in ``clean-example-data/`` — once: into a partial folder, then renamed, so
    that a folder that exists is complete."""
    folder = Path(model_dir) / EXAMPLE_DIRS[0]
    if folder.exists():
        return
    partial = Path(model_dir) / f".{EXAMPLE_DIRS[0]}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for label in sorted(int(c) for c in labels.unique()):
        for k, image in enumerate(images[labels == label][:per_class]):
            write_image(partial / example_filename(label, k), image)
    partial.rename(folder)
