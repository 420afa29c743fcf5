"""Figures the notebooks share: images from tensors, grids, 2D point clouds.   [all notebooks]"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_image(x: torch.Tensor) -> np.ndarray:
    """Return a (C, H, W) tensor in [-1, 1] as an (H, W, C) or (H, W) array in [0, 1] for imshow."""
    x = x.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5
    if x.ndim == 3:
        x = x.permute(1, 2, 0)
        if x.shape[-1] == 1:
            x = x[..., 0]
    return x.numpy()


def show_images(images, titles=None, ncols: int | None = None, size: float = 1.6, cmap: str = "gray",
                suptitle: str | None = None):
    """Draw tensors in [-1, 1] (a list, or a (B, C, H, W) batch) side by side; return the figure."""
    images = list(images)
    ncols = ncols or len(images)
    nrows = (len(images) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if titles else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(images):
            ax.imshow(to_image(images[i]), cmap=cmap, vmin=0, vmax=1)
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def scatter2d(ax, points: torch.Tensor, label: str | None = None, size: float = 2, alpha: float = 0.5,
              lim: float | None = 3.5, **kwargs):
    """Scatter (n, 2) points on `ax` with equal axes; return ax."""
    p = points.detach().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=size, alpha=alpha, label=label, **kwargs)
    ax.set_aspect("equal")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    return ax
