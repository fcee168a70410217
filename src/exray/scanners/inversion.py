"""The trigger-inversion loop shared by every scanner (design §1, §5: TrojanZoo-style template method).

:class:`Inversion` owns the loop; a scanner subclasses it and supplies only

* the parameterisation — :meth:`Inversion.init_params` and :meth:`Inversion.stamp`;
* the loss — :meth:`Inversion.loss` (and, if it needs inner activations, :meth:`Inversion.forward`);
* the per-epoch bookkeeping and stopping rule — :meth:`Inversion.end_epoch`, which updates labels or
  costs, says which tasks improved their best-so-far and which are done.

The loop optimises K candidate triggers ("tasks") at once. Every task has its own images, target, random
stream (input jitter) and Adam state; each step stacks the current chunk of every active task into one
forward/backward pass. Since the model is frozen in eval mode, rows never interact, so the result equals
optimising each task alone (``tests/scanners/test_inversion_loop.py`` checks this).

Epoch e evaluates the parameters θ_e the epoch starts with (the predictions of its forward passes are the
ones the label update and the best-so-far use); steps are taken from epoch ``step_from`` on, and not in
the last epoch, whose update nobody would evaluate. The best-so-far snapshot is θ_e of the best epoch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from exray.data.images import check_images
from exray.errors import InputError
from exray.models.runtime import frozen, model_device
from exray.optim import StackedAdam
from exray.options import check_int, check_real
from exray.utils import torch_generator


@dataclass
class InversionTask:
    """One candidate trigger to invert.

    ``images``: the task's images (N, 3, H, W) in [0, 1] (the victim class, or several classes for a
    universal trigger). ``target``: the initial target label. ``victim``: −1 for a universal task.
    ``neuron``: a channel at the scanner's layer (ABS), −1 if unused. ``seed``: the task's random stream.
    """

    images: torch.Tensor
    target: int
    victim: int = -1
    neuron: int = -1
    seed: int = 0


@dataclass
class StepBatch:
    """One stacked step: rows of several tasks, ``row_task[r]`` = the task index of row r.

    ``params``: the raw parameters gathered per row; ``task_params``: the same stacked per task (K, ...),
    for per-task terms such as a size penalty. Both carry gradients when the loop steps.
    """

    clean: torch.Tensor
    stamped: torch.Tensor
    logits: torch.Tensor
    extras: dict[str, torch.Tensor | None]
    row_task: torch.Tensor
    row_target: torch.Tensor
    params: dict[str, torch.Tensor]
    task_params: dict[str, torch.Tensor]
    num_tasks: int

    def per_task_sum(self, values: torch.Tensor) -> torch.Tensor:
        """Sum of per-row ``values`` for each task, shape (K,)."""
        out = torch.zeros(self.num_tasks, dtype=values.dtype, device=values.device)
        return out.index_add(0, self.row_task, values)

    def rows_per_task(self) -> torch.Tensor:
        """Number of rows of each task in this step (K,), at least 1 to be a safe divisor."""
        ones = torch.ones_like(self.row_task, dtype=self.logits.dtype)
        return self.per_task_sum(ones).clamp(min=1.0)


@dataclass
class EpochStats:
    """What one epoch saw, for :meth:`Inversion.end_epoch`.

    ``active``: tasks that ran this epoch. ``rows[name][k]``: the per-row values named ``name`` of task k
    concatenated over the epoch (always including ``"pred"``, the predicted labels). ``params``: θ_e, the
    parameters the epoch evaluated (stacked over all K tasks).
    """

    epoch: int
    active: torch.Tensor
    rows: dict[str, list[torch.Tensor | None]]
    params: dict[str, torch.Tensor]


@dataclass
class InversionOutcome:
    """A task's result: parameters of its best epoch (or the last evaluated ones if none was ever best)."""

    params: dict[str, torch.Tensor]
    best_epoch: int
    epochs_run: int
    info: dict[str, Any] = field(default_factory=dict)


class Inversion(ABC):
    """Template-method trigger inversion over many tasks at once (see the module docstring).

    ``epochs``: maximum epochs. ``batch_size``: rows of one task per step (a task's images are split into
    chunks in a fixed order). ``lr``/``betas``/``eps``: Adam, per task. ``jitter``: uniform noise in
    [−jitter, jitter] added to the images every step, then clamped to [0, 1] (ABS, spec §2.5).
    ``step_from``: first epoch with gradient steps (ABS evaluates epoch 0 only).
    """

    def __init__(
        self,
        *,
        epochs: int,
        batch_size: int,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        jitter: float = 0.0,
        step_from: int = 0,
        progress_label: str = "inversion",
    ):
        check_int("epochs", epochs)
        check_int("batch_size", batch_size)
        check_real("lr", lr, 0.0, low_open=True)
        check_real("eps", eps, 0.0, low_open=True)
        for beta in betas:
            check_real("Adam's betas", beta, 0.0, 1.0, high_open=True)
        check_real("jitter", jitter, 0.0, 1.0, high_open=True)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.betas = betas
        self.eps = eps
        self.jitter = jitter
        self.step_from = step_from
        self.progress_label = progress_label

    # ----------------------------------------------------------------------------------- the hooks
    @abstractmethod
    def init_params(self, tasks: Sequence[InversionTask], generators: list[torch.Generator]) -> dict:
        """Initial raw parameters, each stacked over tasks: ``{name: Tensor[K, ...]}`` (on the CPU)."""

    @abstractmethod
    def stamp(self, params: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """Stamped images; ``params`` are already gathered per row (``Tensor[R, ...]``)."""

    @abstractmethod
    def loss(self, batch: StepBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-task losses (K,) of one step, and per-row values (R,) to collect for :meth:`end_epoch`."""

    @abstractmethod
    def end_epoch(self, stats: EpochStats) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-epoch bookkeeping of the active tasks: returns (improved, done), bool tensors (K,).

        ``improved[k]``: θ_e becomes task k's best-so-far. ``done[k]``: stop optimising task k.
        """

    def start(self, tasks: Sequence[InversionTask]) -> None:
        """Set up per-task state before the first epoch (targets, counters, costs)."""
        self.targets = torch.tensor([t.target for t in tasks], dtype=torch.long)

    def forward(self, model: nn.Module, stamped: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Logits of the stamped rows, plus any inner activations :meth:`loss` needs."""
        return model(stamped), {}

    def task_info(self, k: int) -> dict[str, Any]:
        """Extra results of task k for its :class:`InversionOutcome` (final label, accuracy, …)."""
        return {}

    # ----------------------------------------------------------------------------------- the loop
    def run_in_chunks(
        self, model: nn.Module, tasks: Sequence[InversionTask], per_run: int, *, progress: bool = False
    ) -> list[InversionOutcome]:
        """:meth:`run` on consecutive chunks of at most ``per_run`` tasks (bounds one run's memory)."""
        outcomes: list[InversionOutcome] = []
        for start in range(0, len(tasks), per_run):
            outcomes.extend(self.run(model, tasks[start : start + per_run], progress=progress))
        return outcomes

    def run(
        self, model: nn.Module, tasks: Sequence[InversionTask], *, progress: bool = False
    ) -> list[InversionOutcome]:
        """Optimise all ``tasks`` together; one :class:`InversionOutcome` per task, in order."""
        if not tasks:
            return []
        shape = tasks[0].images.shape[1:]
        for task in tasks:
            check_images(task.images, "task images")
            if task.images.shape[1:] != shape:
                raise InputError("all inversion tasks must have images of one shape")
        device = model_device(model)
        k_tasks = len(tasks)
        generators = [torch_generator(task.seed) for task in tasks]
        params = {n: p.to(device) for n, p in self.init_params(tasks, generators).items()}
        adam = StackedAdam(params, self.lr, self.betas, self.eps)
        best = {n: p.clone() for n, p in params.items()}
        last = {n: p.clone() for n, p in params.items()}
        best_epoch = torch.full((k_tasks,), -1, dtype=torch.long)
        epochs_run = torch.zeros(k_tasks, dtype=torch.long)
        done = torch.zeros(k_tasks, dtype=torch.bool)
        images = [task.images.to(device) for task in tasks]
        self.start(tasks)

        with frozen(model):
            for epoch in tqdm(
                range(self.epochs), desc=self.progress_label, disable=not progress, leave=False
            ):
                active = ~done
                if not active.any():
                    break
                theta = {n: p.detach().clone() for n, p in params.items()}
                stepping = self.step_from <= epoch < self.epochs - 1
                rows: dict[str, list[list[torch.Tensor]]] = {}
                chunks = max(-(-len(images[k]) // self.batch_size) for k in range(k_tasks) if active[k])
                for j in range(chunks):
                    members = [
                        k for k in range(k_tasks) if active[k] and len(images[k]) > j * self.batch_size
                    ]
                    per_row = self._step(model, params, adam, images, generators, members, j, stepping)
                    for name, values in per_row.items():
                        slot = rows.setdefault(name, [[] for _ in range(k_tasks)])
                        for k, v in values.items():
                            slot[k].append(v)
                stats = EpochStats(
                    epoch=epoch,
                    active=active,
                    rows={
                        name: [torch.cat(v) if v else None for v in per_task]
                        for name, per_task in rows.items()
                    },
                    params=theta,
                )
                improved, finished = self.end_epoch(stats)
                improved = improved.cpu() & active
                for name in params:
                    sel = active.to(device)
                    last[name][sel] = theta[name][sel]
                    best[name][improved.to(device)] = theta[name][improved.to(device)]
                best_epoch[improved] = epoch
                epochs_run[active] = epoch + 1
                done |= finished.cpu() & active

        outcomes = []
        for k in range(k_tasks):
            source = best if best_epoch[k] >= 0 else last
            outcomes.append(
                InversionOutcome(
                    params={n: source[n][k].detach().cpu() for n in params},
                    best_epoch=int(best_epoch[k]),
                    epochs_run=int(epochs_run[k]),
                    info=self.task_info(k),
                )
            )
        return outcomes

    def _step(
        self,
        model: nn.Module,
        params: dict[str, torch.Tensor],
        adam: StackedAdam,
        images: list[torch.Tensor],
        generators: list[torch.Generator],
        members: list[int],
        chunk: int,
        stepping: bool,
    ) -> dict[str, dict[int, torch.Tensor]]:
        """One stacked forward (and, if ``stepping``, backward + Adam) over chunk ``chunk`` of ``members``."""
        start, stop = chunk * self.batch_size, (chunk + 1) * self.batch_size
        parts, owners = [], []
        for k in members:
            part = images[k][start:stop]
            if self.jitter > 0:
                noise = (torch.rand(part.shape, generator=generators[k]) * 2.0 - 1.0) * self.jitter
                part = (part + noise.to(part.device, part.dtype)).clamp(0.0, 1.0)
            parts.append(part)
            owners.append(torch.full((len(part),), k, dtype=torch.long))
        clean = torch.cat(parts)
        row_task = torch.cat(owners).to(clean.device)
        leaves = {n: p.detach().requires_grad_(stepping) for n, p in params.items()}
        with torch.set_grad_enabled(stepping):
            gathered = {n: p[row_task] for n, p in leaves.items()}
            stamped = self.stamp(gathered, clean)
            logits, extras = self.forward(model, stamped)
            batch = StepBatch(
                clean=clean,
                stamped=stamped,
                logits=logits,
                extras=extras,
                row_task=row_task,
                row_target=self.targets.to(clean.device)[row_task],
                params=gathered,
                task_params=leaves,
                num_tasks=len(params[next(iter(params))]),
            )
            losses, per_row = self.loss(batch)
            if stepping:
                present = torch.zeros(batch.num_tasks, dtype=torch.bool, device=clean.device)
                present[members] = True
                grads = torch.autograd.grad(
                    (losses * present).sum(), list(leaves.values()), allow_unused=True
                )
                adam.step(dict(zip(leaves, grads)), present)
        per_row = {"pred": logits.argmax(1), **per_row}
        out: dict[str, dict[int, torch.Tensor]] = {}
        for name, values in per_row.items():
            values = values.detach()
            out[name] = {k: values[row_task == k].cpu() for k in members}
        return out
