"""A picture of prompts and what the image model drew from them: each prompt printed over its image.   [nb 09]"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt

from course_lib import plotting
from course_lib.validation import CourseInputError, check_int


def show_prompted_images(columns: dict, *, wrap: int = 34, fontsize: float = 7.5):
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
    wrapped = {label: ["\n".join(textwrap.wrap(p, wrap)) for p in prompts] for label, (prompts, _) in columns.items()}
    line = fontsize * 1.3 / 72  # inches per line of title
    titles = [max(w[r].count("\n") + 1 for w in wrapped.values()) * line + 0.12 for r in range(n)]  # per row
    side, head = 1.25, 0.32  # inches: an image's side, the column labels' band
    column = max(side, wrap * fontsize * 0.55 / 72) + 0.15
    width, height = k * column, head + sum(titles) + n * side + 0.1
    fig = plt.figure(figsize=(width, height))
    top = height - head
    for r in range(n):
        top -= titles[r] + side
        for c, (label, (_, images)) in enumerate(columns.items()):
            ax = fig.add_axes(((c * column + (column - side) / 2) / width, top / height, side / width, side / height))
            ax.imshow(plotting.to_image(images[r]), interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(wrapped[label][r], fontsize=fontsize, pad=3)
    for c, label in enumerate(columns):
        fig.text((c + 0.5) / k, 1 - 0.06 / height, label, ha="center", va="top", fontsize=10, weight="bold")
    return fig
