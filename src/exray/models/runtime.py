"""Running a model as the scanners, EX-RAY and the detectors need it: its device, frozen weights, and
predictions in eval mode without gradients, and the class stamped images are sent to (issue 21: one home for
model plumbing)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from exray.errors import ConfigError, InputError

#: What ``device=`` / ``--device`` accept besides a ``torch.device``: ``auto`` is CUDA when PyTorch sees a
#: GPU, else the CPU; ``cuda:N`` names one GPU.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The ``torch.device`` that ``device`` names (issue 18 §4), checked before any work.

    ``"auto"`` (or ``None``): the first CUDA GPU if PyTorch sees one, else the CPU. ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` or a ``torch.device``: that device, a :class:`ConfigError` if this machine lacks it (a
    scan that asked for a GPU must not run on the CPU for hours unnoticed)."""
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str | torch.device):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r:.60}")
    try:
        resolved = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r:.60}") from None
    if resolved.type == "cpu":
        return torch.device("cpu")
    if resolved.type != "cuda":
        raise ConfigError(f"device {str(resolved)!r} is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device {str(resolved)!r} was asked for, but PyTorch sees no CUDA GPU on this machine "
            f"(torch {torch.__version__}); use --device cpu or auto"
        )
    if resolved.index is not None and resolved.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ConfigError(f"device {str(resolved)!r}: this machine has {count} CUDA GPU(s)")
    return resolved


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        return tensor.device
    return torch.device("cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 in hardware: a CUDA GPU that supports it, or a CPU with AMX tiles
    or AVX-512 BF16. Elsewhere bf16 autocast is emulated and slower than fp32 (docs/results.md: the Xeon
    without either trains the wide-late CNN 1.7× slower in bf16; with AMX 1.7× faster)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private in torch 2.x: probe them
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def check_bf16(bf16: object) -> None:
    """A :class:`ConfigError` unless ``bf16`` is a setting :func:`resolve_bf16` takes: true, false, "auto"."""
    if not isinstance(bf16, bool) and bf16 != "auto":
        raise ConfigError(f"bf16 must be true, false or 'auto', got {bf16!r:.60}")


def resolve_bf16(bf16: bool | str, device: torch.device) -> bool:
    """A ``bf16`` setting as run on ``device``: ``"auto"`` is :func:`native_bf16`, a bool itself."""
    check_bf16(bf16)
    return native_bf16(device) if bf16 == "auto" else bool(bf16)


def auto_precision_differs(training: Mapping[str, Any], device: torch.device) -> str | None:
    """Why a model whose training record is ``training`` was not trained as ``bf16: auto`` trains on
    ``device`` now (its recorded ``bf16_resolved`` is the other precision), or ``None`` — also for a model
    that did not train under auto. Cached models are reused only where this is ``None``."""
    ran = training.get("bf16_resolved")  # recorded where bf16 was "auto"
    now = native_bf16(device)
    if ran is None or ran == now:
        return None
    names = {True: "bf16", False: "fp32"}
    return f"trained under bf16: auto in {names[bool(ran)]}; auto runs {names[now]} on this {device.type}"


def bf16_autocast(device: torch.device, enabled: bool | str = True) -> AbstractContextManager[object]:
    """bfloat16 autocast on ``device``'s type (CPU or CUDA alike) when ``enabled`` (``"auto"``:
    :func:`resolve_bf16`), else nothing."""
    if not resolve_bf16(enabled, device):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients (only masks or triggers are optimised); restored on exit."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


#: Logits beyond this magnitude are treated as overflow: float32 ends at 3.4e38, and rows of equal huge
#: values make the argmax meaningless (it names class 0).
MAX_LOGIT = 1e30


def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, *, finite: bool = True
) -> torch.Tensor:
    """Logits of ``images`` in eval mode, without gradients, in batches (the mode is restored). Each batch
    runs on the model's device; the logits are returned on the images' device.

    ``finite``: logits that are NaN, infinite or beyond :data:`MAX_LOGIT` are an :class:`InputError` — a
    model that overflows on valid images (stamped ones included) has no meaningful prediction, and the
    argmax of an all-inf row would silently name class 0."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = model_device(model)
            logits = torch.cat(
                [
                    model(images[i : i + batch_size].to(device)).to(images.device)
                    for i in range(0, len(images), batch_size)
                ]
            )
    finally:
        model.train(was_training)
    if finite and not bool((logits.abs() <= MAX_LOGIT).all()):  # NaN compares False
        raise InputError(
            "the model's logits are not finite (NaN, Inf or beyond 1e30, next to float32's overflow) on "
            "some images: it cannot be scanned"
        )
    return logits


def predict_labels(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes (N,) of ``images``: the argmax of :func:`predict_logits` (non-finite logits
    allowed: training measures a diverged model, it does not scan it)."""
    return predict_logits(model, images, batch_size, finite=False).argmax(dim=1)


def derive_target(predictions: torch.Tensor, victim_label: int) -> int:
    """Target class of a trigger from the predictions on stamped victim images (spec §4.2).

    The most frequent predicted label; if that is the victim itself, the second most frequent; −1 if the
    stamped images are all still classified as the victim.
    """
    ranked = [label for label, _ in Counter(predictions.tolist()).most_common()]
    ranked = [label for label in ranked if label != victim_label]
    return ranked[0] if ranked else -1
