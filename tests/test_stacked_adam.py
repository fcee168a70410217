"""The stacked per-task Adam (issue 21 §4, exray.optim): K problems side by side behave as K torch.optim.Adam
optimisers, each stepping only when its problem is present — the optimiser of the trigger inversions and of
EX-RAY's masks."""

import pytest
import torch

from exray.optim import StackedAdam


def test_each_stacked_problem_follows_its_own_torch_adam_and_skips_the_steps_it_is_absent_from():
    gen = torch.Generator().manual_seed(0)
    k, lr = 4, 0.05
    start = {"mask": torch.randn(k, 3, 5, 5, generator=gen), "pattern": torch.randn(k, 2, generator=gen)}
    stacked = {n: p.clone() for n, p in start.items()}
    adam = StackedAdam(stacked, lr)
    singles = [{n: p[i].clone().requires_grad_(True) for n, p in start.items()} for i in range(k)]
    optimisers = [torch.optim.Adam(list(s.values()), lr=lr, foreach=False) for s in singles]
    for _ in range(12):
        present = torch.rand(k, generator=gen) < 0.6
        grads = {n: torch.randn(p.shape, generator=gen) for n, p in start.items()}
        adam.step(grads, present)
        for i in range(k):
            if present[i]:
                for n, p in singles[i].items():
                    p.grad = grads[n][i].clone()
                optimisers[i].step()
    for i in range(k):
        for n in start:
            assert torch.allclose(stacked[n][i], singles[i][n].detach(), rtol=1e-5, atol=1e-6), (i, n)
    assert adam.steps.tolist() == [int(o.state[next(iter(s.values()))]["step"]) if o.state else 0
                                   for o, s in zip(optimisers, singles)]  # fmt: skip


def test_a_missing_gradient_is_a_zero_gradient_and_mismatched_stacks_are_refused():
    params = {"a": torch.ones(2, 3), "b": torch.ones(2)}
    adam = StackedAdam(params, 0.1)
    adam.step({"a": torch.ones(2, 3)}, torch.tensor([True, False]))
    assert torch.allclose(params["a"][0], torch.full((3,), 0.9))  # Adam's first step moves by lr
    assert torch.equal(params["a"][1], torch.ones(3)) and torch.equal(params["b"], torch.ones(2))
    with pytest.raises(ValueError, match="same number of problems"):
        StackedAdam({"a": torch.ones(2, 3), "b": torch.ones(3)}, 0.1)
