"""Figures the notebooks share: images from tensors, grids, 2D point clouds.   [all notebooks]"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib.validation import CourseInputError, check_float_tensor, check_int, check_number


def _check_image(x, name: str = "image") -> torch.Tensor:
    """Return x if it is a float image tensor (C, H, W) or (H, W), C in 1..4, else raise."""
    check_float_tensor(x, name)
    if not (x.ndim == 2 or (x.ndim == 3 and 1 <= x.shape[0] <= 4)):
        raise CourseInputError(f"{name} must be one image (C, H, W) with C = 1, 3 (or 4), or (H, W), in [-1, 1]; "
                               f"got shape {tuple(x.shape)}. For a batch, pass it to show_images.")
    return x


def _check_points(points, name: str = "points") -> torch.Tensor:
    check_float_tensor(points, name)
    if points.ndim != 2 or points.shape[1] != 2:
        raise CourseInputError(f"{name} must be 2D points of shape (n, 2), got {tuple(points.shape)}.")
    return points


def _check_titles(titles, count: int, name: str = "titles") -> None:
    if titles is not None and (isinstance(titles, str) or len(titles) < count):
        raise CourseInputError(f"{name} must be a list of (at least) {count} strings, one per image, got {titles!r}.")


def to_image(x: torch.Tensor) -> np.ndarray:
    """Return a (C, H, W) tensor in [-1, 1] as an (H, W, C) or (H, W) array in [0, 1] for imshow."""
    _check_image(x, "x")
    x = x.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5
    if x.ndim == 3:
        x = x.permute(1, 2, 0)
        if x.shape[-1] == 1:
            x = x[..., 0]
    return x.numpy()


def show_images(images, titles=None, ncols: int | None = None, size: float = 1.6, cmap: str = "gray",
                suptitle: str | None = None):
    """Draw tensors in [-1, 1] (a list, or a (B, C, H, W) batch) side by side; return the figure."""
    images = [_check_image(image, f"images[{i}]") for i, image in enumerate(images)]
    if not images:
        raise CourseInputError("images is empty: there is nothing to draw.")
    _check_titles(titles, len(images))
    ncols = len(images) if ncols is None else check_int(ncols, "ncols", minimum=1)
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
    _check_points(points)
    p = points.detach().cpu().numpy()
    ax.scatter(p[:, 0], p[:, 1], s=size, alpha=alpha, label=label, **kwargs)
    ax.set_aspect("equal")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    return ax


def show_image_rows(rows: dict, col_titles=None, scale: int = 2, gap: int = 4, label_width: int = 90,
                    fontsize: float = 9):
    """Draw rows of tensors in [-1, 1] (row label -> list of (C, H, W)), each pixel as scale x scale screen pixels.

    Nearest-neighbour drawing at a whole-number scale keeps pixels sharp and PNGs small (noisy images do
    not compress, so resampled ones bloat a notebook). Sizes are in screen pixels at the figure dpi.
    Returns the figure.   [nb 01]
    """
    if not isinstance(rows, dict) or not rows or not all(len(list(images)) for images in rows.values()):
        raise CourseInputError("rows must be a non-empty dict from a row label to a non-empty list of images (C, H, W).")
    rows = {label: [_check_image(image, f"rows[{label!r}] image") for image in images] for label, images in rows.items()}
    if len({tuple(image.shape[-2:]) for images in rows.values() for image in images}) > 1:
        raise CourseInputError("every image in rows must have the same height and width.")
    ncols = max(len(images) for images in rows.values())
    h, w = next(iter(rows.values()))[0].shape[-2:]
    _check_titles(col_titles, len(next(iter(rows.values()))), "col_titles")
    scale = check_int(scale, "scale", minimum=1)
    ph, pw = h * scale, w * scale
    top = 2 * fontsize + 6 if col_titles is not None else 0
    left = label_width if any(rows) else 0
    width = left + ncols * pw + (ncols - 1) * gap + 2
    height = top + len(rows) * ph + (len(rows) - 1) * gap + 2
    dpi = plt.rcParams["figure.dpi"]
    fig = plt.figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    for r, (label, images) in enumerate(rows.items()):
        y0 = height - top - (r + 1) * ph - r * gap
        for c, image in enumerate(images):
            x0 = left + c * (pw + gap)
            ax = fig.add_axes((x0 / width, y0 / height, pw / width, ph / height))
            ax.imshow(to_image(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
            if r == 0 and col_titles is not None:
                ax.set_title(col_titles[c], fontsize=fontsize)
        if label:
            fig.text((left - 6) / width, (y0 + ph / 2) / height, label, ha="right", va="center", fontsize=fontsize)
    return fig


def loss_curve(ax, losses, window: int = 100, label: str | None = None, log: bool = True):
    """Plot a loss history (light) and its running mean over `window` steps (dark) on `ax`; return ax.   [nb 03]"""
    values = np.asarray(losses, dtype=float)
    if values.ndim != 1 or not len(values):
        raise CourseInputError("losses must be a non-empty list of numbers (e.g. state.losses).")
    window = check_int(window, "window", minimum=1)
    steps = np.arange(1, len(values) + 1)
    kernel = np.ones(min(window, len(values))) / min(window, len(values))
    smooth = np.convolve(values, kernel, mode="valid")
    ax.plot(steps, values, alpha=0.25, lw=0.5)
    ax.plot(steps[len(steps) - len(smooth):], smooth, lw=1.5, label=label or f"mean over {window} steps")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    return ax


def arrow_field(ax, vector_fn, lim: float = 2.5, n: int = 21, color: str = "C3", scale: float | None = None):
    """Draw arrows of vector_fn(points (n*n, 2)) -> (n*n, 2) on an n x n grid over [-lim, lim]^2; return ax.   [nb 03]

    For a noise predictor, pass lambda x: -eps_hat(x, t): the arrows point from x_t towards the data.
    """
    if not callable(vector_fn):
        raise CourseInputError(f"vector_fn must be a function of (n*n, 2) points, got {type(vector_fn).__name__}.")
    lim, n = check_number(lim, "lim", low=0, low_open=True), check_int(n, "n", minimum=2)
    u = torch.linspace(-lim, lim, n)
    grid = torch.stack(torch.meshgrid(u, u, indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        v = vector_fn(grid)
    if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(grid.shape):
        raise CourseInputError(f"vector_fn must return one 2D vector per point, shape {tuple(grid.shape)}, got "
                               f"{tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__}.")
    v = v.detach().cpu()
    ax.quiver(grid[:, 0].numpy(), grid[:, 1].numpy(), v[:, 0].numpy(), v[:, 1].numpy(), color=color,
              angles="xy", scale_units="xy", scale=scale, width=0.004)
    ax.set_aspect("equal")
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    return ax


def trajectories(ax, trajectory, num_paths: int = 40, color: str = "C1", lim: float | None = 3.5):
    """Draw the paths of the first num_paths points through a list of (B, 2) states, start (o) to end (x); return ax.   [nb 03]"""
    trajectory = list(trajectory)
    if not trajectory:
        raise CourseInputError("trajectory is empty: keep it with samplers.sample(..., keep_trajectory=True).")
    for x in trajectory:
        _check_points(x, "each state of trajectory")
    num_paths = check_int(num_paths, "num_paths", minimum=1)
    path = torch.stack([x[:num_paths].detach().cpu() for x in trajectory]).numpy()  # (steps, P, 2)
    for i in range(path.shape[1]):
        ax.plot(path[:, i, 0], path[:, i, 1], color=color, lw=0.6, alpha=0.6)
    ax.scatter(path[0, :, 0], path[0, :, 1], s=8, c="grey", marker="o", label="x_T (noise)")
    ax.scatter(path[-1, :, 0], path[-1, :, 1], s=12, c="k", marker="x", label="x_0 (sample)")
    ax.set_aspect("equal")
    if lim is not None:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    return ax
