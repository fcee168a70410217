"""Unbatched reference of the official EX-RAY mask loop (spec §4.3), one problem at a time.

It mirrors the official script's control flow — ``torch.optim.Adam`` on one mask, a Python loop over
mini-batches of 10, separate forward passes for the two mixing directions, the barrier switched by the
epoch-0 accuracy of the last mini-batch, all 400 epochs — and is kept as an oracle: the tests check that
the batched optimiser (:mod:`exray.differencing.optimizer`) reproduces it, and
``benchmarks/bench_differencing.py`` measures the speed-up against it.
"""

from __future__ import annotations

import math

import torch

from exray.differencing.config import MaskConfig
from exray.differencing.optimizer import MaskProblem, frozen, mix
from exray.models.layers import LayerCut
from exray.utils import torch_generator


def reference_mask(cut: LayerCut, problem: MaskProblem, config: MaskConfig | None = None) -> torch.Tensor:
    """The best feasible mask of one symmetric problem, by the official loop (official loss only)."""
    config = config or MaskConfig()
    if config.loss != "official" or problem.sides != "both":
        raise ValueError("the reference loop implements the official symmetric loss only")
    gen = torch_generator(problem.seed)
    weights = torch.full((1, problem.a.shape[1]), config.init_logit, requires_grad=True)
    optimizer = torch.optim.Adam([weights], lr=config.lr)
    base1 = base2 = 1.0
    best, best_size = torch.tanh(weights.detach()) / 2 + 0.5, math.inf
    va, vb = problem.label_a, problem.label_b
    with frozen(cut.model):
        for epoch in range(config.epochs):
            ia, ib = problem.epoch_pairs(gen)
            for start in range(0, len(ia), config.batch_size):
                a = problem.a[ia[start : start + config.batch_size]]
                b = problem.b[ib[start : start + config.batch_size]]
                mask = torch.tanh(weights) / 2 + 0.5
                rows = mask.expand(len(a), -1)
                logits1 = cut.suffix(mix(rows, a, b))  # victim with the other's masked channels → b
                logits2 = cut.suffix(mix(rows, b, a))  # the other with the victim's channels → a
                acc1 = float((logits1.argmax(1) == vb).float().mean())
                acc2 = float((logits2.argmax(1) == va).float().mean())
                ok1, ok2 = acc1 >= base1 - 1e-6, acc2 >= base2 - 1e-6
                loss = mask.sum()
                if not ok1:
                    loss = loss - config.barrier_weight * (logits1[:, vb] - logits1[:, va]).sum()
                if not ok2:
                    loss = loss - config.barrier_weight * (logits2[:, va] - logits2[:, vb]).sum()
                if epoch > 0:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                last = (acc1, acc2, mask.detach().clone())
            acc1, acc2, mask = last
            if epoch == 0:
                base1, base2 = acc1, acc2
            if acc1 >= base1 - 1e-6 and acc2 >= base2 - 1e-6 and float(mask.sum()) < best_size:
                best, best_size = mask, float(mask.sum())
    return best[0]
