"""Neural Cleanse's trigger optimisation (Wang et al., S&P'19; spec §3.1) on the batched inversion loop:
a tanh-parameterised H×W mask and 3×H×W pattern, CE toward the target + cost·Σmask, Adam(0.1, β = (0.5,
0.9)), the reference cost schedule, best-so-far = the smallest mask with attack accuracy ≥ ``success``, and
the early stop. The scanner that builds the tasks is :mod:`exray.scanners.neural_cleanse`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from exray.scanners.inversion import EpochStats, Inversion, InversionTask, StepBatch
from exray.scanners.result import FoundTrigger
from exray.triggers.inverted import MaskPatternTrigger

_KERAS_EPSILON = 1e-7


def _unit(raw: torch.Tensor) -> torch.Tensor:
    return torch.tanh(raw) / (2.0 - _KERAS_EPSILON) + 0.5


def _logit(values: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`_unit` for values in [0, 1] (computed in float64: no infinities)."""
    return torch.atanh((values.double() - 0.5) * (2.0 - _KERAS_EPSILON)).float()


class NCInversion(Inversion):
    """Neural Cleanse's per-target optimisation on the shared loop (spec §3.1)."""

    def __init__(
        self,
        *,
        init_cost: float = 1e-3,
        patience: int = 5,
        cost_multiplier: float = 2.0,
        early_stop_patience: int = 25,
        success: float = 0.99,
        **loop: Any,
    ):
        super().__init__(**loop)
        self.init_cost = init_cost
        self.patience = patience
        self.cost_up = cost_multiplier
        self.cost_down = cost_multiplier**1.5
        self.early_stop_patience = early_stop_patience
        self.success = success

    def init_params(self, tasks: Sequence[InversionTask], generators: list[torch.Generator]) -> dict:
        _, height, width = tasks[0].images.shape[1:]
        mask = torch.stack([torch.rand(1, height, width, generator=g) for g in generators])
        pattern = torch.stack([torch.rand(3, height, width, generator=g) for g in generators])
        return {"mask": _logit(mask), "pattern": _logit(pattern)}

    def stamp(self, params: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        m, p = _unit(params["mask"]), _unit(params["pattern"])
        return (1.0 - m) * images + m * p

    def start(self, tasks: Sequence[InversionTask]) -> None:
        super().start(tasks)
        k = len(tasks)
        self.cost = [0.0] * k
        self.set_counter = [0] * k
        self.up_counter = [0] * k
        self.down_counter = [0] * k
        self.up_flag = [False] * k
        self.down_flag = [False] * k
        self.reg_best = [math.inf] * k
        self.stop_reg_best = [math.inf] * k
        self.stop_counter = [0] * k
        self.acc_best = [0.0] * k
        self.acc_last = [0.0] * k
        self.reg_last = [math.inf] * k

    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        ce = F.cross_entropy(batch.logits, batch.row_target, reduction="none")
        reg = _unit(batch.task_params["mask"]).flatten(1).sum(1)
        cost = torch.tensor(self.cost, dtype=reg.dtype, device=reg.device)
        return batch.per_task_sum(ce) / batch.rows_per_task() + cost * reg, {}

    def end_epoch(self, stats: EpochStats) -> tuple[torch.Tensor, torch.Tensor]:
        k_tasks = len(self.cost)
        regs = _unit(stats.params["mask"]).flatten(1).sum(1).cpu()
        improved = torch.zeros(k_tasks, dtype=torch.bool)
        done = torch.zeros(k_tasks, dtype=torch.bool)
        for k in range(k_tasks):
            if not stats.active[k]:
                continue
            acc = float((stats.rows["pred"][k] == self.targets[k]).float().mean())
            reg = float(regs[k])
            self.acc_last[k], self.reg_last[k] = acc, reg
            if acc >= self.success and reg < self.reg_best[k]:
                improved[k] = True
                self.reg_best[k], self.acc_best[k] = reg, acc
            done[k] = self._early_stop(k)
            self._schedule(k, acc)
        return improved, done

    def _early_stop(self, k: int) -> bool:
        if self.reg_best[k] < math.inf:
            if self.reg_best[k] >= self.stop_reg_best[k]:
                self.stop_counter[k] += 1
            else:
                self.stop_counter[k] = 0
        self.stop_reg_best[k] = min(self.reg_best[k], self.stop_reg_best[k])
        return self.up_flag[k] and self.down_flag[k] and self.stop_counter[k] >= self.early_stop_patience

    def _schedule(self, k: int, acc: float) -> None:
        if self.cost[k] == 0 and acc >= self.success:
            self.set_counter[k] += 1
            if self.set_counter[k] >= self.patience:
                self.cost[k] = self.init_cost
                self.up_counter[k] = self.down_counter[k] = 0
                self.up_flag[k] = self.down_flag[k] = False
        else:
            self.set_counter[k] = 0
        if acc >= self.success:
            self.up_counter[k] += 1
            self.down_counter[k] = 0
        else:
            self.up_counter[k] = 0
            self.down_counter[k] += 1
        if self.up_counter[k] >= self.patience:
            self.up_counter[k] = 0
            self.cost[k] *= self.cost_up
            self.up_flag[k] = True
        elif self.down_counter[k] >= self.patience:
            self.down_counter[k] = 0
            self.cost[k] /= self.cost_down
            self.down_flag[k] = True

    def task_info(self, k: int) -> dict[str, Any]:
        found = self.reg_best[k] < math.inf
        return {
            "found": found,
            "norm": self.reg_best[k] if found else self.reg_last[k],
            "accuracy": self.acc_best[k] if found else self.acc_last[k],
            "final_cost": self.cost[k],
        }

    @staticmethod
    def trigger(params: dict[str, torch.Tensor]) -> MaskPatternTrigger:
        """The soft-mask trigger (Neural Cleanse stamps with the continuous mask)."""
        return MaskPatternTrigger(
            _unit(params["mask"])[0].clamp(0.0, 1.0), _unit(params["pattern"]).clamp(0.0, 1.0), threshold=None
        )


@dataclass(frozen=True)
class PairInversion:
    """Neural Cleanse's trigger for one (victim, target) pair: ``norm`` is its mask's L1 norm (pixels),
    ``asr`` the share of the victim's examples it flips, ``universal`` its rate over every class."""

    victim: int
    target: int
    trigger: MaskPatternTrigger
    norm: float
    asr: float
    universal: float
    per_class_asr: dict[str, float]
    epochs_run: int

    def found(self, **details: Any) -> FoundTrigger:
        """The pair as a scanner finding (kind ``"patch"``)."""
        info = {"norm": self.norm, **details, "per_class_asr": self.per_class_asr}
        return FoundTrigger(
            self.trigger, self.victim, self.target, "patch", self.asr, float(self.trigger.size),
            self.universal, info,
        )  # fmt: skip
