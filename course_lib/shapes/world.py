"""The vocabulary of the shapes world: shapes, colours, backgrounds, the 3 x 3 grid and its words.   [nb 04]"""

from __future__ import annotations

SHAPES = ("circle", "square", "triangle")
# RGB in [0, 1]; far apart from each other and from every background.
COLOURS = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.12, 0.72, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.85, 0.10),
}
BACKGROUNDS = {
    "black": (0.0, 0.0, 0.0),
    "grey": (0.5, 0.5, 0.5),
    "white": (1.0, 1.0, 1.0),
}
# Colour-shape pairs that training draws ("train", "test") never contain: generalisation tests.
HELDOUT_PAIRS = (("blue", "triangle"), ("yellow", "circle"))
ALL_PAIRS = tuple((c, s) for c in COLOURS for s in SHAPES)
TRAIN_PAIRS = tuple(p for p in ALL_PAIRS if p not in HELDOUT_PAIRS)
SPLITS = ("train", "test", "heldout")

ROWS = ("top", "middle", "bottom")
COLS = ("left", "centre", "right")
GRID = 3
# The position phrase of each grid cell (row, col), as captions write it.
POSITION_PHRASES = {
    (0, 0): "in the top left", (0, 1): "at the top", (0, 2): "in the top right",
    (1, 0): "on the left", (1, 1): "in the middle", (1, 2): "on the right",
    (2, 0): "in the bottom left", (2, 1): "at the bottom", (2, 2): "in the bottom right",
}
# Short names of the cells ("top left", "top", ..., "middle", ...), for structured descriptions.
POSITIONS = {
    (0, 0): "top left", (0, 1): "top", (0, 2): "top right",
    (1, 0): "left", (1, 1): "middle", (1, 2): "right",
    (2, 0): "bottom left", (2, 1): "bottom", (2, 2): "bottom right",
}
CELL_OF_POSITION = {name: cell for cell, name in POSITIONS.items()}

MAX_OBJECTS = 3
# Half-extent of an object (radius, half-side, half-base) and the offset inside its cell, as
# fractions of the image side. Two objects in neighbouring cells are at least
# 1/3 - 2 * JITTER - 2 * HALF_SIZE_RANGE[1] = 1/30 of the side apart (about 1 pixel at 32 px).
HALF_SIZE_RANGE = (0.095, 0.125)
JITTER = 0.025
DEFAULT_SIZE = 32

PHRASINGS = ("full", "objects", "background_first", "relation")
EDIT_KINDS = ("colour", "shape", "background", "add", "remove")


def cell_centre(row: int, col: int) -> tuple[float, float]:
    """Return (x, y) of a grid cell's centre as fractions of the image side: ((col + 0.5) / 3, (row + 0.5) / 3)."""
    return (col + 0.5) / GRID, (row + 0.5) / GRID
