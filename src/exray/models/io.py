"""Model directories (design §4): ``config.json`` + ``model.safetensors``, rebuilt from the registry.

A model file is untrusted input. exray never unpickles unless asked: the safe format holds only tensors
(safetensors) and a JSON config naming a registry architecture. TrojAI's original directories hold a whole
pickled torchvision module in ``model.pt``: exray unpickles those with PyTorch's restricted unpickler into
its own torchvision-compatible classes (:mod:`exray.models.torchvision_compat`), running nothing from the
file; any other pickle runs arbitrary code when loaded, so it needs ``trust_pickle=True``
(CLI: ``--trust-pickle``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from exray.errors import ConfigError, InputError, ModelLoadError
from exray.files import check_regular_file, read_json
from exray.models.archives import exported_state_dict, is_torchscript, torchscript_state_dict
from exray.models.normalization import check_normalization, normalize_inputs
from exray.models.registry import build_model
from exray.models.runtime import resolve_device
from exray.models.torchvision_compat import build as build_torchvision
from exray.models.torchvision_compat import check_root, load_pickled

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
PICKLE_FILE = "model.pt"
#: Model files whose weights exray reads without running their program (:mod:`exray.models.archives`).
EXPORTED_FILE, TORCHSCRIPT_FILES = "model.pt2", ("model.ts", "model.torchscript")
GROUND_TRUTH_FILE = "ground_truth.csv"
FORMAT = "exray-model/1"


@dataclass(frozen=True)
class ModelInfo:
    """What a model directory says about its model: architecture, classes, input size and metadata."""

    architecture: str
    num_classes: int | None
    input_size: tuple[int, int, int] | None
    config: dict[str, Any] = field(default_factory=dict)


def model_info(model: nn.Module) -> ModelInfo | None:
    """The :class:`ModelInfo` attached by :func:`load_model`, or None for a model built elsewhere."""
    return getattr(model, "exray_info", None)


def input_image_size(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) of the model's input if its directory states it (examples are centre-cropped to it)."""
    info = model_info(model)
    return (int(info.input_size[1]), int(info.input_size[2])) if info and info.input_size else None


#: TrojAI's example images (256×256) and the input its models take (224×224): spec §1.
TROJAI_EXAMPLE_SIZE, TROJAI_INPUT_SIZE = 256, 224


def example_crop_size(model: nn.Module, example_side: int) -> tuple[int, int] | None:
    """The (H, W) to centre-crop example images of side ``example_side`` to for ``model``: the input size its
    directory states, else TrojAI's 224×224 for 256×256 examples, else None (use them as they are)."""
    size = input_image_size(model)
    if size is not None:
        return size
    return (TROJAI_INPUT_SIZE, TROJAI_INPUT_SIZE) if example_side == TROJAI_EXAMPLE_SIZE else None


def save_model(
    model: nn.Module,
    directory: str | Path,
    *,
    input_size: tuple[int, int, int],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (built by :func:`exray.models.build_model`) as a model directory.

    ``config.json`` holds the architecture, its keyword arguments, the class count, the input size and any
    ``metadata`` (ground truth, triggers, accuracy, seed, …); ``ground_truth.csv`` holds ``1``/``0`` when
    ``metadata`` has a boolean ``"poisoned"``. The weights are written last, via a temporary file, so a
    directory with ``model.safetensors`` is always complete.
    """
    arch = getattr(model, "exray_arch", None)
    if arch is None:
        raise ConfigError("save_model needs a model built by exray.models.build_model (no registry record)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {"format": FORMAT, **arch, "input_size": list(input_size), **(metadata or {})}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if isinstance(config.get("poisoned"), bool):
        (directory / GROUND_TRUTH_FILE).write_text(f"{int(config['poisoned'])}\n")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    tmp = directory / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": FORMAT})
    tmp.replace(directory / WEIGHTS_FILE)
    return directory


def read_config(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory (``ModelLoadError`` if missing, not a regular file,
    too large, nested too deeply or malformed)."""
    path = Path(directory) / CONFIG_FILE
    try:
        config = read_json(path, "model config")
    except InputError as err:
        raise ModelLoadError(str(err)) from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return config


#: Limits of a model directory's ``config.json`` (checked before anything is built). ``arch_kwargs`` may
#: nest lists and objects MAX_KWARG_DEPTH deep, with at most MAX_KWARG_ITEMS entries each, integers up to
#: MAX_KWARG_INT in size (channel counts: TrojAI's widest layer has 2,112) and finite numbers only; the
#: architectures bound their own structural arguments (e.g. a DenseNet's total layer count).
MAX_CLASSES = 100_000
MAX_INPUT_SIDE = 8192
MAX_KWARG_DEPTH, MAX_KWARG_ITEMS, MAX_KWARG_INT = 4, 64, 8192


def _check_kwarg(value: Any, where: str, path: str, depth: int = 0) -> None:
    if depth > MAX_KWARG_DEPTH:
        raise ModelLoadError(f"{where}: arch_kwargs{path} nests deeper than {MAX_KWARG_DEPTH} levels")
    if isinstance(value, dict | list):
        if len(value) > MAX_KWARG_ITEMS:
            raise ModelLoadError(
                f"{where}: arch_kwargs{path} has {len(value):,} entries (limit {MAX_KWARG_ITEMS})"
            )
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _check_kwarg(item, where, f"{path}[{key!r}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ModelLoadError(f"{where}: arch_kwargs{path} is {value!r}; numbers must be finite")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_KWARG_INT:
        raise ModelLoadError(f"{where}: arch_kwargs{path} = {value:,} exceeds {MAX_KWARG_INT:,}")


def check_config(config: dict[str, Any], where: str) -> tuple[str, int, dict[str, Any]]:
    """(architecture, num_classes, arch_kwargs) of a ``config.json``, typed and range-checked."""
    for key in ("architecture", "num_classes"):
        if key not in config:
            raise ModelLoadError(f"{where} lacks the key {key!r}")
    name, classes, kwargs = config["architecture"], config["num_classes"], config.get("arch_kwargs", {})
    if not isinstance(name, str):
        raise ModelLoadError(f"{where}: architecture must be a name (string), got {name!r:.80}")
    if isinstance(classes, bool) or not isinstance(classes, int) or not 2 <= classes <= MAX_CLASSES:
        raise ModelLoadError(
            f"{where}: num_classes must be an integer in [2, {MAX_CLASSES}], got {classes!r:.80}"
        )
    if not isinstance(kwargs, dict):
        raise ModelLoadError(f"{where}: arch_kwargs must be a JSON object, got {kwargs!r:.80}")
    _check_kwarg(kwargs, where, "")
    check_input_size(config, where)
    return name, classes, kwargs


def check_input_size(config: dict[str, Any], where: str) -> tuple[int, int, int] | None:
    """A config's ``input_size``, [3, H, W] within bounds, or None when it states none."""
    size = config.get("input_size")
    if size is not None and not (
        isinstance(size, list)
        and len(size) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
        and size[0] == 3
        and all(1 <= s <= MAX_INPUT_SIDE for s in size[1:])
    ):
        raise ModelLoadError(
            f"{where}: input_size must be [3, H, W] with 1 <= H, W <= {MAX_INPUT_SIDE}, got {size!r:.80}"
        )
    return None if size is None else (size[0], size[1], size[2])


#: Prefix of the architecture names that rebuild torchvision's models (``"torchvision:resnet50"``).
TORCHVISION_PREFIX = "torchvision:"


def _build(name: str, classes: int, kwargs: dict[str, Any]) -> nn.Module:
    if not name.startswith(TORCHVISION_PREFIX):
        return build_model(name, classes, **kwargs)
    if kwargs:
        raise ConfigError(f"torchvision architectures take no arch_kwargs, got {sorted(kwargs)}")
    model = build_torchvision(name.removeprefix(TORCHVISION_PREFIX), classes)
    model.exray_arch = {
        "architecture": name,
        "arch_kwargs": {},
        "num_classes": classes,
    }  # save_model's record
    return model


def _build_within(weights: Path, name: str, classes: int, kwargs: dict[str, Any], where: str) -> nn.Module:
    """Build the model, after checking on PyTorch's meta device (no memory allocated) that the tensors it
    declares fit in the weights file: a config that declares 10⁹ classes or width 10⁶ is refused before
    the allocator sees it."""
    try:
        with torch.device("meta"):
            shell = _build(name, classes, kwargs)
    except (ConfigError, TypeError, ValueError, OverflowError, RecursionError, RuntimeError) as err:
        raise ModelLoadError(f"{where}: cannot rebuild the model: {_first_line(err)}") from None
    declared = sum(t.numel() * t.element_size() for t in (*shell.parameters(), *shell.buffers()))
    stored = weights.stat().st_size
    if declared > 2 * stored + 2**20:  # weights may be stored in half precision; the header is small
        raise ModelLoadError(
            f"{where}: the config declares {declared:,} bytes of weights but {weights.name} holds {stored:,}"
        )
    try:
        return _build(name, classes, kwargs)
    except (ConfigError, TypeError, ValueError, OverflowError, RecursionError, RuntimeError) as err:
        raise ModelLoadError(f"{where}: cannot rebuild the model: {_first_line(err)}") from None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def load_model(
    path: str | Path, *, trust_pickle: bool = False, device: str | torch.device | None = "auto"
) -> nn.Module:
    """Load a model directory (or a TrojAI ``model.pt`` file) as an eval-mode ``nn.Module``.

    Safe by default: ``config.json`` + ``model.safetensors`` are rebuilt from the architecture registry.
    A pickled ``model.pt`` of a torchvision architecture exray rebuilds loads without running code from the
    file; any other pickle only with ``trust_pickle=True``, because unpickling it executes code from it.
    The returned model carries a :class:`ModelInfo` (see :func:`model_info`). ``device``: where the model
    is put (:func:`~exray.models.runtime.resolve_device`: ``"auto"`` = a CUDA GPU if there is one); the
    scanners, EX-RAY and the detectors run on the model's device.
    """
    if not isinstance(path, str | os.PathLike) or isinstance(path, bytes):
        raise ModelLoadError(f"a model path must be a str or Path, got {type(path).__name__}")
    target = resolve_device(device)
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path} does not exist")
    directory = path if path.is_dir() else path.parent
    file = _model_file(path)
    if file.name == WEIGHTS_FILE:
        model, info = _load_safetensors(directory)
    elif file.suffix == ".pt2":
        model, info = _load_archive(file, directory, "a torch.export program")
    elif file.suffix in {".ts", ".torchscript"} or is_torchscript(file):
        model, info = _load_archive(file, directory, "a TorchScript archive")
    else:
        model, info = _load_pickle(file, trust_pickle, directory)
    if "normalization" in info.config:
        normalize_inputs(
            model, *check_normalization(info.config["normalization"], str(directory / CONFIG_FILE))
        )
    check_weights(model, str(path))
    model = model.to(target).eval()
    model.exray_info = info
    return model


def _model_file(path: Path) -> Path:
    """The file that holds the model: ``path`` itself, or the first of a directory's known model files."""
    if path.is_file():
        if path.name == WEIGHTS_FILE or path.suffix in {".pt", ".pth", ".pt2", ".ts", ".torchscript"}:
            return path
        raise ModelLoadError(f"{path}: not a model file (.safetensors, .pt, .pth, .pt2, .ts, .torchscript)")
    for name in (WEIGHTS_FILE, EXPORTED_FILE, *TORCHSCRIPT_FILES, PICKLE_FILE):
        if (path / name).exists():
            return path / name
    raise ModelLoadError(
        f"{path} holds no model: expected {WEIGHTS_FILE} + {CONFIG_FILE} (exray), {PICKLE_FILE} (TrojAI), "
        f"or {EXPORTED_FILE} / {TORCHSCRIPT_FILES[0]} + {CONFIG_FILE}"
    )


def _load_archive(file: Path, directory: Path, kind: str) -> tuple[nn.Module, ModelInfo]:
    """A TorchScript or torch.export archive: its weights, read without running its program, loaded into the
    architecture ``config.json`` names (neither program can be cut at an inner layer as it stands)."""
    try:
        check_regular_file(file, "model file")
    except InputError as err:
        raise ModelLoadError(str(err)) from None
    if not (directory / CONFIG_FILE).exists() or "architecture" not in read_config(directory):
        raise ModelLoadError(
            f"{file} is {kind}: exray scans it by loading its weights, without running it, into the "
            f'architecture that a {CONFIG_FILE} beside it names (e.g. "architecture": '
            f'"torchvision:resnet18", "num_classes": 10); there is none'
        )
    config = read_config(directory)
    name, classes, kwargs = check_config(config, str(directory / CONFIG_FILE))
    model = _build_within(file, name, classes, kwargs, str(directory))
    if file.suffix == ".pt2":
        state, size = exported_state_dict(file)
    else:
        state, size = torchscript_state_dict(file), None
    _load_state(model, state, file, name)
    stated = config.get("input_size") or size
    return model, ModelInfo(name, classes, tuple(stated) if stated else None, config)


def check_weights(model: nn.Module, where: str = "model") -> None:
    """Raise :class:`ModelLoadError` if a floating-point parameter or buffer holds NaN or Inf: every logit
    of such a model is meaningless, so its scan must be an error, never a score (issue 20)."""
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelLoadError(f"{where}: weights contain NaN or Inf ({name})")


def _load_safetensors(directory: Path) -> tuple[nn.Module, ModelInfo]:
    config = read_config(directory)
    name, classes, kwargs = check_config(config, str(directory / CONFIG_FILE))
    weights = directory / WEIGHTS_FILE
    try:
        check_regular_file(weights, "weights file")
    except InputError as err:
        raise ModelLoadError(str(err)) from None
    model = _build_within(weights, name, classes, kwargs, str(directory))
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelLoadError(f"{weights} is corrupt or unreadable: {_first_line(err)}") from None
    _load_state(model, state, weights, name)
    size = config.get("input_size")
    return model, ModelInfo(
        architecture=name, num_classes=classes, input_size=tuple(size) if size else None, config=config
    )


def _load_state(model: nn.Module, state: Any, weights: Path, name: str) -> None:
    """Load a state dict of tensors into ``model`` exactly (every key, floating point where the model is)."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelLoadError(f"{weights} does not hold a state dict of named tensors")
    expected = model.state_dict()
    for key, stored in state.items():
        wanted = expected.get(key)
        if wanted is not None and wanted.is_floating_point() and not stored.is_floating_point():
            raise ModelLoadError(f"{weights}: tensor {key} is stored as {stored.dtype}, not floating point")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        problem = " ".join(str(err).split())  # PyTorch lists every mismatch on its own line
        raise ModelLoadError(f"{weights} does not match {name}: {problem:.300}") from None


def _load_pickle(file: Path, trust_pickle: bool, directory: Path) -> tuple[nn.Module, ModelInfo]:
    try:
        check_regular_file(file, "pickled model")
    except InputError as err:
        raise ModelLoadError(str(err)) from None
    if not trust_pickle:
        loaded = load_pickled(file)  # tensors and torchvision's classes only
    else:
        try:
            loaded = torch.load(str(file), map_location="cpu", weights_only=False)
        except Exception as err:  # unpickling can fail in arbitrary ways; all of them mean "cannot load"
            raise ModelLoadError(f"{file} could not be unpickled: {type(err).__name__}: {err}") from None
    config = read_config(directory) if (directory / CONFIG_FILE).exists() else {}
    if isinstance(loaded, dict) and "architecture" in config:  # a state dict beside its config
        name, classes, kwargs = check_config(config, str(directory / CONFIG_FILE))
        model = _build_within(file, name, classes, kwargs, str(directory))
        _load_state(model, loaded, file, name)
        size = config.get("input_size")
        return model, ModelInfo(name, classes, tuple(size) if size else None, config)
    if not trust_pickle:
        model = check_root(loaded, file)
    elif not isinstance(loaded, nn.Module):
        raise ModelLoadError(f"{file} holds a {type(loaded).__name__}, not a whole torch.nn.Module")
    else:
        model = loaded
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    stated = getattr(model, "num_classes", None)  # SqueezeNet ends in a convolution, not a Linear
    stated = stated if isinstance(stated, int) and not isinstance(stated, bool) and stated > 1 else None
    num_classes = config.get("num_classes") or stated or (linears[-1].out_features if linears else None)
    return model, ModelInfo(  # a whole pickle states no input size; its directory's config may
        architecture=str(config.get("model_architecture", type(model).__name__)),
        num_classes=None if num_classes is None else int(num_classes),
        input_size=check_input_size(config, str(directory / CONFIG_FILE)),
        config=config,
    )
