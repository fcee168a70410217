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
from typing import Any, ClassVar

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


#: Largest archive member exray reads (a model's weights are far smaller), and deepest module nesting.
MAX_MEMBER_BYTES, MAX_DEPTH = 2**33, 64


class _Record:
    """A TorchScript object (a module) as the attributes it was pickled with; never runs anything."""

    state: ClassVar[dict[str, Any]] = {}  # a record the pickle never BUILDs has none (never mutated)

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


class _Storage:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


def _view(storage: torch.Tensor, size: Any, stride: Any, offset: int, file: Path) -> torch.Tensor:
    """A view of a 1-D storage, refused when it holds more elements than the storage (a stride-0 view of a
    few bytes would otherwise clone to any size)."""
    view = storage.as_strided(tuple(size), tuple(stride), offset)
    if view.numel() > storage.numel():
        raise ModelLoadError(f"{file}: a tensor is larger than its storage")
    return view


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
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):  # (storage, offset, size, stride, ...)
            return lambda storage, offset, size, stride, *_: _view(storage, size, stride, offset, self.file)
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
            raw = _read(self.archive, f"{self.prefix}/data/{key}", self.file)
            itemsize = torch.empty((), dtype=kind.dtype).element_size()
            if len(raw) < numel * itemsize:
                raise ModelLoadError(f"{self.file}: storage {key} is truncated")
            self.storages[key] = torch.frombuffer(bytearray(raw[: numel * itemsize]), dtype=kind.dtype)
        return self.storages[key]


def _read(archive: zipfile.ZipFile, name: str, file: Path) -> bytes:
    """One archive member, refused when missing or beyond :data:`MAX_MEMBER_BYTES`."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ModelLoadError(f"{file}: {name} is missing from the archive") from None
    if info.file_size > MAX_MEMBER_BYTES:
        raise ModelLoadError(f"{file}: {name} is {info.file_size} bytes, beyond any model's weights")
    return archive.read(info)


def _tensors(
    record: _Record, file: Path, prefix: str = "", seen: frozenset[int] = frozenset()
) -> dict[str, torch.Tensor]:
    """The tensors of a module record by path; a record inside itself, or nesting beyond :data:`MAX_DEPTH`,
    is a malformed archive."""
    if id(record) in seen or len(seen) > MAX_DEPTH:
        raise ModelLoadError(f"{file}: the TorchScript module records nest in a cycle or too deeply")
    found: dict[str, torch.Tensor] = {}
    for name, value in record.state.items():
        if isinstance(value, torch.Tensor):
            found[prefix + name] = value.clone()  # every tensor was checked against its storage (_view)
        elif isinstance(value, _Record):
            found.update(_tensors(value, file, f"{prefix}{name}.", seen | {id(record)}))
    return found


def torchscript_state_dict(file: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive's module, by their module paths."""
    archive, names = _members(file)
    with archive:
        data = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(data) != 1:
            raise ModelLoadError(f"{file} is not a TorchScript archive (no top-level data.pkl)")
        prefix = data[0].split("/")[0]
        try:
            order = f"{prefix}/byteorder"
            if order in names and _read(archive, order, file).strip() not in (b"little", b""):
                raise ModelLoadError(f"{file}: big-endian archives are not supported")
            root = _TorchScriptUnpickler(_read(archive, data[0], file), archive, prefix, file).load()
            if not isinstance(root, _Record):
                raise ModelLoadError(f"{file}: the TorchScript archive does not hold a module")
            return _tensors(root, file)
        except ModelLoadError:
            raise
        except Exception as err:  # a malformed archive can fail in many ways; all mean "cannot load"
            raise ModelLoadError(
                f"{file}: unreadable TorchScript archive: {type(err).__name__}: {err}"
            ) from None


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
            config = json.loads(_read(archive, configs[0], file))["config"]
            state = {fqn: _exported_weight(archive, root, meta, file) for fqn, meta in config.items()}
            program, size = f"{root}models/model.json", None
            if program in names:
                size = _exported_input_size(json.loads(_read(archive, program, file)))
        except ModelLoadError:
            raise
        except Exception as err:  # a malformed archive can fail in many ways; all mean "cannot load"
            raise ModelLoadError(
                f"{file}: unreadable torch.export archive: {type(err).__name__}: {err}"
            ) from None
    return state, size


def _exported_weight(archive: zipfile.ZipFile, root: str, meta: dict[str, Any], file: Path) -> torch.Tensor:
    raw = _read(archive, f"{root}data/weights/{meta['path_name']}", file)
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
    return _view(flat, sizes, strides, offset, file).clone()


def _exported_input_size(program: Any) -> tuple[int, int, int] | None:
    if not isinstance(program, dict) or not isinstance(program.get("graph_module"), dict):
        return None
    graph = program["graph_module"]
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
