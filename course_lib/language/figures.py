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


_LABEL_OFFSETS = {"crimson": (8, -14), "navy": (10, 0), "lime": (-10, 12), "lemon": (14, 10), "salmon": (10, 8),
                  "amber": (6, 8), "teal": (-62, -14), "purple": (8, -4), "orange": (6, 8), "olive": (8, 4),
                  "forest green": (-80, -12)}  # points: keeps the labels of show_colour_lexicon apart


def show_colour_lexicon(labelled=("crimson", "navy", "lime", "salmon", "amber", "teal", "purple", "orange", "olive",
                                  "forest green")):
    """Draw every colour name of the lexicon on OKLab's (a, b) plane in its own colour, mapped names ringed by world colour.   [nb 09]

    Filled dots: names the lexicon maps to a world colour (ring: that colour); small crosses: names
    it refuses. The world's four colours are the large squares. labelled: names to write beside their dot.
    """
    from matplotlib.lines import Line2D

    from course_lib import shapes
    from course_lib.language.lexicon import colour_lexicon, colour_of, oklab

    labelled = [labelled] if isinstance(labelled, str) else list(labelled)
    entries = colour_lexicon()
    if any(not isinstance(n, str) or colour_of(n) is None for n in labelled):
        raise CourseInputError(f"labelled must be colour names of the lexicon, got {labelled!r}.")
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    for mapped in (False, True):
        group = [e for e in entries.values() if (e.world is not None) == mapped]
        lab = oklab([e.rgb for e in group])
        if mapped:
            ax.scatter(lab[:, 1], lab[:, 2], s=22, c=[e.rgb for e in group], linewidths=1.1,
                       edgecolors=[shapes.COLOURS[e.world] for e in group])
        else:
            ax.scatter(lab[:, 1], lab[:, 2], s=14, c=[e.rgb for e in group], marker="x", linewidths=1.0)
    world = oklab(list(shapes.COLOURS.values()))
    ax.scatter(world[:, 1], world[:, 2], s=160, marker="s", c=list(shapes.COLOURS.values()), edgecolors="black",
               linewidths=1.5, zorder=3)
    for name in labelled:
        e = colour_of(name)
        _, a, b = oklab(e.rgb)
        ax.annotate(f"{name}: {e.world or 'refused'}", (a, b), xytext=_LABEL_OFFSETS.get(name, (6, 6)),
                    textcoords="offset points", fontsize=7.5, arrowprops={"arrowstyle": "-", "lw": 0.6, "color": "0.3"},
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8}, zorder=4)
    ax.axhline(0, color="0.85", lw=0.8, zorder=0)
    ax.axvline(0, color="0.85", lw=0.8, zorder=0)
    handles = [Line2D([], [], marker="o", ls="", mfc="0.7", mec="black", label="mapped to a world colour (ring: which)"),
               Line2D([], [], marker="x", ls="", color="0.4", label="refused (another category, or between two)"),
               Line2D([], [], marker="s", ls="", mfc="0.7", mec="black", ms=10, label="the world's four colours")]
    ax.legend(handles=handles, fontsize=7.5, loc="lower left")
    ax.set(xlabel="OKLab a (green - red)", ylabel="OKLab b (blue - yellow)", aspect="equal",
           title=f"{len(entries)} colour names (xkcd survey + CSS4) on the hue plane")
    fig.tight_layout()
    return fig
