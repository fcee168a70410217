"""The stacked per-task Adam (issue 21 §4): one optimiser for K problems optimised side by side — ABS's and
Neural Cleanse's trigger inversions (:mod:`exray.scanners.inversion`) and EX-RAY's masks
(:mod:`exray.differencing.optimizer`) — as if each had its own ``torch.optim.Adam``."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class StackedAdam:
    """``torch.optim.Adam`` (no weight decay, no AMSGrad) for K problems stacked along the leading dimension
    of every parameter: each problem has its own moments and step count, and :meth:`step` updates only the
    problems ``present`` in it — a problem without a mini-batch in this step keeps its parameters and state,
    exactly as its own optimiser would. Bias corrections are computed in float64, as ``torch.optim.Adam``'s
    Python-float step sizes. The parameters are updated in place."""

    def __init__(
        self,
        params: Mapping[str, torch.Tensor],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if not params:
            raise ValueError("StackedAdam needs at least one parameter")
        self.params = dict(params)
        sizes = {p.shape[0] for p in self.params.values()}
        if len(sizes) != 1:
            raise ValueError(f"every parameter must stack the same number of problems, got {sorted(sizes)}")
        first = next(iter(self.params.values()))
        self.lr, self.betas, self.eps = lr, betas, eps
        self.moments = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in self.params.items()}
        self.steps = torch.zeros(first.shape[0], dtype=torch.long, device=first.device)

    @torch.no_grad()
    def step(self, grads: Mapping[str, torch.Tensor | None], present: torch.Tensor) -> None:
        """One Adam step with ``grads`` (a missing or ``None`` gradient counts as zero) for the problems where
        ``present`` (K bools) is true."""
        b1, b2 = self.betas
        present = present.reshape(-1).to(torch.bool)
        self.steps += present.long()
        t = self.steps.clamp(min=1).to(torch.float64)
        for name, p in self.params.items():
            grad = grads.get(name)
            if grad is None:
                grad = torch.zeros_like(p)
            shape = (-1, *([1] * (p.ndim - 1)))
            here = present.view(shape)
            m, v = self.moments[name]
            m.copy_(torch.where(here, b1 * m + (1 - b1) * grad, m))
            v.copy_(torch.where(here, b2 * v + (1 - b2) * grad * grad, v))
            bias1 = (1 - b1**t).to(p.dtype).view(shape)
            bias2 = (1 - b2**t).to(p.dtype).view(shape)
            update = (self.lr / bias1) * m / (v.sqrt() / bias2.sqrt() + self.eps)
            p.sub_(torch.where(here, update, torch.zeros_like(update)))
