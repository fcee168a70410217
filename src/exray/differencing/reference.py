"""Unbatched reference of the official EX-RAY mask loop (spec §4.3), one problem at a time.

It mirrors the official script's control flow — ``torch.optim.Adam`` on one mask, a Python loop over
mini-batches of 10, separate forward passes for the two mixing directions, the barrier switched by the
epoch-0 accuracy of the last mini-batch, all 400 epochs — and is kept as an oracle: the tests check that
the batched engine (:mod:`exray.differencing.optimizer`) reproduces it, and
``benchmarks/bench_differencing.py`` measures the speed-up against it. Select it with
``MaskConfig(engine="reference")``.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from exray.differencing.config import MaskConfig
from exray.differencing.problem import MaskProblem, MaskResult, make_result, mix
from exray.models.layers import LayerCut
from exray.models.runtime import frozen
from exray.utils import torch_generator


def reference_masks(
    cut: LayerCut, problems: list[MaskProblem], config: MaskConfig, *, progress: bool = False
) -> list[MaskResult]:
    """Solve ``problems`` one after the other with :func:`reference_mask`."""
    return [
        reference_mask(cut, p, config)
        for p in tqdm(problems, desc="masks", disable=not progress, leave=False)
    ]


def reference_mask(cut: LayerCut, problem: MaskProblem, config: MaskConfig) -> MaskResult:
    """The best feasible mask of one problem by the official loop (either side may be disabled)."""
    gen = torch_generator(problem.seed)
    weights = torch.full((1, problem.a.shape[1]), config.init_logit, requires_grad=True)
    optimizer = torch.optim.Adam([weights], lr=config.lr)
    use1, use2 = problem.sides in ("both", "a_to_b"), problem.sides in ("both", "b_to_a")
    base1 = base2 = 1.0
    best, best_size, best_epoch = None, math.inf, -1
    history = []
    va, vb = problem.label_a, problem.label_b
    with frozen(cut.model):
        for epoch in range(config.epochs):
            ia, ib = problem.epoch_pairs(gen)
            for start in range(0, len(ia), config.batch_size):
                rows_a, rows_b = ia[start : start + config.batch_size], ib[start : start + config.batch_size]
                a, b = problem.a[rows_a], problem.b[rows_b]
                mask = torch.tanh(weights) / 2 + 0.5
                rows = mask.expand(len(a), -1)
                loss = mask.sum()
                acc1 = acc2 = 1.0
                if use1:  # a with b's masked channels → class b
                    base = None if problem.inputs_a is None else problem.inputs_a[rows_a]
                    logits1 = cut.suffix(mix(rows, a, b), base)
                    acc1 = float((logits1.argmax(1) == vb).float().mean())
                    if acc1 < base1 - 1e-6:
                        loss = loss - config.barrier_weight * (logits1[:, vb] - logits1[:, va]).sum()
                if use2:  # b with a's masked channels → class a
                    base = None if problem.inputs_b is None else problem.inputs_b[rows_b]
                    logits2 = cut.suffix(mix(rows, b, a), base)
                    acc2 = float((logits2.argmax(1) == va).float().mean())
                    if acc2 < base2 - 1e-6:
                        loss = loss - config.barrier_weight * (logits2[:, va] - logits2[:, vb]).sum()
                if epoch > 0:
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                last = (acc1, acc2, mask.detach()[0].clone())
            acc1, acc2, mask = last
            if epoch == 0:
                base1, base2 = acc1, acc2
            size = float(mask.sum())
            history.append(size)
            if acc1 >= base1 - 1e-6 and acc2 >= base2 - 1e-6 and size < best_size:
                best, best_size, best_epoch = mask, size, epoch
    feasible = best is not None
    values = best if feasible else (torch.tanh(weights.detach()) / 2 + 0.5)[0]
    return make_result(cut, problem, values, feasible, torch.tensor(history), best_epoch)
