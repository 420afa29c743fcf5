"""Pictures of InstructPix2Pix: the 8-channel, three-row batch of one guided step, and the s_T x s_I sweep.   [notebook 09]

Both draw what the library computes: show_guidance_batch draws instruct_pix2pix.guidance_inputs (the
batch dual_cfg_denoiser really sends to the UNet), show_sweep the rows the benchmark writes
(benchmarks/bench_instructions.py, "sweep").
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib import instruct_pix2pix
from course_lib.validation import CourseInputError, check_float_tensor

# The three row blocks, in the pipeline's order, and the prediction each gives
ROW_NAMES = ("eps(z_t, E(x), T)", "eps(z_t, E(x), Ø)", "eps(z_t, Ø, Ø)")


def _channel_panel(ax, values: np.ndarray, limit: float) -> None:
    ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def show_guidance_batch(inputs: dict, cond: torch.Tensor, instruction: str, *, guidance_scale: float,
                        image_guidance_scale: float):
    """Draw one guided step's UNet batch: 3 rows x (4 channels of z_t | 4 of the source latent) and each row's text.   [IP2P, nb 09]

    inputs: instruct_pix2pix.guidance_inputs(...) for one example (B = 1); cond: the instruction's
    encoder states (1, L, D), to tell which rows read the instruction and which read "". The right
    column names the prediction of each row and the line under the rows combines them with
    s_T = guidance_scale and s_I = image_guidance_scale (eq. 9.1). Returns the figure.
    """
    if not isinstance(inputs, dict) or not {"sample", "encoder_hidden_states"} <= set(inputs):
        raise CourseInputError("inputs must be instruct_pix2pix.guidance_inputs(...)'s dict (sample, encoder_hidden_states).")
    sample, states = inputs["sample"], inputs["encoder_hidden_states"]
    check_float_tensor(sample, "inputs['sample']")
    check_float_tensor(cond, "cond")
    if sample.ndim != 4 or sample.shape[0] != 3 or sample.shape[1] != 2 * instruct_pix2pix.IMAGE_CHANNELS:
        raise CourseInputError(f"inputs must hold one example's three guided rows of 8 channels, (3, 8, h, w); got "
                               f"{tuple(sample.shape)}. Call guidance_inputs with one example and s_T > 1, s_I >= 1.")
    if not isinstance(instruction, str):
        raise CourseInputError(f"instruction must be the str the rows' text came from, got {type(instruction).__name__}.")
    channels = instruct_pix2pix.IMAGE_CHANNELS
    values = sample.detach().float().cpu().numpy()
    limits = [float(np.abs(values[:, :channels]).max()) or 1.0, float(np.abs(values[:, channels:]).max()) or 1.0]
    width, height = 9.6, 3.75  # inches
    fig = plt.figure(figsize=(width, height))
    side, gap, left = 0.5, 0.06, 0.15  # a channel's square, the gap between squares, the left margin (inches)
    block = channels * (side + gap)
    for r in range(3):
        y = height - 1.15 - r * 0.95  # the row's bottom edge (inches)
        for c in range(2 * channels):
            x = left + c * (side + gap) + (0.3 if c >= channels else 0.0)
            ax = fig.add_axes((x / width, y / height, side / width, side / height))
            _channel_panel(ax, values[r, c], limits[c >= channels])
        middle = (y + side / 2) / height
        fig.text((left + block - gap / 2 + 0.15) / width, middle, "++", ha="center", va="center", fontsize=11)
        reads_text = bool(torch.equal(states[r].cpu(), cond[0].cpu()))
        label = f'text T:\n"{instruction}"' if reads_text else 'text: "" (none)'
        fig.text((left + 2 * block + 0.55) / width, middle, label, va="center", fontsize=8.5)
        fig.text(0.99, middle, f"→ {ROW_NAMES[r]}", va="center", ha="right", fontsize=9, family="monospace")
        if r == 2 and bool(np.all(values[r, channels:] == 0)):
            fig.text((left + block + 0.3 + block / 2) / width, (y - 0.17) / height, "zeros: no image",
                     ha="center", fontsize=8)
    heads = height - 0.55
    fig.text((left + block / 2) / width, heads / height, "z_t (4 channels)", ha="center", fontsize=9)
    fig.text((left + block * 1.5 + 0.3) / width, heads / height, "E(x): the source latent (4 channels)", ha="center",
             fontsize=9)
    fig.text(0.5, 1 - 0.15 / height, "one guided step: three rows, each z_t ++ E(x) (8 input channels) and a text",
             ha="center", va="top", fontsize=10)
    fig.text(0.5, 0.12 / height, f"eps = eps(z_t, Ø, Ø) + s_I [eps(z_t, E(x), Ø) - eps(z_t, Ø, Ø)] + s_T [eps(z_t, E(x), T) "
                                 f"- eps(z_t, E(x), Ø)]   with s_T = {guidance_scale:g}, s_I = {image_guidance_scale:g}",
             ha="center", fontsize=8.5)
    return fig


def _grid(rows: list[dict]) -> tuple[list[float], list[float]]:
    text = sorted({float(r["guidance_scale"]) for r in rows})
    image = sorted({float(r["image_guidance_scale"]) for r in rows})
    if len(text) * len(image) != len(rows):
        raise CourseInputError(f"the sweep must be a full grid of s_T x s_I; got {len(rows)} rows for {len(text)} s_T "
                               f"and {len(image)} s_I values.")
    return text, image


def show_sweep(rows: list[dict], *, chosen: tuple[float, float] | None = None):
    """Draw a guidance sweep as two heatmaps over s_T (rows) x s_I (columns): success (%) and locked PSNR (dB).   [nb 09]

    rows: dicts with guidance_scale, image_guidance_scale, success (a share) and locked_psnr, as
    benchmarks/bench_instructions.py writes them; chosen: (s_T, s_I) to outline. Returns the figure.
    """
    if not isinstance(rows, (list, tuple)) or not rows or not all(
            isinstance(r, dict) and {"guidance_scale", "image_guidance_scale", "success", "locked_psnr"} <= set(r)
            for r in rows):
        raise CourseInputError("rows must be a non-empty list of dicts with guidance_scale, image_guidance_scale, "
                               "success and locked_psnr (the benchmark's 'sweep').")
    text, image = _grid(rows)
    by_cell = {(float(r["guidance_scale"]), float(r["image_guidance_scale"])): r for r in rows}
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 2.9))
    for ax, key, label, scale, cmap in ((axes[0], "success", "edit success (%)", 100.0, "Greens"),
                                        (axes[1], "locked_psnr", "locked PSNR (dB)", 1.0, "Blues")):
        grid = np.array([[scale * by_cell[(t, i)][key] for i in image] for t in text])
        ax.imshow(grid, cmap=cmap, aspect="auto")
        middle = (grid.min() + grid.max()) / 2
        for a in range(len(text)):
            for b in range(len(image)):
                ax.text(b, a, f"{grid[a, b]:.1f}", ha="center", va="center", fontsize=9,
                        color="white" if grid[a, b] > middle else "black")
        ax.set_xticks(range(len(image)), [f"{i:g}" for i in image])
        ax.set_yticks(range(len(text)), [f"{t:g}" for t in text])
        ax.set(xlabel="s_I (image guidance)", ylabel="s_T (text guidance)", title=label)
        if chosen is not None and (float(chosen[0]), float(chosen[1])) in by_cell:
            a, b = text.index(float(chosen[0])), image.index(float(chosen[1]))
            ax.add_patch(plt.Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    fig.tight_layout()
    return fig
