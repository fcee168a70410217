"""Reading, writing and validating images as float32 RGB tensors in [0, 1] (design §4)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from exray.errors import InputError
from exray.files import check_regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


#: Largest image decoded (pixels, read from the header first): 4096 × 4096. TrojAI's examples are 224–256.
MAX_IMAGE_PIXELS = 4096 * 4096
#: 16-bit grey PNG modes, scaled exactly by 65535 (``convert("RGB")`` would clip them to 0 or 255).
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def read_image(path: str | Path) -> torch.Tensor:
    """One image file as a (3, H, W) float32 tensor in [0, 1]; grey and RGBA images become RGB, 16-bit
    grey is scaled by 65535. Refused with :class:`InputError`: anything but a regular file, images over
    :data:`MAX_IMAGE_PIXELS` (checked from the header, before decoding), decompression bombs, float images."""
    path = check_regular_file(path, "image")
    try:
        with warnings.catch_warnings():  # the size is checked below, with a clearer message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            width, height = img.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(f"{path} is {width}×{height} pixels; the limit is {MAX_IMAGE_PIXELS:,}")
            if img.mode in _SIXTEEN_BIT:
                grey = np.asarray(img, dtype=np.int64)
                if grey.min() < 0 or grey.max() > 65535:
                    raise InputError(f"{path}: 32-bit integer images are not supported")
                return torch.from_numpy(grey / 65535.0).float().expand(3, -1, -1).clone()
            if img.mode == "F":
                raise InputError(f"{path}: floating-point images are not supported")
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        lines = str(err).strip().splitlines()  # a zTXt / iCCP bomb is a ValueError, a broken header others
        problem = lines[0] if lines else type(err).__name__
        raise InputError(f"{path} is not a readable image: {problem}") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(255.0)


def write_image(path: str | Path, image: torch.Tensor) -> None:
    """Write a (3, H, W) tensor in [0, 1] as an 8-bit PNG (or any format its suffix names)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"write_image needs a (3, H, W) tensor, got {tuple(image.shape)}")
    array = image.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(array).save(path)


def check_size(size: object) -> tuple[int, int]:
    """``size`` as a (height, width) pair of positive integers, else an InputError."""
    if (
        not isinstance(size, tuple | list)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise InputError(f"an image size must be (height, width), two positive integers; got {size!r}")
    return int(size[0]), int(size[1])


def center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop (…, H, W) images to ``size`` (TrojAI crops 256×256 examples to 224×224, spec §1)."""
    h, w = images.shape[-2:]
    th, tw = check_size(size)
    if th > h or tw > w:
        raise InputError(
            f"cannot crop {h}×{w} images to {th}×{tw}: the images are smaller than the model input"
        )
    top, left = (h - th) // 2, (w - tw) // 2
    return images[..., top : top + th, left : left + tw]


#: Most pixels a set of images may hold once read (and cropped): 2²⁷ (1.5 GiB as float32 RGB). TrojAI's
#: examples: ≤ 45 classes × 20 images × 224² ≈ 2²⁵.
MAX_TOTAL_PIXELS = 2**27


def read_images(paths: list[Path], size: tuple[int, int] | None = None) -> torch.Tensor:
    """Several image files as one (N, 3, H, W) tensor; all must share a size unless ``size`` crops them
    (each image right after it is read). More than :data:`MAX_TOTAL_PIXELS` in all is an InputError."""
    if size is not None:
        size = check_size(size)
    images, total = [], 0
    for p in paths:
        image = read_image(p)
        if size is not None:
            image = center_crop(image, size).clone()  # the full-size image is freed at once
        total += image.shape[-1] * image.shape[-2]
        if total > MAX_TOTAL_PIXELS:
            raise InputError(
                f"the {len(paths)} images from {p.parent} hold more than {MAX_TOTAL_PIXELS:,} pixels; "
                "pass fewer or smaller example images"
            )
        images.append(image)
    shapes = {tuple(img.shape) for img in images}
    if len(shapes) > 1:
        detail = ", ".join(f"{p.name}: {tuple(i.shape[1:])}" for p, i in zip(paths, images))
        raise InputError(f"images have different sizes ({detail}); pass a crop size to load them together")
    return torch.stack(images)


def check_images(
    images: torch.Tensor,
    name: str = "images",
    *,
    channels: int | None = None,
    allow_empty: bool = False,
    finite: bool = True,
    unit_range: bool = False,
) -> None:
    """Raise :class:`InputError` unless ``images`` is a floating tensor of shape (N, C, H, W).

    ``name`` starts every message. ``channels``: the required C (any if None); ``allow_empty``: whether
    N = 0 passes; ``finite``: whether NaN and Inf values are rejected (one pass over the data);
    ``unit_range``: whether values outside [0, 1] are rejected (images a model is scanned with; 1e-6 of
    rounding allowed).
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or (channels is not None and images.shape[1] != channels):
        layout = f"(N, {'C' if channels is None else channels}, H, W)"
        raise InputError(f"{name} must have shape {layout}, got {tuple(images.shape)}")
    if not allow_empty and len(images) == 0:
        raise InputError(f"{name} must not be empty")
    if not images.is_floating_point():
        raise InputError(f"{name} must be floating point in [0, 1], got dtype {images.dtype}")
    if finite and not torch.isfinite(images).all():
        raise InputError(f"{name} must not contain NaN or Inf values")
    if unit_range and len(images):
        low, high = float(images.min()), float(images.max())
        if low < -1e-6 or high > 1 + 1e-6:
            raise InputError(
                f"{name} must lie in [0, 1] (RGB scaled to the unit range), got [{low:.3g}, {high:.3g}]"
            )
