"""Seconds per zoo model by architecture and image size, fp32 vs channels_last + bf16 autocast.

Every row builds one trojaned model (polygon trigger) of the base spec (default ``zoos/demo.yaml``) with a
single architecture, image size and precision — the same drawn classes, trigger and data in every row —
through :func:`exray.zoo.build_model_dir`, i.e. render + poison + train + held-out evaluation + example
images + save. It reports the seconds per model, the training seconds, clean accuracy and ASR for both
precisions, the fp32 / bf16 time ratio and the accuracy / ASR differences measured in this run (offer the
fast path where both stay within 1 point), and the generator's images/s. Target (issue 3): a 32×32
demo-zoo model in <= 60 s on 2 cores.

    .venv/bin/python benchmarks/bench_zoo.py [--archs resnet18:0.25 vgg11_bn:0.25] [--sizes 32 64]
        [--spec zoos/demo.yaml] [--epochs N] [--train-per-class N]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from exray.data.signs import draw_classes
from exray.data.synth import SignRenderer
from exray.triggers import InstagramFilter, PolygonTrigger
from exray.utils import versions
from exray.zoo import build_model_dir, designs, load_spec
from exray.zoo.spec import ArchitectureChoice, ModelCounts, ZooSpec

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = {
    "fp32": {"bf16": False, "channels_last": False},
    "cl+bf16": {"bf16": True, "channels_last": True},
}


def variant(
    base: ZooSpec, arch: ArchitectureChoice, size: int, precision: str, args: argparse.Namespace
) -> ZooSpec:
    """The base spec reduced to one trojaned polygon model of ``arch`` at ``size`` and ``precision``."""
    training = dataclasses.replace(
        base.training,
        epochs=args.epochs or base.training.epochs,
        adversarial=dataclasses.replace(base.training.adversarial, probability=0.0),
    )
    data = dataclasses.replace(base.data, train_per_class=args.train_per_class or base.data.train_per_class)
    return dataclasses.replace(
        base,
        models=ModelCounts(clean=0, trojaned=1),
        architectures=(
            ArchitectureChoice(arch.name, arch.kwargs, {**arch.training, **PRECISIONS[precision]}),
        ),
        image_size=size,
        data=data,
        training=training,
        triggers=dataclasses.replace(base.triggers, types=("polygon",), per_model=(1,)),
        quality=dataclasses.replace(base.quality, attempts=1),
    )


def time_model(spec: ZooSpec) -> dict[str, float]:
    (design,) = designs(spec)
    with tempfile.TemporaryDirectory(prefix="bench-zoo-") as tmp:
        start = time.perf_counter()
        config = build_model_dir(spec, design, Path(tmp))
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "train": config["training"]["seconds"],
        "acc": config["clean_accuracy"],
        "asr": config["attack_success_rate"],
        "classes": config["num_classes"],
        "rows": config["data"]["train_rows"]["total"],
    }


def generator_rate(size: int, trigger: str, n: int = 512) -> float:
    renderer = SignRenderer(draw_classes(8, 0, confusion_pairs=2), size=size)
    labels = np.arange(n) % 8
    triggers = {
        "clean": None,
        "polygon": PolygonTrigger.random(0, size_range=(0.1, 0.25)),
        "instagram": InstagramFilter("gotham"),
    }[trigger]
    renderer.render(labels[:32], 0, triggers=triggers)  # warm-up (template caches)
    start = time.perf_counter()
    renderer.render(labels, 1, triggers=triggers)
    return n / (time.perf_counter() - start)


def arch_label(arch: ArchitectureChoice) -> str:
    return f"{arch.name}({', '.join(f'{k}={v}' for k, v in arch.kwargs.items())})"


def parse_arch(text: str) -> ArchitectureChoice:
    name, _, width = text.partition(":")
    return ArchitectureChoice(name, {"width": float(width)} if width else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "zoos" / "demo.yaml", help="base zoo spec")
    parser.add_argument("--archs", nargs="+", help="name[:width] (default: the spec's architectures)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--epochs", type=int, help="override the spec's epochs")
    parser.add_argument("--train-per-class", type=int, help="override the spec's training images per class")
    args = parser.parse_args()

    base = load_spec(args.spec)
    archs = [parse_arch(a) for a in args.archs] if args.archs else list(base.architectures)
    print(f"exray zoo benchmark — {versions()} — torch threads {torch.get_num_threads()}")
    print(
        f"base spec {args.spec.name}: epochs {args.epochs or base.training.epochs}, "
        f"{args.train_per_class or base.data.train_per_class} train images/class, "
        "one trojaned polygon model per row\n"
    )

    print("generator (images/s, 8 classes):")
    for size in args.sizes:
        rates = {t: generator_rate(size, t) for t in ("clean", "polygon", "instagram")}
        print(f"  {size:>3}×{size:<3} " + "  ".join(f"{t} {r:7.0f}" for t, r in rates.items()))

    header = (
        f"\n{'architecture':<28} {'size':>4} {'precision':<8} {'s/model':>8} {'train s':>8} {'acc':>6} "
        f"{'asr':>6} {'classes':>7} {'rows':>6}"
    )
    print(header)
    print("-" * (len(header) - 1))
    results: dict[tuple[str, int, str], dict[str, float]] = {}
    for arch in archs:
        label = arch_label(arch)
        for size in args.sizes:
            for precision in PRECISIONS:
                row = time_model(variant(base, arch, size, precision, args))
                results[(label, size, precision)] = row
                print(
                    f"{label:<28} {size:>4} {precision:<8} {row['seconds']:8.1f} {row['train']:8.1f} "
                    f"{row['acc']:6.3f} {row['asr']:6.3f} {row['classes']:7d} {row['rows']:6d}",
                    flush=True,
                )

    print(
        "\nfp32 → cl+bf16 (same run): time ratio, Δ clean accuracy, Δ ASR (points); "
        "'offer' = both within 1 point"
    )
    for arch in archs:
        label = arch_label(arch)
        for size in args.sizes:
            fp, fast = results[(label, size, "fp32")], results[(label, size, "cl+bf16")]
            d_acc, d_asr = 100 * (fast["acc"] - fp["acc"]), 100 * (fast["asr"] - fp["asr"])
            offer = "offer" if abs(d_acc) <= 1 and abs(d_asr) <= 1 else "check"
            print(
                f"  {label:<28} {size:>3}px  speed-up ×{fp['seconds'] / fast['seconds']:.2f} (train "
                f"×{fp['train'] / fast['train']:.2f})  Δacc {d_acc:+.1f}  Δasr {d_asr:+.1f}  {offer}"
            )

    if 32 in args.sizes:
        # The precision each architecture uses in the spec (its own training override, else the spec's).
        chosen = {
            arch_label(a): "cl+bf16" if a.training.get("bf16", base.training.bf16) else "fp32" for a in archs
        }
        worst = max(results[(label, 32, precision)]["seconds"] for label, precision in chosen.items())
        verdict = "meets" if worst <= 60 else "MISSES"
        print(
            f"\ntarget: slowest 32×32 model at the spec's precision {worst:.1f} s — {verdict} the 60 s target"
        )


if __name__ == "__main__":
    main()
