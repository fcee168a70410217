"""Figures as PNG files (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch


def mask_heatmap(m1: torch.Tensor, m2: torch.Tensor, path: str | Path, *, title: str = "") -> Path:
    """M1 (V vs T) above M2 (V vs V+t): one cell per channel, value in [0, 1]; their overlap below."""
    rows = np.stack([m1.numpy(), m2.numpy(), np.minimum(m1.numpy(), m2.numpy())])
    width = max(4.0, min(16.0, 0.12 * rows.shape[1] + 2))
    fig, ax = plt.subplots(figsize=(width, 1.8))
    image = ax.imshow(rows, aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks([0, 1, 2], ["M1 (V vs T)", "M2 (V vs V+t)", "min(M1, M2)"])
    ax.set_xlabel("channel")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
