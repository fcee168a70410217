"""ABS steps A–C: activation profiling and label prior, neuron stimulation, candidate selection (spec
§2.2–2.4, TrojAI PyTorch flavour)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from exray.models.layers import LayerCut, capture
from exray.scanners.common import Examples

_FEATURE_BUDGET = 1 << 24  # floats of stimulated feature maps built at once (64 MB)


@dataclass
class Profile:
    """Step A (spec §2.2). ``max_activation[c]``: the largest activation at the layer over class c's
    images. ``runner_ups[c]``: how often each label is among the 2nd–4th highest logits of a class-c image.
    ``label_prior[c]``: the up to ``prior_labels`` most frequent of those, kept if they occur for more than
    ``prior_threshold`` of the class's images."""

    max_activation: dict[int, float]
    global_max: float
    runner_ups: dict[int, dict[int, int]]
    label_prior: dict[int, list[int]]

    def to_dict(self) -> dict:
        return {
            "max_activation": {str(k): v for k, v in self.max_activation.items()},
            "global_max": self.global_max,
            "label_prior": {str(k): v for k, v in self.label_prior.items()},
        }


def profile(
    model: nn.Module,
    data: Examples,
    layer: str,
    *,
    prior_labels: int = 3,
    prior_threshold: float = 0.8,
    batch_size: int = 128,
) -> Profile:
    """Per-class maximum activation at ``layer`` and the label prior (spec §2.2)."""
    max_activation: dict[int, float] = {}
    runner_ups: dict[int, dict[int, int]] = {}
    label_prior: dict[int, list[int]] = {}
    for c in data.classes:
        images = data.by_class[c]
        peaks, logits = [], []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                with capture(model, [layer]) as seen:
                    logits.append(model(images[start : start + batch_size]))
                peaks.append(seen[layer].flatten(1).amax(1))
        max_activation[c] = float(torch.cat(peaks).max())
        ranked = torch.cat(logits).argsort(dim=1, descending=True)[:, 1:4]
        counts = Counter(ranked.flatten().tolist())
        runner_ups[c] = dict(sorted(counts.items()))
        label_prior[c] = [
            label
            for label, count in counts.most_common(prior_labels)
            if count / len(images) > prior_threshold
        ]
    return Profile(max_activation, max(max_activation.values()), runner_ups, label_prior)


def stimulation_levels(levels: int) -> list[float]:
    """Multiples of a class's maximum activation: 0, then 2⁰, 2¹, … (spec §2.3: 0, 1, 2 for 3 levels)."""
    return [0.0] + [2.0 ** (i - 1) for i in range(1, levels)]


def stimulate(
    cut: LayerCut,
    images: torch.Tensor,
    labels: torch.Tensor,
    max_activation: dict[int, float],
    *,
    levels: int = 3,
    channels_per_pass: int = 32,
    progress: bool = False,
) -> torch.Tensor:
    """Step B (spec §2.3): logits when one channel's whole map is set to each stimulation level.

    Returns P of shape (N images, C channels, levels, num_classes); level l sets the channel to
    ``stimulation_levels(levels)[l]`` × the maximum activation of the image's class.
    """
    feats = cut.features(images)
    n, channels = feats.shape[:2]
    scale = torch.tensor([max_activation[int(y)] for y in labels], dtype=feats.dtype, device=feats.device)
    values = scale[:, None] * torch.tensor(stimulation_levels(levels), dtype=feats.dtype, device=feats.device)
    per_channel = n * levels * feats[0].numel()
    block = max(1, min(channels_per_pass, _FEATURE_BUDGET // per_channel))
    out = []
    for c0 in tqdm(range(0, channels, block), desc="stimulation", disable=not progress, leave=False):
        width = min(block, channels - c0)
        rows = feats[:, None, None].expand(n, width, levels, *feats.shape[1:]).clone()
        for j in range(width):
            rows[:, j, :, c0 + j] = values[:, :, None, None]
        rows = rows.reshape(-1, *feats.shape[1:])
        inputs = None
        if cut.needs_inputs:
            inputs = (
                images[:, None].expand(n, width * levels, *images.shape[1:]).reshape(-1, *images.shape[1:])
            )
        out.append(cut.logits(rows, inputs).reshape(n, width, levels, -1))
    return torch.cat(out, dim=1)


@dataclass
class Candidate:
    """A (victim, neuron, target) task: ``value`` = the neuron's smallest elevation margin over the victim's
    images; ``in_prior``: the target is in the victim's label prior."""

    victim: int
    neuron: int
    target: int
    value: float
    in_prior: bool

    def to_dict(self) -> dict:
        return asdict(self)


def select_candidates(
    stimulated: torch.Tensor,
    labels: torch.Tensor,
    label_prior: dict[int, list[int]],
    *,
    top_n_neurons: int = 3,
    max_neurons_per_target: int = 1,
) -> dict[int, list[Candidate]]:
    """Step C (spec §2.4): the top (neuron, target) candidates of every victim class.

    For each image and neuron: the label whose logit the stimulation raises most (over levels ≥ 1, relative
    to level 0) and its margin over the runner-up. A neuron is a candidate for victim b if it elevates the
    same label m ≠ b on *all* of b's stimulated images; its value is the smallest margin. Candidates are
    sorted by value, at most ``max_neurons_per_target`` per target, prior targets first (stable), and the
    first ``top_n_neurons`` kept.
    """
    elevation = stimulated[:, :, 1:, :].amax(2) - stimulated[:, :, 0, :]  # (N, C, K)
    top = elevation.topk(2, dim=-1)
    elevated = top.indices[..., 0]
    margin = top.values[..., 0] - top.values[..., 1]
    result: dict[int, list[Candidate]] = {}
    for b in sorted(set(labels.tolist())):
        rows = (labels == b).nonzero().flatten()
        ml = elevated[rows]  # (n_b, C)
        agree = (ml == ml[0]).all(0) & (ml[0] != b)
        value = margin[rows].amin(0)
        order = sorted((int(k) for k in agree.nonzero().flatten()), key=lambda k: (-float(value[k]), k))
        per_target: Counter[int] = Counter()
        ranked = []
        for k in order:
            target = int(ml[0, k])
            if per_target[target] >= max_neurons_per_target:
                continue
            per_target[target] += 1
            prior = target in label_prior.get(b, [])
            ranked.append(Candidate(b, k, target, float(value[k]), prior))
        ranked.sort(key=lambda cand: not cand.in_prior)  # stable: prior targets first
        result[b] = ranked[:top_n_neurons]
    return result
