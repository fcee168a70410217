"""Weights out of TorchScript archives and ``torch.export`` programs, read without running them (issue 18 §2).

Neither format can be scanned as it stands: a TorchScript module takes no forward hooks (ABS and EX-RAY cut
the model at an inner layer), and ``torch.export.load`` unpickles parts of the archive with
``weights_only=False``, which runs code from the file. So exray reads the tensors itself and loads them into
the architecture that the directory's ``config.json`` names (:mod:`exray.models.io`):

* a TorchScript archive's ``data.pkl`` goes through a restricted unpickler that admits only TorchScript's
  object records (as plain attribute dicts), tensor rebuilds, storages and ordered dicts; its TorchScript
  code is never compiled or run;
* a ``.pt2`` archive's weights are raw bytes that its JSON weights config describes (dtype, sizes, strides);
  a weight stored as a pickle goes through PyTorch's restricted ``weights_only`` unpickler. The program's
  input shape gives the model's input size.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from exray.errors import ModelLoadError

#: TorchScript's storage classes by pickled name.
_STORAGES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}

#: ``torch.export``'s serialised dtype codes (torch._export.serde.schema.ScalarType) that weights can have.
_EXPORT_DTYPES = {
    1: torch.uint8,
    2: torch.int8,
    3: torch.int16,
    4: torch.int32,
    5: torch.int64,
    6: torch.float16,
    7: torch.float32,
    8: torch.float64,
    12: torch.bool,
    13: torch.bfloat16,
}


def _members(file: Path) -> tuple[zipfile.ZipFile, list[str]]:
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelLoadError(f"{file} is not a readable zip archive: {err}") from None
    return archive, archive.namelist()


def is_torchscript(file: Path) -> bool:
    """Whether ``file`` is a TorchScript archive (a zip with ``code/`` and ``data.pkl``), not a torch.save."""
    try:
        with zipfile.ZipFile(file) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any("/code/" in n for n in names) and any(n.endswith("/data.pkl") for n in names)


class _Record:
    """A TorchScript object (a module) as the attributes it was pickled with; never runs anything."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


class _Storage:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Any, stride: Any, *_: Any) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _identity(value: Any, *_: Any) -> Any:
    return value


class _TorchScriptUnpickler(pickle.Unpickler):
    """Admits TorchScript records, tensors and storages; every other global is refused by name."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, file: Path):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.file = archive, prefix, file
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__."):
            return _Record
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGES:
            return _Storage(_STORAGES[name])
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if module == "torch.jit._pickle" and name.startswith(("build_", "restore_type_tag")):
            return _identity
        raise ModelLoadError(f"{self.file}: refused to load {module}.{name} from the TorchScript archive")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ModelLoadError(f"{self.file}: unexpected persistent record in the TorchScript archive")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _Storage) or not isinstance(key, str) or not isinstance(numel, int):
            raise ModelLoadError(f"{self.file}: malformed storage record in the TorchScript archive")
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}/data/{key}")
            except KeyError:
                raise ModelLoadError(f"{self.file}: storage {key} is missing from the archive") from None
            itemsize = torch.empty((), dtype=kind.dtype).element_size()
            if len(raw) < numel * itemsize:
                raise ModelLoadError(f"{self.file}: storage {key} is truncated")
            self.storages[key] = torch.frombuffer(bytearray(raw[: numel * itemsize]), dtype=kind.dtype)
        return self.storages[key]


def _tensors(record: _Record, prefix: str = "") -> dict[str, torch.Tensor]:
    found: dict[str, torch.Tensor] = {}
    for name, value in record.state.items():
        if isinstance(value, torch.Tensor):
            found[prefix + name] = value.clone()
        elif isinstance(value, _Record):
            found.update(_tensors(value, f"{prefix}{name}."))
    return found


def torchscript_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive's module, by their module paths."""
    archive, names = _members(file)
    with archive:
        data = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(data) != 1:
            raise ModelLoadError(f"{file} is not a TorchScript archive (no top-level data.pkl)")
        prefix = data[0].split("/")[0]
        order = f"{prefix}/byteorder"
        if order in names and archive.read(order).strip() not in (b"little", b""):
            raise ModelLoadError(f"{file}: big-endian archives are not supported")
        try:
            root = _TorchScriptUnpickler(archive.read(data[0]), archive, prefix, file).load()
        except ModelLoadError:
            raise
        except Exception as err:  # a malformed pickle can fail in many ways; all mean "cannot load"
            raise ModelLoadError(
                f"{file}: unreadable TorchScript archive: {type(err).__name__}: {err}"
            ) from None
    if not isinstance(root, _Record):
        raise ModelLoadError(f"{file}: the TorchScript archive does not hold a module")
    return _tensors(root)


def _int(value: Any, what: str, file: Path) -> int:
    if isinstance(value, dict) and isinstance(value.get("as_int"), int):
        return value["as_int"]
    raise ModelLoadError(f"{file}: {what} is not a fixed integer in the exported program")


def exported_state_dict(file: Path) -> tuple[dict[str, torch.Tensor], tuple[int, int, int] | None]:
    """The weights of a ``torch.export`` ``.pt2`` archive and the (C, H, W) of its image input (None when
    the program's input is not one fixed-size image batch)."""
    archive, names = _members(file)
    with archive:
        configs = [n for n in names if n.endswith("/data/weights/model_weights_config.json")]
        if len(configs) != 1:
            raise ModelLoadError(f"{file} is not a torch.export archive with one model's weights")
        root = configs[0][: -len("data/weights/model_weights_config.json")]
        try:
            config = json.loads(archive.read(configs[0]))["config"]
            state = {fqn: _exported_weight(archive, root, meta, file) for fqn, meta in config.items()}
        except ModelLoadError:
            raise
        except Exception as err:
            raise ModelLoadError(
                f"{file}: unreadable torch.export weights: {type(err).__name__}: {err}"
            ) from None
        try:
            program = json.loads(archive.read(f"{root}models/model.json"))
        except (KeyError, ValueError):
            return state, None
    return state, _exported_input_size(program)


def _exported_weight(archive: zipfile.ZipFile, root: str, meta: dict[str, Any], file: Path) -> torch.Tensor:
    raw = archive.read(f"{root}data/weights/{meta['path_name']}")
    if meta.get("use_pickle"):
        try:  # PyTorch's restricted unpickler: tensors only, never code
            tensor = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        except Exception as err:
            raise ModelLoadError(f"{file}: a pickled weight is not a plain tensor: {err}") from None
        if not isinstance(tensor, torch.Tensor):
            raise ModelLoadError(f"{file}: a pickled weight is not a tensor")
        return tensor
    tensor_meta = meta["tensor_meta"]
    dtype = _EXPORT_DTYPES.get(tensor_meta["dtype"])
    if dtype is None:
        raise ModelLoadError(f"{file}: weight dtype code {tensor_meta['dtype']} is not supported")
    flat = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    sizes = tuple(_int(v, "a weight size", file) for v in tensor_meta["sizes"])
    strides = tuple(_int(v, "a weight stride", file) for v in tensor_meta["strides"])
    offset = _int(tensor_meta["storage_offset"], "a weight offset", file)
    needed = offset + sum((s - 1) * st for s, st in zip(sizes, strides, strict=True)) + 1 if all(sizes) else 0
    if needed > flat.numel():
        raise ModelLoadError(f"{file}: weight {meta['path_name']} is truncated")
    return flat.as_strided(sizes, strides, offset).clone()


def _exported_input_size(program: dict[str, Any]) -> tuple[int, int, int] | None:
    graph = program.get("graph_module", {})
    specs = graph.get("signature", {}).get("input_specs", [])
    users = [s["user_input"]["arg"] for s in specs if "user_input" in s]
    if len(users) != 1 or "as_tensor" not in users[0]:
        return None
    value = graph.get("graph", {}).get("tensor_values", {}).get(users[0]["as_tensor"]["name"], {})
    sizes = value.get("sizes", [])
    if len(sizes) != 4 or not all(
        isinstance(s, dict) and isinstance(s.get("as_int"), int) for s in sizes[1:]
    ):
        return None
    channels, height, width = (s["as_int"] for s in sizes[1:])
    return (channels, height, width) if channels == 3 else None
