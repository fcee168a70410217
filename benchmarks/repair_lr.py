"""Choose the repair's learning rate on a calibration population (issue 19 §2, the repair study).

The repair study's first run (docs/results.md, "Repair") kept 9 of its 10 models unchanged: the first epoch
of unlearning at Adam lr 1e-3 already cost more than the 2-point budget, on clean and trojaned models alike —
it measured the optimiser's step, not the injected/natural difference. This picks the learning rate on
models the study never repairs, by what the step alone does: each model is fine-tuned by the repair's own
loop (:func:`exray.repair.tuning_epochs`, on the tuning half of its clean examples, *no trigger*) for the
repair's epochs at each candidate rate, and its held-out clean accuracy is measured after every epoch. Rule
fixed before running: the largest rate at which clean fine-tuning alone stays within the budget
(``max_accuracy_drop``) on every calibration model at every epoch — unlearning at that rate then costs
accuracy only through what it unlearns. Not a test.

    .venv/bin/python benchmarks/repair_lr.py $EXRAY_CACHE/zoos/<calibration zoo> \\
        --lrs 1e-3 3e-4 1e-4 3e-5 1e-5 --epochs 10 [--holdout 0.5] [--json OUT.json]

The calibration zoo should have the repair study's design and example counts (its held-out set sets the
budget's granularity) and another seed: e.g. ``studies/repair.yaml``'s zoo with ``seed`` changed.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from exray.evaluation.truth import read_truth
from exray.pipeline.loading import load_scan_inputs
from exray.repair import RepairConfig, held_out_accuracy, split_examples, tuning, tuning_epochs


def drops(model, examples, config: RepairConfig, seed: int) -> list[float]:
    """The held-out accuracy drop after each epoch of clean fine-tuning at ``config.lr``."""
    tune, held = split_examples(examples, config.holdout, seed)
    x = torch.cat(list(tune.values()))
    y = torch.cat([torch.full((len(v),), k) for k, v in tune.items()])
    before = held_out_accuracy(model, held)
    result = []
    with tuning(model):
        for _ in tuning_epochs(model, x, y, config, seed):
            result.append(before - held_out_accuracy(model, held))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zoos", type=Path, nargs="+", help="calibration zoo directories")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-4, 1e-4, 3e-5, 1e-5])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--max-accuracy-drop", type=float, default=RepairConfig().max_accuracy_drop)
    parser.add_argument("--holdout", type=float, default=RepairConfig().holdout)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    models = [(m.name, m.path) for zoo in args.zoos for m in read_truth(zoo)[0]]
    table: dict[str, dict[str, list[float]]] = {}
    for name, path in models:
        model, examples = load_scan_inputs(path, device="cpu")
        for lr in args.lrs:
            config = RepairConfig(
                lr=lr, epochs=args.epochs, max_accuracy_drop=args.max_accuracy_drop, holdout=args.holdout
            )
            table.setdefault(f"{lr:g}", {})[name] = drops(copy.deepcopy(model), examples, config, args.seed)
    budget = args.max_accuracy_drop
    print(f"{len(models)} models; clean fine-tuning for {args.epochs} epochs; budget {budget}")
    print("lr        worst drop  models within budget at every epoch")
    choice = None
    for lr in sorted(args.lrs, reverse=True):
        per_model = table[f"{lr:g}"]
        worst = max(max(d) for d in per_model.values())
        within = sum(max(d) <= args.max_accuracy_drop + 1e-9 for d in per_model.values())
        print(f"{lr:<9g} {worst:10.3f}  {within} of {len(per_model)}")
        if choice is None and within == len(per_model):
            choice = lr
    print("choice (the largest rate within the budget on every model at every epoch):", choice)
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"zoos": [str(z) for z in args.zoos],
                                                                 "json": str(args.json)},
                                         "drops": table, "choice": choice}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
