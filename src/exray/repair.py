"""Repair by unlearning (issue 19 §3; Neural Cleanse's mitigation, Wang et al. S&P'19 §VI-C; EX-RAY §4.6).

The model is fine-tuned on its clean examples plus victim examples stamped with the scanner's triggers *at
their true labels*, so that it learns to ignore the triggers. Only injected triggers are unlearned by
default: EX-RAY judges a natural trigger to use the features that tell the two classes apart, and
unlearning those costs clean accuracy (EX-RAY §4.6, Table 8) — :func:`repair_model` refuses them unless
``include_natural``.

A model directory holds few clean examples per class, so each class's examples are split (seeded) into a
tuning half and a held-out half: clean accuracy and the triggers' ASR are measured on the held-out half
before and after every epoch. Fine-tuning keeps the model in eval mode (BatchNorm statistics and dropout
as trained: a batch of a few images would overwrite the running statistics) and stops when every trigger's
held-out ASR is at most ``target_asr``, when the epochs run out, or when clean accuracy fell more than
``max_accuracy_drop`` below the original — then the previous epoch's weights are restored.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from exray.data.examples import EXAMPLE_DIRS, list_examples
from exray.errors import InputError
from exray.files import read_results
from exray.models.io import model_info, save_model
from exray.models.runtime import model_device, predict_labels
from exray.options import Options
from exray.pipeline.loading import load_scan_inputs
from exray.scanners.result import FoundTrigger
from exray.utils import derive_seed, torch_generator, versions


@dataclass(frozen=True)
class RepairConfig(Options):
    """``epochs`` (50): passes over the tuning set at most (a few batches each: the examples are few).
    ``lr`` (1e-3, Adam) and ``batch_size`` (32). ``max_accuracy_drop`` (0.02): the clean-accuracy budget
    on the held-out examples. ``target_asr`` (0.1): stop once every trigger's held-out ASR is at most this.
    ``holdout`` (0.5): share of each class's examples kept aside for the measurements. ``stamped_copies``
    (2): stamped copies of each tuning victim image per trigger (NC's mitigation stamps a fifth of a large
    training set; here the clean set is small)."""

    epochs: int = 50
    lr: float = 1e-3
    batch_size: int = 32
    max_accuracy_drop: float = 0.02
    target_asr: float = 0.1
    holdout: float = 0.5
    stamped_copies: int = 2

    def __post_init__(self) -> None:
        self._positive_int("epochs", "batch_size", "stamped_copies")
        self._positive("lr")
        self._fraction("max_accuracy_drop", "target_asr")
        self._fraction("holdout", closed=False)


@dataclass
class RepairResult:
    """What :func:`repair_model` did: per unlearned trigger its held-out ASR before and after, the held-out
    clean accuracy before and after, the epochs kept, why it stopped, and the triggers it refused."""

    unlearned: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    accuracy_before: float
    accuracy_after: float
    epochs: int
    stopped: str
    seed: int
    config: RepairConfig
    history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "unlearned": self.unlearned,
            "refused": self.refused,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "epochs": self.epochs,
            "stopped": self.stopped,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "history": self.history,
        }


def split_examples(
    examples: Mapping[int, torch.Tensor], holdout: float, seed: int
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """(tuning, held-out) examples per class: ``holdout`` of each class's examples (seeded; at least one on
    each side) are held out for the measurements."""
    tune, held = {}, {}
    for label, images in examples.items():
        if len(images) < 2:
            raise InputError(f"class {label} has {len(images)} example(s); repair needs at least 2 per class")
        order = torch.randperm(len(images), generator=torch_generator(derive_seed(seed, "split", label)))
        cut = min(len(images) - 1, max(1, round(len(images) * holdout)))
        held[label], tune[label] = images[order[:cut]], images[order[cut:]]
    return tune, held


def _victims(found: FoundTrigger, images: Mapping[int, torch.Tensor]) -> list[int]:
    return [found.victim] if found.victim in images else [c for c in images if c != found.target]


def held_out_accuracy(model: nn.Module, images: Mapping[int, torch.Tensor]) -> float:
    """Clean accuracy on examples ``{label: images}``."""
    x = torch.cat(list(images.values()))
    y = torch.cat([torch.full((len(v),), k, device=x.device) for k, v in images.items()])
    return float((predict_labels(model, x) == y).float().mean())


def _asr(model: nn.Module, found: FoundTrigger, images: Mapping[int, torch.Tensor]) -> float:
    x = torch.cat([images[c] for c in _victims(found, images)])
    return float((predict_labels(model, found.stamp(x)) == found.target).float().mean())


@contextmanager
def tuning(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode (BatchNorm statistics and dropout stay as trained: module docstring) with every
    weight trainable; its mode and flags are restored afterwards."""
    was_training, flags = model.training, [p.requires_grad for p in model.parameters()]
    model.eval()
    model.requires_grad_(True)
    try:
        yield model
    finally:
        model.train(was_training)
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def tuning_epochs(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, config: RepairConfig, seed: int
) -> Iterator[int]:
    """The repair's fine-tuning (Adam at ``config.lr``, mini-batches of ``config.batch_size`` in a seeded
    order) of ``model`` on ``(x, y)``, yielding after each of at most ``config.epochs`` epochs (1, 2, …): the
    caller measures, and stops by leaving the loop. Run it inside :func:`tuning`."""
    device = model_device(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch_generator(derive_seed(seed, "repair"))
    for epoch in range(config.epochs):
        for rows in torch.randperm(len(x), generator=generator).split(config.batch_size):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[rows.to(device)]), y[rows.to(device)]).backward()
            optimizer.step()
        yield epoch + 1


def repair_model(
    model: nn.Module,
    examples: Mapping[int, torch.Tensor],
    triggers: Sequence[FoundTrigger],
    *,
    natural: Sequence[bool] | None = None,
    include_natural: bool = False,
    config: RepairConfig | None = None,
    seed: int = 0,
) -> RepairResult:
    """Unlearn ``triggers`` from ``model`` in place (module docstring). ``natural[i]``: EX-RAY judged
    trigger i natural; such triggers are refused unless ``include_natural``."""
    config = config or RepairConfig()
    natural = list(natural) if natural is not None else [False] * len(triggers)
    if len(natural) != len(triggers):
        raise InputError("natural must have one flag per trigger")
    if not triggers:
        raise InputError("no trigger to unlearn")
    unlearn = [i for i, n in enumerate(natural) if include_natural or not n]
    chosen = [triggers[i] for i in unlearn]
    refused = [
        {"victim": t.victim, "target": t.target, "kind": t.kind, "reason": "judged natural by EX-RAY"}
        for i, t in enumerate(triggers)
        if i not in unlearn
    ]
    if not chosen:
        raise InputError("every trigger was judged natural: nothing to unlearn (include_natural to force)")
    device = model_device(model)
    tune, held = split_examples({k: v.to(device) for k, v in examples.items()}, config.holdout, seed)
    images = [torch.cat(list(tune.values()))]
    labels = [torch.cat([torch.full((len(v),), k, device=device) for k, v in tune.items()])]
    for found in chosen:
        for victim in _victims(found, tune):
            stamped = found.stamp(tune[victim].repeat(config.stamped_copies, 1, 1, 1))
            images.append(stamped.to(device))
            labels.append(torch.full((len(stamped),), victim, device=device))
    x, y = torch.cat(images).detach(), torch.cat(labels)

    before = held_out_accuracy(model, held)
    asr_before = [_asr(model, t, held) for t in chosen]
    history, kept, stopped = [], copy.deepcopy(model.state_dict()), "epochs"
    epochs = 0
    with tuning(model):
        for epoch in tuning_epochs(model, x, y, config, seed):
            accuracy = held_out_accuracy(model, held)
            asrs = [_asr(model, t, held) for t in chosen]
            history.append({"epoch": epoch, "accuracy": accuracy, "asr": asrs})
            if before - accuracy > config.max_accuracy_drop:
                model.load_state_dict(kept)
                stopped = "accuracy budget"
                break
            kept, epochs = copy.deepcopy(model.state_dict()), epoch
            if max(asrs) <= config.target_asr:
                stopped = "unlearned"
                break
    asr_after = [_asr(model, t, held) for t in chosen]
    unlearned = [
        {
            "victim": t.victim,
            "target": t.target,
            "kind": t.kind,
            "size": t.size,
            "asr_before": a,
            "asr_after": b,
            "natural": bool(n),
        }
        for t, a, b, n in zip(chosen, asr_before, asr_after, [natural[i] for i in unlearn], strict=True)
    ]
    return RepairResult(
        unlearned, refused, before, held_out_accuracy(model, held), epochs, stopped, seed, config, history
    )


#: Keys of a results record's trigger that rebuild the scanner's :class:`FoundTrigger`.
_FOUND_KEYS = ("trigger", "victim", "target", "kind", "asr", "size", "universal_asr", "details")


def triggers_of(results: str | Path, model_dir: str | Path) -> tuple[list[FoundTrigger], list[bool]]:
    """The triggers an ``exray scan`` results file holds for ``model_dir``, and whether EX-RAY judged each
    natural (``pruned``). The model is found by the path it was scanned as, or the same resolved path."""
    records = read_results(results)
    wanted = Path(model_dir).resolve()
    record = records.get(str(model_dir)) or next(
        (r for key, r in records.items() if Path(key).resolve() == wanted), None
    )
    if record is None:
        raise InputError(f"{results} holds no record of {model_dir} (scan it first with exray scan)")
    if record.get("error"):
        raise InputError(f"{results}: the scan of {model_dir} failed ({record['error'].split(' | ')[0]})")
    found = [FoundTrigger.from_dict({k: t[k] for k in _FOUND_KEYS}) for t in record.get("triggers", [])]
    return found, [bool(t.get("pruned")) for t in record.get("triggers", [])]


def repair_directory(
    model_dir: str | Path,
    results: str | Path,
    out: str | Path,
    *,
    include_natural: bool = False,
    config: RepairConfig | None = None,
    seed: int = 0,
    device: str = "auto",
    trust_pickle: bool = False,
) -> RepairResult:
    """``exray repair``: unlearn the triggers ``results`` holds for ``model_dir`` and write the repaired model
    as a model directory ``out`` (safetensors; its config.json records the repair, and the clean examples
    are copied)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out} exists and is not empty: repair writes a new model directory")
    model, examples = load_scan_inputs(model_dir, trust_pickle=trust_pickle, device=device)
    if getattr(model, "exray_arch", None) is None:
        raise InputError(
            f"{model_dir}: repair writes safetensors beside a config.json naming the architecture, and this "
            "model came from a whole pickle of no registry architecture"
        )
    found, natural = triggers_of(results, model_dir)
    result = repair_model(
        model, examples, found, natural=natural, include_natural=include_natural, config=config, seed=seed
    )
    info = model_info(model)
    source = info.config if info else {}
    metadata = {  # the source's ground truth no longer describes the repaired model: kept apart
        **{k: source[k] for k in ("normalization",) if k in source},  # what loading it depends on
        "repair": {**result.to_dict(), "versions": versions()},
        "repaired_from": {"path": str(model_dir), "config": source},
    }
    size = info.input_size if info and info.input_size else tuple(next(iter(examples.values())).shape[1:])
    save_model(model.cpu(), out, input_size=tuple(size), metadata=metadata)
    _copy_examples(model_dir, out / EXAMPLE_DIRS[0])
    return result


def _copy_examples(model_dir: str | Path, folder: Path) -> None:
    """The source's example images (and their label sidecars), only them, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for paths in list_examples(model_dir).values():
        for image in paths:
            shutil.copy2(image, folder / image.name)
            sidecar = image.with_suffix(".json")
            if sidecar.is_file():
                shutil.copy2(sidecar, folder / sidecar.name)
