"""A picture of prompts and what the image model drew from them: each prompt printed over its image.   [nb 09]"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt

from course_lib import plotting
from course_lib.validation import CourseInputError, check_int


def show_prompted_images(columns: dict, *, wrap: int = 30, fontsize: float = 7.5):
    """Draw one row per request and one column per prompt kind, each image under the prompt it was drawn from.   [nb 09]

    columns: column label -> (prompts, images), the same number of each in every column; images
    (B, 3, H, W) in [-1, 1]. Each prompt is wrapped at `wrap` characters. Returns the figure.
    """
    if not isinstance(columns, dict) or not columns:
        raise CourseInputError("columns must be a non-empty dict: label -> (prompts, images).")
    wrap = check_int(wrap, "wrap", minimum=10)
    counts = set()
    for label, pair in columns.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and len(pair[0]) == len(pair[1])
                and all(isinstance(p, str) for p in pair[0])):
            raise CourseInputError(f"columns[{label!r}] must be (prompts, images) with one str prompt per image.")
        counts.add(len(pair[0]))
    if len(counts) != 1 or 0 in counts:
        raise CourseInputError(f"every column must hold the same number (> 0) of prompts and images; got {sorted(counts)}.")
    n, k = counts.pop(), len(columns)
    lines = max(len(textwrap.wrap(p, wrap)) for prompts, _ in columns.values() for p in prompts)
    title_in = lines * fontsize * 1.25 / 72 + 0.08
    side = 1.25  # inches per image
    fig, axes = plt.subplots(n, k, figsize=(k * max(side, wrap * fontsize * 0.55 / 72) + 0.2,
                                            n * (side + title_in) + 0.35), squeeze=False)
    for c, (label, (prompts, images)) in enumerate(columns.items()):
        for r in range(n):
            ax = axes[r, c]
            ax.imshow(plotting.to_image(images[r]), interpolation="nearest")
            ax.set_axis_off()
            ax.set_title("\n".join(textwrap.wrap(prompts[r], wrap)), fontsize=fontsize, loc="center")
        fig.text((c + 0.5) / k, 1 - 0.08 / fig.get_size_inches()[1], label, ha="center", va="top", fontsize=10,
                 weight="bold")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_size_inches()[1]))
    return fig
