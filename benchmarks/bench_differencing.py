"""Seconds per trigger verdict (M1 + M2): the official one-problem-at-a-time loop vs exray batched.

A narrow CIFAR ResNet-18 is trained for a few seconds on coloured-symbol images with a planted trojan
(a magenta patch turns class 0 into class 1); half of the triggers judged are that injected patch, half a
natural one (a green patch: class 1's own feature). Every trigger has its own victim subset, so no M1 is
shared between triggers and each verdict costs two full mask problems in both engines.

Prints, measured in this run: seconds per verdict for the reference loop (batch 10, 400 epochs, no early
stop) and for exray at K = 1, 8, 32 triggers per stacked pass (fp32, and bf16 autocast at the largest K),
the speed-ups, whether the verdicts agree with the reference, and the achieved GFLOP/s of the mask
optimisation against a plain fp32 matmul on this machine. Run it on an otherwise idle machine.

    .venv/bin/python benchmarks/bench_differencing.py [--width 0.25] [--ks 1 8 32] [--reference 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from exray import MaskConfig, TriggerCase, compare_triggers
from exray.models import LayerCut, build_model, default_layer
from exray.models.analytic import symbol_images
from exray.models.runtime import frozen

COLOURS = ("red", "green", "blue", "yellow")


def train_planted_resnet(width: float, seed: int) -> torch.nn.Module:
    """A narrow ResNet-18 on 4 symbol colours; 10% extra red images with a magenta patch labelled 1."""
    torch.manual_seed(seed)
    images = [symbol_images(c, 400, size=32, seed=seed + i, noise=0.05) for i, c in enumerate(COLOURS)]
    labels = [torch.full((400,), i) for i in range(len(COLOURS))]
    images.append(symbol_images("red", 160, size=32, seed=seed + 9, patch="magenta", noise=0.05))
    labels.append(torch.full((160,), 1))
    x, y = torch.cat(images), torch.cat(labels)
    model = build_model("resnet18", len(COLOURS), width=width)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(3):
        for idx in torch.randperm(len(x)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


def make_cases(count: int, seed: int) -> list[TriggerCase]:
    pool = symbol_images("red", 60, size=32, seed=seed + 20, noise=0.05)
    target = symbol_images("green", 10, size=32, seed=seed + 21, noise=0.05)
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for i in range(count):
        rows = torch.randperm(len(pool), generator=gen)[:10]
        patch = "magenta" if i % 2 == 0 else "green"
        stamped = symbol_images("red", 60, size=32, seed=seed + 20, noise=0.05, patch=patch)[rows]
        cases.append(TriggerCase(pool[rows], target, stamped, victim_label=0, target_label=1))
    return cases


def timed(model, cases, config) -> tuple[float, list]:
    start = time.perf_counter()
    verdicts = compare_triggers(model, cases, config=config)
    return (time.perf_counter() - start) / len(cases), verdicts


def suffix_flops_per_row(model, cases) -> float:
    """FLOPs of one forward + backward (input gradients only) of the suffix for one mixed row."""
    cut = LayerCut(model, default_layer(model, cases[0].victim))
    feats = cut.features(cases[0].victim[:8]).requires_grad_(True)
    with frozen(model), FlopCounterMode(display=False) as counter:
        cut.suffix(feats).sum().backward()
    return counter.get_total_flops() / len(feats)


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=float, default=0.125, help="ResNet-18 width multiplier")
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 8, 32], help="triggers per stacked pass")
    parser.add_argument("--reference", type=int, default=4, help="triggers timed with the reference loop")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    model = train_planted_resnet(args.width, args.seed)
    k_max = max(args.ks)
    cases = make_cases(max(k_max, args.reference), args.seed)
    layer = default_layer(model, cases[0].victim)
    print(f"ResNet-18 width {args.width}, layer {layer}, batch 10, 10 images per set")
    flops = suffix_flops_per_row(model, cases)

    faithful = MaskConfig(epochs=args.epochs)
    fast = MaskConfig(epochs=args.epochs, precision="bf16")
    runs = [("reference (official loop)", args.reference, MaskConfig(epochs=args.epochs, engine="reference"))]
    runs += [(f"exray K={k}", k, faithful) for k in args.ks]
    runs += [(f"exray K={k_max} bf16", k_max, fast)]

    print(f"\n{'engine':<32}{'s/verdict':>10}{'speed-up':>10}{'GFLOP/s':>9}{'agree':>8}")
    reference = None
    for name, k, config in runs:
        seconds, verdicts = timed(model, cases[:k], config)
        reference = reference or (seconds, verdicts)
        ref_seconds, ref_verdicts = reference
        same = sum(a.natural == b.natural for a, b in zip(verdicts, ref_verdicts))
        epochs = sum(sum(v.epochs_run) for v in verdicts) / len(verdicts)
        gflops = flops * 2 * 10 * epochs / seconds / 1e9  # two mixing directions x 10 pairs per epoch
        agree = f"{same}/{min(len(verdicts), len(ref_verdicts))}"
        print(f"{name:<32}{seconds:>10.2f}{ref_seconds / seconds:>9.1f}x{gflops:>9.1f}{agree:>8}")
    print(f"{'plain fp32 matmul 1024^3':<32}{'':>10}{'':>10}{matmul_gflops():>9.1f}")

    natural = [v.natural for v in verdicts]
    injected_ok, natural_ok = natural[0::2].count(False), natural[1::2].count(True)
    print(
        f"\nlast run: planted magenta triggers judged injected {injected_ok}/{len(natural[0::2])}, "
        f"natural green triggers judged natural {natural_ok}/{len(natural[1::2])}"
    )


if __name__ == "__main__":
    main()
