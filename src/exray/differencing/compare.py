"""Judging triggers: :func:`compare_triggers` builds and solves every trigger's M1 and M2 (paper §3.1–3.2,
spec §4.2–4.5) and hands the overlaps and cross-checks to :mod:`exray.differencing.verdict`.

M2's pairs are fixed (V_j with its own stamped copy). M1's pairs of clean V and T images are redrawn every
epoch — the paper's "random order" variant (spec §4.3 [CHOICE]) — because V_j and T_j are unrelated
images; the official script keeps the index pairing. On the tiny zoos the index pairing shrinks M1 by
up to a quarter and helps no model's verdict (docs/results.md).

Many triggers of one model are judged at once: all their M1 and M2 problems are optimised in one stacked
pass (M1 problems shared by triggers of the same V/T pair are solved once). ``layer="auto"`` picks the
layer per model first (:func:`choose_layer`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from exray.differencing.config import MaskConfig, Sides, check_sides
from exray.differencing.masks import check_label, extract, make_cut
from exray.differencing.optimizer import optimize_masks
from exray.differencing.policies import ACCURACY_KEYS, Policy, resolve_policy
from exray.differencing.problem import MaskProblem, MaskResult, mix
from exray.differencing.verdict import Verdict
from exray.errors import InputError
from exray.models.layers import Backend, LayerCut, conv_blocks
from exray.models.runtime import derive_target, model_device
from exray.utils import check_seed, derive_seed


@dataclass
class TriggerCase:
    """One trigger to judge: clean victim images, clean target images and the stamped victim images.

    ``stamped`` is paired row-for-row with ``victim`` when both have the same length. ``target_label=None``
    derives the target from the stamped predictions.
    """

    victim: torch.Tensor
    target: torch.Tensor
    stamped: torch.Tensor
    victim_label: int
    target_label: int | None = None
    kind: str = "patch"

    def __post_init__(self) -> None:
        if self.kind not in ("patch", "filter"):
            raise InputError(f"a trigger's kind must be 'patch' or 'filter', got {self.kind!r:.40}")


#: ``layer`` value that makes :func:`compare_triggers` choose the layer itself (:func:`choose_layer`).
AUTO_LAYER = "auto"


def _fingerprint(images: torch.Tensor) -> str:
    return hashlib.sha1(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


@dataclass
class _Prepared:
    case: TriggerCase
    target: int
    derived: int
    success: float
    f_v: torch.Tensor
    f_t: torch.Tensor
    f_s: torch.Tensor
    m1_key: tuple
    notes: list[str]


def compare_triggers(
    model: nn.Module,
    cases: list[TriggerCase],
    *,
    layer: str | None = None,
    policy: str | Policy = "official",
    sides: Sides = "both",
    config: MaskConfig | None = None,
    seed: int = 0,
    backend: Backend = "auto",
    progress: bool = False,
) -> list[Verdict]:
    """Judge every trigger in ``cases`` (one model); all mask problems are optimised together.

    Triggers of the same victim/target images share one M1; identical triggers (equal stamped images)
    share their M2 too.

    ``sides`` other than ``"both"`` computes one-sided M1 and M2 (the paper's baselines 7 and 8).

    ``layer="auto"`` (beyond the paper) picks the layer per call, without ground truth: among the
    model's convolutional blocks but the last, the one whose clean-pair masks M1 cover the smallest
    median share of the layer (:func:`choose_layer`; the verdicts' notes list every candidate's share).
    """
    check_sides(sides)
    check_seed(seed)
    if not isinstance(cases, list | tuple) or not all(isinstance(c, TriggerCase) for c in cases):
        raise InputError("cases must be a list of TriggerCase")
    if config is not None and not isinstance(config, MaskConfig):
        raise InputError(f"config must be a MaskConfig or None, got {type(config).__name__}")
    if not cases:
        return []
    config = config or MaskConfig()
    start = time.perf_counter()
    device = model_device(model)
    layer_notes: list[str] = []
    solved_m1: dict[tuple, MaskResult] = {}  # M1s already optimised (layer="auto": the chosen layer's)
    if layer == AUTO_LAYER:
        choice = _choose(model, cases, sides, config, seed, backend)
        layer, cut, prepared, solved_m1 = choice.layer, choice.cut, choice.prepared, choice.m1
        listed = ", ".join(f"{name} {share:.0%}" for name, share in choice.shares.items())
        layer_notes.append(f"layer {layer} chosen by auto: median |M1|/C per candidate block {listed}")
    else:
        cut = make_cut(model, layer, cases[0].victim, backend)
        prepared = _prepare_all(cut, cases)

    problems: list[MaskProblem] = []
    m1_index: dict[tuple, int] = {}
    m2_index: list[int] = []
    m2_seen: dict[tuple, int] = {}  # identical triggers (same stamped images) share their M2
    for prep in prepared:
        case = prep.case
        inputs = cut.needs_inputs
        m2_key = (*prep.m1_key, id(prep.f_s))
        if m2_key in m2_seen:
            m2_index.append(m2_seen[m2_key])
            continue
        if prep.m1_key not in m1_index and prep.m1_key not in solved_m1:
            m1_index[prep.m1_key] = len(problems)
            problems.append(_m1_problem(prep, cut, config, sides, seed))
        m2_index.append(len(problems))
        m2_seen[m2_key] = len(problems)
        problems.append(
            MaskProblem(
                a=prep.f_v,
                b=prep.f_s,
                label_a=case.victim_label,
                label_b=prep.target,
                paired=len(case.victim) == len(case.stamped),
                sides=sides,
                seed=derive_seed(seed, "M2", case.victim_label, prep.target),
                inputs_a=case.victim.to(device) if inputs else None,
                inputs_b=case.stamped.to(device) if inputs else None,
            )
        )
    masks = optimize_masks(cut, problems, config, progress=progress)
    elapsed = (time.perf_counter() - start) / len(cases)

    verdicts = []
    for prep, m2_at in zip(prepared, m2_index):
        m1 = solved_m1[prep.m1_key] if prep.m1_key in solved_m1 else masks[m1_index[prep.m1_key]]
        m2 = masks[m2_at]
        accuracy = _cross_accuracies(cut, prep, m1, m2, device)
        notes = list(prep.notes) + layer_notes
        for mask, name in ((m1, "M1"), (m2, "M2")):
            if not mask.feasible:
                notes.append(f"{name} never met its flip constraints; the final mask is reported")
            elif mask.degenerate:
                notes.append(
                    f"{name} is degenerate: no mask smaller than the initial all-ones one kept both flips"
                )
        undecided = Verdict(  # the measurements; natural, overlap, policy and reasons: set by .under
            natural=False,
            victim_label=prep.case.victim_label,
            target_label=prep.target,
            derived_target=prep.derived,
            kind=prep.case.kind,
            m1=m1.values,
            m2=m2.values,
            overlap=(0.0, 0.0),
            cross_accuracy=accuracy,
            policy="",
            reasons=[],
            sides=sides,
            trigger_success=prep.success,
            m1_flip_accuracy=m1.flip_accuracy,
            m2_flip_accuracy=m2.flip_accuracy,
            m1_feasible=m1.feasible,
            m2_feasible=m2.feasible,
            epochs_run=(m1.epochs_run, m2.epochs_run),
            coverage=(m1.coverage, m2.coverage),
            degenerate=(m1.degenerate, m2.degenerate),
            layer=cut.layer,
            seed=seed,
            notes=notes,
            seconds=elapsed,
        )
        verdicts.append(undecided.under(resolve_policy(policy, prep.case.kind)))
    return verdicts


def _prepare_all(cut: LayerCut, cases: list[TriggerCase]) -> list[_Prepared]:
    """Every case's features at ``cut`` (each distinct image set extracted once) and its target."""
    cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def features(images: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = _fingerprint(images)
        if key not in cache:
            cache[key] = extract(cut, images, name)
        return cache[key]

    return [_prepare(case, i, features) for i, case in enumerate(cases)]


def _m1_problem(prep: _Prepared, cut: LayerCut, config: MaskConfig, sides: Sides, seed: int) -> MaskProblem:
    """The clean-pair problem M1 (V vs T) of a prepared case."""
    case, device = prep.case, model_device(cut.model)
    # index pairing (the official script): victim j with target j, the first n of each
    paired = config.m1_pairing == "index"
    n = min(len(case.victim), len(case.target)) if paired else None
    inputs = cut.needs_inputs
    return MaskProblem(
        a=prep.f_v[:n],
        b=prep.f_t[:n],
        label_a=case.victim_label,
        label_b=prep.target,
        paired=paired,
        sides=sides,
        seed=derive_seed(seed, "M1", case.victim_label, prep.target),
        inputs_a=case.victim[:n].to(device) if inputs else None,
        inputs_b=case.target[:n].to(device) if inputs else None,
    )


def choose_layer(
    model: nn.Module,
    cases: list[TriggerCase],
    *,
    sides: Sides = "both",
    config: MaskConfig | None = None,
    seed: int = 0,
    backend: Backend = "auto",
) -> tuple[str, dict[str, float]]:
    """The layer for ``layer="auto"`` and the median |M1|/C of every candidate (beyond the paper).

    EX-RAY's premise needs a layer where the features that separate two clean classes are few: when
    M1 covers most of the channels it contains any trigger's M2 and every trigger looks natural
    (docs/results.md). Without ground truth, the candidates — every convolutional block but the last,
    whose output is already the classes' evidence — are ranked by the median share of the layer that
    the clean-pair masks of ``cases`` need; the smallest wins, ties going to the deeper block.
    """
    choice = _choose(model, cases, sides, config or MaskConfig(), seed, backend)
    return choice.layer, choice.shares


@dataclass
class _LayerChoice:
    """What :func:`choose_layer` computed, kept so that ``compare_triggers(layer="auto")`` reuses the chosen
    layer's cut, features and M1 masks instead of solving its M1 problems a second time."""

    layer: str
    shares: dict[str, float]
    cut: LayerCut
    prepared: list[_Prepared]
    m1: dict[tuple, MaskResult]


def _choose(
    model: nn.Module, cases: list[TriggerCase], sides: Sides, config: MaskConfig, seed: int, backend: Backend
) -> _LayerChoice:
    blocks = conv_blocks(model, cases[0].victim[:1].to(model_device(model)))
    candidates = blocks[:-1] or blocks
    shares: dict[str, float] = {}
    best: _LayerChoice | None = None  # only the best candidate's features and masks are kept
    for name in candidates:
        cut = make_cut(model, name, cases[0].victim, backend)
        prepared = _prepare_all(cut, cases)
        unique: dict[tuple, _Prepared] = {}
        for prep in prepared:
            unique.setdefault(prep.m1_key, prep)
        problems = [_m1_problem(prep, cut, config, sides, seed) for prep in unique.values()]
        masks = optimize_masks(cut, problems, config)
        shares[name] = float(np.median([m.coverage for m in masks]))
        if best is None or shares[name] <= shares[best.layer]:  # ties go to the deeper block
            best = _LayerChoice(name, shares, cut, prepared, dict(zip(unique, masks)))
    assert best is not None  # conv_blocks raises when a model has no block
    return best


def _prepare(case: TriggerCase, index: int, features) -> _Prepared:
    where = f"trigger {index}: "
    if len(case.victim) == 0 or len(case.target) == 0 or len(case.stamped) == 0:
        raise InputError(where + "victim, target and stamped image sets must all be non-empty")
    shapes = {tuple(x.shape[1:]) for x in (case.victim, case.target, case.stamped) if x.ndim == 4}
    if len(shapes) > 1:
        raise InputError(where + f"victim, target and stamped images have different shapes {sorted(shapes)}")
    f_v, logits_v = features(case.victim, "victim images")
    f_t, _ = features(case.target, "target images")
    f_s, logits_s = features(case.stamped, "stamped images")
    if not all(bool(torch.isfinite(x).all()) for x in (f_v, f_t, f_s, logits_v, logits_s)):
        raise InputError(where + "the model's features or logits are not finite (NaN or Inf)")
    num_classes = logits_v.shape[1]
    check_label(case.victim_label, num_classes, "victim_label")
    derived = derive_target(logits_s.argmax(1), case.victim_label)
    notes = []
    target = case.target_label
    if target is None:
        if derived < 0:
            raise InputError(
                where + "the stamped images are all classified as the victim: no target to derive"
            )
        target = derived
    check_label(target, num_classes, "target_label")
    if target == case.victim_label:
        raise InputError(where + "victim and target labels are equal")
    if derived != target:
        notes.append(f"stamped images are mostly classified as {derived}, not the given target {target}")
    success = float((logits_s.argmax(1) == target).float().mean())
    m1_key = (target, id(f_v), id(f_t))
    return _Prepared(case, target, derived, success, f_v, f_t, f_s, m1_key, notes)


def _cross_accuracies(
    cut: LayerCut, prep: _Prepared, m1: MaskResult, m2: MaskResult, device: torch.device
) -> dict[str, float]:
    """Swap M2 onto the V/T pair and M1 onto the V/V+t pair (spec §4.5), on every victim image."""
    v, t = prep.case.victim_label, prep.target
    n = len(prep.f_v)
    idx_t = torch.arange(n) % len(prep.f_t)
    idx_s = torch.arange(n) % len(prep.f_s)
    f_v, f_t, f_s = prep.f_v, prep.f_t[idx_t], prep.f_s[idx_s]
    x_v = prep.case.victim.to(device)
    x_t = prep.case.target.to(device)[idx_t]
    x_s = prep.case.stamped.to(device)[idx_s]
    hooks = cut.needs_inputs

    def accuracy(mask: MaskResult, keep, take, keep_x, label: int) -> float:
        rows = mask.values.to(device).expand(len(keep), -1)
        logits = cut.logits(mix(rows, keep, take), keep_x if hooks else None)
        return float((logits.argmax(1) == label).float().mean())

    values = (
        accuracy(m2, f_v, f_t, x_v, t),  # acc1_1: V takes T's M2-channels → T
        accuracy(m2, f_t, f_v, x_t, v),  # acc1_2: T takes V's M2-channels → V
        accuracy(m1, f_v, f_s, x_v, t),  # acc2_1: V takes (V+t)'s M1-channels → T
        accuracy(m1, f_s, f_v, x_s, v),  # acc2_2: V+t takes V's M1-channels → V
    )
    return dict(zip(ACCURACY_KEYS, values))


def compare_trigger(
    model: nn.Module,
    *,
    victim: torch.Tensor,
    target: torch.Tensor,
    stamped: torch.Tensor,
    victim_label: int,
    target_label: int | None = None,
    layer: str | None = None,
    policy: str | Policy = "official",
    kind: str = "patch",
    sides: Sides = "both",
    config: MaskConfig | None = None,
    seed: int = 0,
    backend: Backend = "auto",
    progress: bool = False,
) -> Verdict:
    """EX-RAY on explicit image sets (design §2): is the trigger that turned ``victim`` into ``stamped``
    natural for the pair (``victim_label``, ``target_label``)? ``kind`` ("patch" or "filter") selects the
    variant of the ``"official"`` policy."""
    case = TriggerCase(victim, target, stamped, victim_label, target_label, kind)
    return compare_triggers(
        model,
        [case],
        layer=layer,
        policy=policy,
        sides=sides,
        config=config,
        seed=seed,
        backend=backend,
        progress=progress,
    )[0]
