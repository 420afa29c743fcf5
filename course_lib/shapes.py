"""The shapes world: captioned scenes of coloured shapes whose edits have exact ground truth.   [notebooks 04-08]

A scene is one to three objects on a plain background. Each object is a shape (circle, square,
triangle) with a colour (red, green, blue, yellow), sits in one cell of a 3 x 3 grid (its position
word: "top left", "middle", ...), with a small random size and offset inside the cell. Objects in
different cells never overlap, so every pixel is the background blended with at most the objects
whose coverage reaches it:

    image = background * (1 - sum_k a_k) + sum_k a_k * colour_k,      a_k = clamp(0.5 - d_k, 0, 1)

where d_k is the signed distance (in pixels) from the pixel centre to object k's outline, a cheap
anti-aliasing. An edit (colour, shape, background, add, remove) changes the structure, the scene is
rendered again, and the pixels that may change are exactly the supports (a_k > 0) of the objects the
edit touches (for a background edit: every pixel where the background shows). Outside that mask the
two renderings are bitwise equal; tests/test_shapes.py asserts it.

What the rest of the course takes from here:
    sample_scenes(n, seed, split)      structured scenes; split "train"/"test" never use HELDOUT_PAIRS,
                                       "heldout" has at least one held-out colour-shape pair per scene
    render(scenes, size)               (B, 3, S, S) images in [-1, 1], fast and vectorised
    object_masks(scenes, size)         (B, MAX_OBJECTS, S, S) coverage of each object slot
    caption(scene, phrasing)           English captions, a few phrasings (PHRASINGS)
    make_dataset(n, seed, split)       images + scenes + captions, in one call          (nb 04-06)
    Edit, apply_edit, make_edit        an edit -> target scene, images, edit mask, captions   (nb 07-08)
    random_edit, edit_cases            random valid edits, and a balanced list of edit cases (ShapesEdit)
    read_scene, judge                  read colour, shape and position back from an image  (nb 06-08)

Positions are fractions of the image side (x to the right, y down), so any image size works; a
size of 32 gives objects about 6-8 pixels across.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from course_lib.validation import CourseInputError, check_choice

# ----------------------------------------------------------------------------------------------
# The vocabulary
# ----------------------------------------------------------------------------------------------

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


def _cell_centre(row: int, col: int) -> tuple[float, float]:
    return (col + 0.5) / GRID, (row + 0.5) / GRID


# ----------------------------------------------------------------------------------------------
# Structure: objects and scenes
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShapeObject:
    """One object: shape, colour, grid cell (row 0 = top, col 0 = left), half-size and offset (fractions of the side)."""

    shape: str
    colour: str
    row: int
    col: int
    half_size: float = 0.11
    dx: float = 0.0
    dy: float = 0.0

    def __post_init__(self):
        check_choice(self.shape, SHAPES, "shape")
        check_choice(self.colour, COLOURS, "colour")
        for name in ("row", "col"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < GRID:
                raise CourseInputError(f"{name} must be an int in 0..{GRID - 1} (a cell of the 3 x 3 grid), got {value!r}.")
            object.__setattr__(self, name, int(value))
        tol = 1e-6  # describe() rounds to 6 decimals; from_dict must accept what it wrote
        if not HALF_SIZE_RANGE[0] - tol <= self.half_size <= HALF_SIZE_RANGE[1] + tol:
            raise CourseInputError(f"half_size must be in {HALF_SIZE_RANGE} (fraction of the image side), got {self.half_size}.")
        if abs(self.dx) > JITTER + tol or abs(self.dy) > JITTER + tol:
            raise CourseInputError(f"dx and dy must be within +-{JITTER} (fraction of the side), got {self.dx}, {self.dy}.")

    @property
    def cell(self) -> tuple[int, int]:
        return self.row, self.col

    @property
    def position(self) -> str:
        """The cell's short name: "top left", "top", ..., "middle", ..., "bottom right"."""
        return POSITIONS[self.cell]

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the object's centre as fractions of the image side (x right, y down)."""
        cx, cy = _cell_centre(self.row, self.col)
        return cx + self.dx, cy + self.dy

    @property
    def noun(self) -> str:
        """Return "<colour> <shape>", e.g. "red circle"."""
        return f"{self.colour} {self.shape}"

    def describe(self) -> dict:
        """Return a JSON-ready dict: shape, colour, position, row, col, centre, half_size."""
        return {"shape": self.shape, "colour": self.colour, "position": self.position, "row": self.row,
                "col": self.col, "centre": [round(v, 6) for v in self.centre], "half_size": round(self.half_size, 6)}


@dataclass(frozen=True)
class Scene:
    """Objects (kept in reading order: by row, then column; one per cell) on a named background."""

    objects: tuple[ShapeObject, ...]
    background: str = "black"

    def __post_init__(self):
        objects = tuple(self.objects)
        if not all(isinstance(o, ShapeObject) for o in objects):
            raise CourseInputError("objects must be ShapeObject instances.")
        if len(objects) > MAX_OBJECTS:
            raise CourseInputError(f"a scene holds at most {MAX_OBJECTS} objects, got {len(objects)}.")
        cells = [o.cell for o in objects]
        if len(set(cells)) != len(cells):
            raise CourseInputError(f"two objects share a grid cell ({POSITIONS[max(cells, key=cells.count)]}); use one object per cell.")
        check_choice(self.background, BACKGROUNDS, "background")
        object.__setattr__(self, "objects", tuple(sorted(objects, key=lambda o: o.cell)))

    def describe(self) -> dict:
        """Return the structured description, JSON-ready: {"background": ..., "objects": [...]}."""
        return {"background": self.background, "objects": [o.describe() for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        """Rebuild a scene from describe()'s dict."""
        objects = []
        for o in d["objects"]:
            cx, cy = _cell_centre(o["row"], o["col"])
            centre = o.get("centre", (cx, cy))
            objects.append(ShapeObject(o["shape"], o["colour"], o["row"], o["col"], o.get("half_size", 0.11),
                                       centre[0] - cx, centre[1] - cy))
        return cls(tuple(objects), d["background"])

    def free_cells(self) -> list[tuple[int, int]]:
        """Return the grid cells no object occupies, in reading order."""
        used = {o.cell for o in self.objects}
        return [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in used]

    def pairs(self) -> list[tuple[str, str]]:
        """Return the (colour, shape) pair of each object."""
        return [(o.colour, o.shape) for o in self.objects]


def _as_scene_list(scenes) -> tuple[list[Scene], bool]:
    if isinstance(scenes, Scene):
        return [scenes], True
    scenes = list(scenes)
    if not all(isinstance(s, Scene) for s in scenes):
        raise CourseInputError("pass a Scene or a list of Scene objects (e.g. from shapes.sample_scenes).")
    return scenes, False


# ----------------------------------------------------------------------------------------------
# Sampling scenes
# ----------------------------------------------------------------------------------------------

def _num_objects_range(num_objects) -> tuple[int, int]:
    lo, hi = (num_objects, num_objects) if isinstance(num_objects, int) else tuple(num_objects)
    if not 1 <= lo <= hi <= MAX_OBJECTS:
        raise CourseInputError(f"num_objects must be an int or a (min, max) pair within 1..{MAX_OBJECTS}, got {num_objects!r}.")
    return lo, hi


def split_generator(seed: int, split: str) -> torch.Generator:
    """Return the generator of a (seed, split) stream: the three splits never share a seed."""
    check_choice(split, SPLITS, "split")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CourseInputError(f"seed must be an int >= 0, got {seed!r}.")
    return torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))


def sample_scenes(n: int, seed: int | None = 0, split: str = "train", *, num_objects=(1, MAX_OBJECTS),
                  backgrounds=None, generator: torch.Generator | None = None,
                  include_heldout: bool = False) -> list[Scene]:
    """Draw n random scenes, deterministic by (seed, split) or by a generator.   [nb 04]

    split "train" and "test" draw the same law (colour-shape pairs from TRAIN_PAIRS only) from
    different seed streams; "heldout" puts one pair of HELDOUT_PAIRS in every scene (the others from
    TRAIN_PAIRS). num_objects: an int or a (min, max) range, drawn uniformly. backgrounds: names to
    draw from (all of BACKGROUNDS by default). A generator, when given, replaces seed (the split
    still decides the pairs). include_heldout=True draws "train"/"test" objects from all pairs
    (ALL_PAIRS) with the same random numbers otherwise: images without captions, for the VAE,
    which like Stable Diffusion's is trained on a broader image set than the text-image pairs.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise CourseInputError(f"n must be an int >= 0, got {n!r}.")
    check_choice(split, SPLITS, "split")
    lo, hi = _num_objects_range(num_objects)
    backgrounds = tuple(BACKGROUNDS) if backgrounds is None else tuple([backgrounds] if isinstance(backgrounds, str) else backgrounds)
    for b in backgrounds:
        check_choice(b, BACKGROUNDS, "background")
    g = generator if generator is not None else split_generator(seed, split)
    # 1. every random number at once: counts, cells, pairs, sizes, offsets, backgrounds
    counts = torch.randint(lo, hi + 1, (n,), generator=g)
    cells = torch.rand(n, GRID * GRID, generator=g).argsort(dim=1)[:, :MAX_OBJECTS]
    pairs = ALL_PAIRS if include_heldout else TRAIN_PAIRS
    pair_idx = torch.randint(0, len(pairs), (n, MAX_OBJECTS), generator=g)
    heldout_idx = torch.randint(0, len(HELDOUT_PAIRS), (n,), generator=g)
    u_size = torch.rand(n, MAX_OBJECTS, generator=g, dtype=torch.float64)
    u_off = torch.rand(n, MAX_OBJECTS, 2, generator=g, dtype=torch.float64)
    bg_idx = torch.randint(0, len(backgrounds), (n,), generator=g)
    half = (HALF_SIZE_RANGE[0] + (HALF_SIZE_RANGE[1] - HALF_SIZE_RANGE[0]) * u_size).tolist()
    off = (JITTER * (2 * u_off - 1)).tolist()
    counts, cells, pair_idx, heldout_idx, bg_idx = (t.tolist() for t in (counts, cells, pair_idx, heldout_idx, bg_idx))
    # 2. build the structures
    scenes = []
    for i in range(n):
        objects = []
        for k in range(counts[i]):
            colour, shape = (HELDOUT_PAIRS[heldout_idx[i]] if split == "heldout" and k == 0
                             else pairs[pair_idx[i][k]])
            row, col = divmod(cells[i][k], GRID)
            objects.append(ShapeObject(shape, colour, row, col, half[i][k], off[i][k][0], off[i][k][1]))
        scenes.append(Scene(tuple(objects), backgrounds[bg_idx[i]]))
    return scenes


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

_SHAPE_ID = {s: i for i, s in enumerate(SHAPES)}
_COLOUR_RGB = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
_BG_RGB = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.float32)
_COLOUR_ID = {c: i for i, c in enumerate(COLOURS)}
_BG_ID = {b: i for i, b in enumerate(BACKGROUNDS)}


def check_size(size) -> int:
    """Return `size` if it is an int >= 8, else raise."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise CourseInputError(f"size must be an int >= 8 (pixels per side), got {size!r}.")
    return int(size)


def _pack(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    # (B, K) slots; absent objects have present = False and contribute exactly zero coverage
    b = len(scenes)
    shape = torch.zeros(b, MAX_OBJECTS, dtype=torch.long)
    colour = torch.zeros(b, MAX_OBJECTS, dtype=torch.long)
    geom = torch.zeros(b, MAX_OBJECTS, 3, dtype=torch.float64)  # cx, cy, half_size
    present = torch.zeros(b, MAX_OBJECTS, dtype=torch.bool)
    bg = torch.zeros(b, dtype=torch.long)
    rows_geom, idx = [], []
    for i, s in enumerate(scenes):
        bg[i] = _BG_ID[s.background]
        for k, o in enumerate(s.objects):
            idx.append((i, k, _SHAPE_ID[o.shape], _COLOUR_ID[o.colour]))
            rows_geom.append((*o.centre, o.half_size))
    if idx:
        ii = torch.tensor(idx, dtype=torch.long)
        shape[ii[:, 0], ii[:, 1]] = ii[:, 2]
        colour[ii[:, 0], ii[:, 1]] = ii[:, 3]
        present[ii[:, 0], ii[:, 1]] = True
        geom[ii[:, 0], ii[:, 1]] = torch.tensor(rows_geom, dtype=torch.float64)
    return {"shape": shape, "colour": colour, "geom": geom, "present": present, "bg": bg}


def _sdf_formula(shape: int, x, y, r, xp):
    # x, y: offsets from the centre in pixels (y down); xp: torch or numpy. One formula for rendering
    # (torch) and for reading images back (numpy).
    if shape == 0:  # circle
        return xp.sqrt(x**2 + y**2) - r
    if shape == 1:  # square
        return xp.maximum(xp.abs(x), xp.abs(y)) - r
    return xp.maximum(y - r, (2 * xp.abs(x) - (y + r)) / math.sqrt(5))  # triangle, apex up


def _sdf_one_shape(shape: int, cx: torch.Tensor, cy: torch.Tensor, r: torch.Tensor, size: int) -> torch.Tensor:
    # cx, cy, r: (N,) in pixels (float32); returns (N, S, S)
    coords = torch.arange(size, dtype=torch.float32) + 0.5  # pixel centres, in pixels
    x = coords[None, None, :] - cx[:, None, None]  # (N, 1, S)
    y = coords[None, :, None] - cy[:, None, None]  # (N, S, 1)
    return _sdf_formula(shape, x, y, r[:, None, None], torch)


def signed_distance(shape_id: torch.Tensor, geom: torch.Tensor, size: int) -> torch.Tensor:
    """Return the signed distance in pixels from each pixel centre to each object's outline (< 0 inside).

    circle: |p - c| - r;  square: max(|x - cx|, |y - cy|) - r;  triangle (apex up, base 2r, height 2r):
    max(y - cy - r, (2|x - cx| - (y - cy + r)) / sqrt(5)). Shapes: shape_id (...), geom (..., 3)
    = (cx, cy, r) in fractions of the side; returns (..., size, size) float32.
    """
    flat_id = shape_id.reshape(-1)
    pixels = (geom.reshape(-1, 3).double() * size).float()
    out = torch.empty(flat_id.shape[0], size, size)
    for k in range(len(SHAPES)):  # one shape at a time: each object's distance is computed once
        sel = (flat_id == k).nonzero()[:, 0]
        if len(sel):
            out[sel] = _sdf_one_shape(k, *pixels[sel].unbind(1), size)
    return out.reshape(*shape_id.shape, size, size)


def _coverage(packed: dict, size: int) -> torch.Tensor:
    # a_k = clamp(0.5 - d_k, 0, 1), exactly zero for absent slots. (B, K, S, S)
    cover = torch.zeros(*packed["present"].shape, size, size)
    b, k = packed["present"].nonzero().unbind(1)
    if len(b):
        d = signed_distance(packed["shape"][b, k], packed["geom"][b, k], size)
        cover[b, k] = (0.5 - d).clamp(0, 1)
    return cover


def _composite(packed: dict, cover: torch.Tensor) -> torch.Tensor:
    # image = bg * (1 - sum_k a_k) + sum_k a_k * colour_k, in [0, 1]; (B, 3, S, S)
    bg = _BG_RGB[packed["bg"]][:, :, None, None]  # (B, 3, 1, 1)
    col = _COLOUR_RGB[packed["colour"]]  # (B, K, 3)
    fg = (cover[:, :, None] * col[..., None, None]).sum(1)  # (B, 3, S, S)
    return bg * (1 - cover.sum(1, keepdim=True)) + fg


def render(scenes, size: int = DEFAULT_SIZE, *, chunk: int = 2048) -> torch.Tensor:
    """Render scenes to images in [-1, 1]: (3, S, S) for one Scene, (B, 3, S, S) for a list.   [nb 04]

    Vectorised over scenes and objects (about 20,000 scenes per second at 32 x 32 on one CPU core).
    """
    size = check_size(size)
    scenes, single = _as_scene_list(scenes)
    out = torch.empty(len(scenes), 3, size, size)
    for start in range(0, len(scenes), chunk):
        packed = _pack(scenes[start: start + chunk])
        out[start: start + chunk] = _composite(packed, _coverage(packed, size)) * 2 - 1
    return out[0] if single else out


def object_masks(scenes, size: int = DEFAULT_SIZE, *, soft: bool = False) -> torch.Tensor:
    """Return each object's mask: coverage > 0 (bool), or the coverage itself with soft=True.   [nb 04]

    Shapes: one Scene -> (num_objects, S, S) in reading order; a list -> (B, MAX_OBJECTS, S, S) with
    empty (all False / zero) slots after each scene's objects.
    """
    size = check_size(size)
    scenes, single = _as_scene_list(scenes)
    cover = _coverage(_pack(scenes), size)
    masks = cover if soft else cover > 0
    return masks[0, : len(scenes[0].objects)] if single else masks


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------

def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _objects_phrase(scene: Scene) -> str:
    if not scene.objects:
        return "nothing"
    return _join([f"a {o.noun} {POSITION_PHRASES[o.cell]}" for o in scene.objects])


def _relation_phrase(scene: Scene) -> str:
    a, b = scene.objects  # reading order: a is above b, or left of b in the same row
    if a.col != b.col:
        left, right = (a, b) if a.col < b.col else (b, a)
        return f"a {left.noun} to the left of a {right.noun}"
    return f"a {a.noun} above a {b.noun}"


def caption(scene: Scene, phrasing: str = "full") -> str:
    """Return an English caption of the scene.   [nb 04-06]

    phrasing (PHRASINGS):
      "full"              "a red circle on the left and a blue square at the top, on a white background"
      "objects"           "a red circle on the left and a blue square at the top"
      "background_first"  "a white background with a red circle on the left and a blue square at the top"
      "relation"          "a red circle to the left of a blue square"   (two-object scenes only)
    Objects are named in reading order (by row, then column), so a colour, shape or background edit
    changes exactly one word of the "full" caption (prompt-to-prompt word swaps align).
    """
    if not isinstance(scene, Scene):
        raise CourseInputError(f"caption() takes a Scene, got {type(scene).__name__}.")
    check_choice(phrasing, PHRASINGS, "phrasing")
    if not scene.objects:
        return f"an empty {scene.background} background"
    objects = _objects_phrase(scene)
    if phrasing == "full":
        return f"{objects}, on a {scene.background} background"
    if phrasing == "objects":
        return objects
    if phrasing == "background_first":
        return f"a {scene.background} background with {objects}"
    if len(scene.objects) != 2:
        raise CourseInputError(f"the 'relation' phrasing needs exactly two objects, this scene has {len(scene.objects)}; "
                               f"use shapes.captions(scene) for the phrasings that apply.")
    return _relation_phrase(scene)


def captions(scene: Scene) -> dict[str, str]:
    """Return every phrasing that applies to the scene: {phrasing: caption}."""
    names = [p for p in PHRASINGS if p != "relation" or len(scene.objects) == 2]
    return {p: caption(scene, p) for p in names}


def random_captions(scenes: list[Scene], generator: torch.Generator | None = None,
                    phrasings=PHRASINGS) -> list[str]:
    """Return one caption per scene, its phrasing drawn uniformly among `phrasings` that apply."""
    for p in phrasings:
        check_choice(p, PHRASINGS, "phrasing")
    u = torch.rand(len(scenes), generator=generator).tolist()
    out = []
    for scene, ui in zip(scenes, u):
        names = [p for p in phrasings if p != "relation" or len(scene.objects) == 2] or ["full"]
        out.append(caption(scene, names[int(ui * len(names))]))
    return out


def vocabulary() -> list[str]:
    """Return every word the captions use (sorted; "," counts as a word), e.g. for a tokenizer's vocabulary.   [nb 05]"""
    words = {","} | set(COLOURS) | set(SHAPES) | set(BACKGROUNDS)
    words |= {w for phrase in POSITION_PHRASES.values() for w in phrase.split()}
    words |= set("a an empty background with on and to the left of above".split())
    return sorted(words)


def _parse_objects(text: str) -> list[tuple[str, str, int, int]]:
    phrase_to_cell = {v: k for k, v in POSITION_PHRASES.items()}
    found = []
    parts = text.replace(", ", " and ").split(" and ")
    for part in parts:
        words = part.strip().split(" ", 3)
        if len(words) != 4 or words[0] != "a" or words[3] not in phrase_to_cell:
            raise CourseInputError(f"cannot read {part!r} as 'a <colour> <shape> <position phrase>' (caption {text!r}).")
        check_choice(words[1], COLOURS, "colour")
        check_choice(words[2], SHAPES, "shape")
        found.append((words[1], words[2], *phrase_to_cell[words[3]]))
    return found


def parse_caption(text: str) -> dict:
    """Read a "full", "objects" or "background_first" caption back into its structure.   [nb 06]

    Returns {"background": name or None, "objects": [{"colour", "shape", "position", "row", "col"}]},
    the same keys as Scene.describe() (without sizes). Raises CourseInputError for other text.
    """
    if not isinstance(text, str):
        raise CourseInputError(f"parse_caption() takes a str, got {type(text).__name__}.")
    background, body = None, text.strip()
    if body.startswith("an empty ") and body.endswith(" background"):
        background = body[len("an empty "): -len(" background")]
        check_choice(background, BACKGROUNDS, "background")
        return {"background": background, "objects": []}
    if body.endswith(" background") and ", on a " in body:
        body, background = body[: -len(" background")].rsplit(", on a ", 1)
    elif body.startswith("a ") and " background with " in body:
        background, body = body[2:].split(" background with ", 1)
    if background is not None:
        check_choice(background, BACKGROUNDS, "background")
    objects = [{"colour": c, "shape": s, "position": POSITIONS[(r, k)], "row": r, "col": k}
               for c, s, r, k in _parse_objects(body)]
    return {"background": background, "objects": objects}


# ----------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------

@dataclass
class ShapesDataset:
    """Images (N, 3, S, S) in [-1, 1], their scenes and one caption each."""

    images: torch.Tensor
    scenes: list[Scene]
    captions: list[str]

    def __len__(self) -> int:
        return len(self.scenes)


def make_dataset(n: int, seed: int = 0, split: str = "train", *, size: int = DEFAULT_SIZE,
                 num_objects=(1, MAX_OBJECTS), phrasings=PHRASINGS) -> ShapesDataset:
    """Draw n scenes, render them and caption each with a random phrasing; deterministic by (seed, split).   [nb 04-06]"""
    g = split_generator(seed, split)
    scenes = sample_scenes(n, split=split, num_objects=num_objects, generator=g)
    return ShapesDataset(render(scenes, size), scenes, random_captions(scenes, g, phrasings))


def image_batches(batch_size: int, split: str = "train", *, size: int = DEFAULT_SIZE,
                  num_objects=(1, MAX_OBJECTS), include_heldout: bool = False):
    """Return data(generator) -> {"x0": (B, 3, S, S)}: fresh scenes every call, for training.train.   [nb 04]

    include_heldout: draw objects from ALL_PAIRS (see sample_scenes), as the VAE's training does.
    """
    check_size(size)
    _num_objects_range(num_objects)
    if split == "heldout":
        raise CourseInputError("train on split 'train'; 'heldout' scenes are kept for evaluation.")

    def data(generator: torch.Generator) -> dict:
        scenes = sample_scenes(batch_size, split=split, num_objects=num_objects, generator=generator,
                               include_heldout=include_heldout)
        return {"x0": render(scenes, size)}

    return data


# ----------------------------------------------------------------------------------------------
# Edits with exact ground truth
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Edit:
    """One edit of a scene.   [nb 07-08]

    kind "colour": object `index` (reading order) gets colour `value`;  "shape": gets shape `value`;
    "background": the background becomes `value`;  "add": `obj` (a ShapeObject in a free cell) is
    added;  "remove": object `index` is removed.
    """

    kind: str
    index: int | None = None
    value: str | None = None
    obj: ShapeObject | None = None

    def __post_init__(self):
        check_choice(self.kind, EDIT_KINDS, "edit kind")
        need = {"colour": ("index", "value"), "shape": ("index", "value"), "background": ("value",),
                "add": ("obj",), "remove": ("index",)}[self.kind]
        for name in need:
            if getattr(self, name) is None:
                raise CourseInputError(f"a {self.kind!r} edit needs {' and '.join(need)}; {name} is missing.")
        if self.kind == "add" and not isinstance(self.obj, ShapeObject):
            raise CourseInputError("an 'add' edit needs obj=ShapeObject(...).")


def apply_edit(scene: Scene, edit: Edit) -> Scene:
    """Return the target scene: `scene` with `edit` applied (sizes and offsets kept).   [nb 07]"""
    if not isinstance(scene, Scene) or not isinstance(edit, Edit):
        raise CourseInputError("apply_edit(scene, edit) takes a Scene and an Edit.")
    objects = list(scene.objects)
    if edit.kind in ("colour", "shape", "remove"):
        if isinstance(edit.index, bool) or not isinstance(edit.index, int) or not 0 <= edit.index < len(objects):
            raise CourseInputError(f"edit index {edit.index!r} is out of range: the scene has {len(objects)} object(s), "
                                   f"indexed 0..{len(objects) - 1} in reading order.")
    if edit.kind == "colour":
        check_choice(edit.value, COLOURS, "colour")
        if objects[edit.index].colour == edit.value:
            raise CourseInputError(f"object {edit.index} is already {edit.value}: the edit would change nothing.")
        objects[edit.index] = replace(objects[edit.index], colour=edit.value)
        return Scene(tuple(objects), scene.background)
    if edit.kind == "shape":
        check_choice(edit.value, SHAPES, "shape")
        if objects[edit.index].shape == edit.value:
            raise CourseInputError(f"object {edit.index} is already a {edit.value}: the edit would change nothing.")
        objects[edit.index] = replace(objects[edit.index], shape=edit.value)
        return Scene(tuple(objects), scene.background)
    if edit.kind == "background":
        check_choice(edit.value, BACKGROUNDS, "background")
        if scene.background == edit.value:
            raise CourseInputError(f"the background is already {edit.value}: the edit would change nothing.")
        return Scene(tuple(objects), edit.value)
    if edit.kind == "remove":
        del objects[edit.index]
        return Scene(tuple(objects), scene.background)
    # add
    if len(objects) >= MAX_OBJECTS:
        raise CourseInputError(f"the scene already holds {MAX_OBJECTS} objects; remove one before adding.")
    if edit.obj.cell not in scene.free_cells():
        raise CourseInputError(f"the cell {edit.obj.position!r} is taken; free cells: "
                               f"{[POSITIONS[c] for c in scene.free_cells()]}.")
    return Scene(tuple(objects) + (edit.obj,), scene.background)


def instruction(scene: Scene, edit: Edit) -> str:
    """Return the edit as an English instruction, e.g. "make the red circle on the left blue"."""
    if edit.kind == "background":
        return f"make the background {edit.value}"
    if edit.kind == "add":
        return f"add a {edit.obj.noun} {POSITION_PHRASES[edit.obj.cell]}"
    o = scene.objects[edit.index]
    name = f"the {o.noun} {POSITION_PHRASES[o.cell]}"
    return {"colour": f"make {name} {edit.value}", "shape": f"turn {name} into a {edit.value}",
            "remove": f"remove {name}"}[edit.kind]


def read_instruction(scene: Scene, text: str) -> Edit:
    """Return the Edit whose canonical instruction (instruction()) is `text`, for this scene; raise if none is.   [nb 09]"""
    candidates = [Edit("background", value=b) for b in BACKGROUNDS if b != scene.background]
    for i, o in enumerate(scene.objects):
        candidates += [Edit("colour", index=i, value=c) for c in COLOURS if c != o.colour]
        candidates += [Edit("shape", index=i, value=s) for s in SHAPES if s != o.shape]
        if len(scene.objects) > 1:
            candidates.append(Edit("remove", index=i))
    if len(scene.objects) < MAX_OBJECTS:
        candidates += [Edit("add", obj=ShapeObject(s, c, r, k)) for r, k in scene.free_cells() for c, s in ALL_PAIRS]
    for edit in candidates:
        if instruction(scene, edit) == text:
            return edit
    raise CourseInputError(f"{text!r} is not a canonical instruction for this scene ({caption(scene)!r}); "
                           f"canonical instructions read like {instruction(scene, candidates[0])!r}.")


def scene_from_caption(caption: str) -> Scene:
    """Return the Scene a "full", "objects" or "background_first" caption describes (default sizes, no offsets; black if unnamed)."""
    d = parse_caption(caption)
    return Scene.from_dict({"background": d["background"] or "black", "objects": d["objects"]})


def caption_edit(source_caption: str, target_caption: str) -> tuple[Scene, Edit]:
    """Return (source scene, the one Edit) that turns source_caption's scene into target_caption's.   [nb 09]

    Raises CourseInputError when the captions describe the same scene or differ by more than one edit.
    """
    source, target = scene_from_caption(source_caption), scene_from_caption(target_caption)
    src = {o.cell: o for o in source.objects}
    tgt = {o.cell: o for o in target.objects}
    changes = []
    if source.background != target.background:
        changes.append(Edit("background", value=target.background))
    for cell in sorted(set(src) | set(tgt)):
        a, b = src.get(cell), tgt.get(cell)
        index = next((i for i, o in enumerate(source.objects) if o.cell == cell), None)
        if a is None:
            changes.append(Edit("add", obj=ShapeObject(b.shape, b.colour, b.row, b.col)))
        elif b is None:
            changes.append(Edit("remove", index=index))
        elif a.colour != b.colour and a.shape == b.shape:
            changes.append(Edit("colour", index=index, value=b.colour))
        elif a.shape != b.shape and a.colour == b.colour:
            changes.append(Edit("shape", index=index, value=b.shape))
        elif a.shape != b.shape:
            changes.append(None)  # colour and shape at once: not one edit
    if len(changes) != 1 or changes[0] is None:
        what = "the same scene" if not changes else f"{len(changes)} changes"
        raise CourseInputError(f"{source_caption!r} -> {target_caption!r} is {what}, not one edit of the shapes world "
                               f"(a colour, a shape, the background, one object added or removed).")
    return source, changes[0]


def canonical_instruction(source_caption: str, target_caption: str) -> str:
    """Return the canonical instruction (instruction) of the one edit between two captions.   [nb 09]"""
    scene, edit = caption_edit(source_caption, target_caption)
    return instruction(scene, edit)


def _changed_support(source: Scene, target: Scene, size: int) -> torch.Tensor:
    # The pixels whose value depends on anything that differs between the two scenes: the supports
    # of every object not present identically in both, and all visible background if it changed.
    cover = _coverage(_pack([source, target]), size)  # (2, K, S, S)
    mask = torch.zeros(size, size, dtype=torch.bool)
    src, tgt = set(source.objects), set(target.objects)
    for k, o in enumerate(source.objects):
        if o not in tgt:
            mask |= cover[0, k] > 0
    for k, o in enumerate(target.objects):
        if o not in src:
            mask |= cover[1, k] > 0
    if source.background != target.background:
        mask |= cover[0].sum(0) < 1
    return mask


@dataclass
class EditResult:
    """An edit with its exact ground truth: the images, the mask of what may change, and the captions.   [nb 07-08]

    source_image, target_image: (3, S, S) in [-1, 1]; mask: (S, S) bool, True where the edit may change
    pixels (outside it the two images are equal); captions in the "full" phrasing.
    """

    source: Scene
    target: Scene
    edit: Edit
    source_image: torch.Tensor
    target_image: torch.Tensor
    mask: torch.Tensor
    source_caption: str
    target_caption: str
    instruction: str
    extra: dict = field(default_factory=dict)


def make_edit(scene: Scene, edit: Edit, size: int = DEFAULT_SIZE) -> EditResult:
    """Apply `edit` and render source, target and the edit mask, with source and target captions.   [nb 07-08]"""
    size = check_size(size)
    target = apply_edit(scene, edit)
    images = render([scene, target], size)
    return EditResult(scene, target, edit, images[0], images[1], _changed_support(scene, target, size),
                      caption(scene, "full"), caption(target, "full"), instruction(scene, edit))


def possible_edit_kinds(scene: Scene) -> list[str]:
    """Return the edit kinds random_edit can draw for this scene (add needs a free slot, remove two objects)."""
    kinds = ["background"]
    if scene.objects:
        kinds[:0] = ["colour", "shape"]
    if len(scene.objects) < MAX_OBJECTS:
        kinds.append("add")
    if len(scene.objects) >= 2:
        kinds.append("remove")
    return kinds


def random_edit(scene: Scene, generator: torch.Generator | None = None, kinds=EDIT_KINDS, *,
                allow_heldout: bool = False) -> Edit:
    """Draw a valid edit of one of `kinds` for the scene (uniform over kinds, objects and new values).   [nb 07]

    With allow_heldout=False (the default) no edit creates a held-out colour-shape pair.
    """
    for k in kinds:
        check_choice(k, EDIT_KINDS, "edit kind")
    u = torch.rand(8, generator=generator, dtype=torch.float64).tolist()

    def pick(options, ui):
        return options[min(int(ui * len(options)), len(options) - 1)]

    def ok(colour, shape):
        return allow_heldout or (colour, shape) not in HELDOUT_PAIRS

    candidates = []  # (kind, index, value) triples that are valid, per kind
    for kind in [k for k in kinds if k in possible_edit_kinds(scene)]:
        if kind == "colour":
            options = [(i, c) for i, o in enumerate(scene.objects) for c in COLOURS if c != o.colour and ok(c, o.shape)]
        elif kind == "shape":
            options = [(i, s) for i, o in enumerate(scene.objects) for s in SHAPES if s != o.shape and ok(o.colour, s)]
        elif kind == "background":
            options = [(None, b) for b in BACKGROUNDS if b != scene.background]
        elif kind == "remove":
            options = [(i, None) for i in range(len(scene.objects))]
        else:
            options = [(None, cell) for cell in scene.free_cells()]
        if options:
            candidates.append((kind, options))
    if not candidates:
        raise CourseInputError(f"no edit of kinds {tuple(kinds)} applies to this scene; "
                               f"possible kinds here: {possible_edit_kinds(scene)}.")
    kind, options = pick(candidates, u[0])
    index, value = pick(options, u[1])
    if kind == "add":
        colour, shape = pick(TRAIN_PAIRS + (HELDOUT_PAIRS if allow_heldout else ()), u[2])
        half = HALF_SIZE_RANGE[0] + (HALF_SIZE_RANGE[1] - HALF_SIZE_RANGE[0]) * u[3]
        obj = ShapeObject(shape, colour, value[0], value[1], half, JITTER * (2 * u[4] - 1), JITTER * (2 * u[5] - 1))
        return Edit("add", obj=obj)
    return Edit(kind, index=index, value=value)


def edit_cases(n: int, seed: int = 0, *, kinds=EDIT_KINDS, size: int = DEFAULT_SIZE, split: str = "test",
               num_objects=(1, MAX_OBJECTS), allow_heldout: bool = False) -> list[EditResult]:
    """Return n edit cases, kinds in turn (kinds[i % len(kinds)]), deterministic by (seed, split).   [nb 07-08]

    Scenes come from `split` ("test" by default: the training law, but never the training seeds'
    scenes); a scene that cannot take the next kind (add to a full scene, remove from a one-object
    scene) is skipped. edit_cases(m) is the first m of edit_cases(n) for m < n. This is the ShapesEdit
    benchmark's source.
    """
    for k in kinds:
        check_choice(k, EDIT_KINDS, "edit kind")
    if not kinds:
        raise CourseInputError("kinds must name at least one edit kind.")
    size = check_size(size)
    lo, hi = _num_objects_range(num_objects)
    if "remove" in kinds and hi < 2 or "add" in kinds and lo >= MAX_OBJECTS:
        raise CourseInputError(f"num_objects={num_objects!r} leaves no scene that can take every kind in {tuple(kinds)}: "
                               f"'remove' needs scenes of 2+ objects, 'add' scenes of at most {MAX_OBJECTS - 1}.")
    g = split_generator(seed, split)
    g.manual_seed(g.initial_seed() + 1_000_003)  # a stream apart from sample_scenes(seed=seed, split=split)
    cases = []
    while len(cases) < n:
        for scene in sample_scenes(64, split=split, num_objects=num_objects, generator=g):  # fixed chunks: a prefix of
            # edit_cases(n) is edit_cases(m) for m < n
            if len(cases) == n:
                break
            kind = kinds[len(cases) % len(kinds)]
            if kind not in possible_edit_kinds(scene):
                continue
            cases.append(make_edit(scene, random_edit(scene, g, (kind,), allow_heldout=allow_heldout), size))
    return cases


# ----------------------------------------------------------------------------------------------
# Reading an image back: the judge of colour, shape and position
# ----------------------------------------------------------------------------------------------

def _check_image(image) -> np.ndarray:
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise CourseInputError("image must be a float tensor (3, S, S) in [-1, 1].")
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2] or image.shape[1] < 8:
        raise CourseInputError(f"image must have shape (3, S, S) with S >= 8, got {tuple(image.shape)}.")
    return image.detach().double().cpu().numpy()


_COLOUR_NP = np.array(list(COLOURS.values()))
TEMPLATE_BLURS = (0.5, 0.8, 1.1)  # Gaussian blurs (pixels) of the shape templates read_scene also tries
_BG_NP = np.array(list(BACKGROUNDS.values()))


def read_scene(image: torch.Tensor, *, min_area: float = 4.0) -> Scene | None:
    """Read background, colours, shapes and cells back from an image of the shapes world.   [nb 06-08]

    1. background: the palette colour nearest the median of the border pixels;
    2. each pixel p is explained as the background b blended with the object colour c that fits it
       best: alpha_c = clamp(<p - b, c - b> / |c - b|^2, 0, 1); pixels with alpha >= 0.5 are
       labelled with that colour;
    3. connected regions of one colour (grown by one pixel to take in their soft edges) with total
       alpha >= min_area pixels are objects;
    4. each object's shape is the template (circle, square, triangle) of the same area and centroid,
       drawn with the renderer's own distance functions, sharp or blurred (TEMPLATE_BLURS, as a
       decoder's output is), that differs least from the region's alpha map; its cell is the one
       holding the fitted centre.
    Returns a Scene (sizes and offsets clipped to their valid ranges; if two regions fall in one cell
    the larger is kept) or None when more than MAX_OBJECTS regions are found. Works in numpy (about
    1 ms per 32 x 32 image); never raises on a strange image.
    """
    from scipy import ndimage

    x = (np.clip(_check_image(image), -1, 1) + 1) / 2  # (3, S, S) in [0, 1]
    s = x.shape[-1]
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)  # (3, 4S)
    bg_id = int(((_BG_NP - np.median(border, axis=1)) ** 2).sum(1).argmin())
    diff = x - _BG_NP[bg_id][:, None, None]  # (3, S, S)
    direction = _COLOUR_NP - _BG_NP[bg_id]  # (C, 3)
    alpha = np.clip((direction[:, :, None, None] * diff[None]).sum(1) / (direction**2).sum(1)[:, None, None], 0, 1)
    resid = np.linalg.norm(diff[None] - alpha[:, None] * direction[:, :, None, None], axis=1)  # (C, S, S)
    best = resid.argmin(0)
    best_alpha = np.take_along_axis(alpha, best[None], 0)[0]
    regions = []  # (area, colour id, alpha map)
    for c in range(len(COLOURS)):
        labels, count = ndimage.label((best == c) & (best_alpha >= 0.5), structure=np.ones((3, 3)))
        for k in range(1, count + 1):
            grown = ndimage.binary_dilation(labels == k, structure=np.ones((3, 3)))
            a = np.where(grown & (best == c), alpha[c], 0.0)
            if a.sum() >= min_area:
                regions.append((a.sum(), c, a))
    background = list(BACKGROUNDS)[bg_id]
    if not regions:
        return Scene((), background)
    # templates of equal area and centroid, for every region and shape at once
    amap = np.stack([r[2] for r in regions])  # (n, S, S)
    coords = np.arange(s) + 0.5
    area = amap.sum((1, 2))
    mx = (amap.sum(1) * coords).sum(1) / area  # centroid, pixels
    my = (amap.sum(2) * coords).sum(1) / area
    half = np.stack([np.sqrt(area / math.pi), np.sqrt(area) / 2, np.sqrt(area / 2)], 1)  # (n, 3), pixels
    centre_y = np.stack([my, my, my - half[:, 2] / 3], 1)  # a triangle's centroid lies r/3 below its centre
    templates = np.stack([
        np.clip(0.5 - _sdf_formula(k, coords[None, None, :] - mx[:, None, None],
                                   coords[None, :, None] - centre_y[:, k, None, None], half[:, k, None, None], np), 0, 1)
        for k in range(len(SHAPES))], 1)  # (n, 3, S, S)
    # a decoder blurs edges: compare with each template sharp and blurred, and keep the best fit per shape
    error = np.abs(templates - amap[:, None]).sum((2, 3))  # (n, 3)
    for sigma in TEMPLATE_BLURS:
        blurred = ndimage.gaussian_filter(templates, sigma=(0, 0, sigma, sigma), mode="constant")
        error = np.minimum(error, np.abs(blurred - amap[:, None]).sum((2, 3)))
    found = {}
    for i in np.argsort(-area, kind="stable"):
        k = int(error[i].argmin())
        cx, cy, r = mx[i] / s, centre_y[i, k] / s, half[i, k] / s
        cell = (min(max(int(cy * GRID), 0), GRID - 1), min(max(int(cx * GRID), 0), GRID - 1))
        if cell in found:
            continue
        ccx, ccy = _cell_centre(*cell)
        found[cell] = ShapeObject(
            SHAPES[k], list(COLOURS)[regions[i][1]], *cell, float(np.clip(r, *HALF_SIZE_RANGE)),
            float(np.clip(cx - ccx, -JITTER, JITTER)), float(np.clip(cy - ccy, -JITTER, JITTER)))
    if len(found) > MAX_OBJECTS:
        return None
    return Scene(tuple(found.values()), background)


@dataclass(frozen=True)
class Judgement:
    """Whether an image shows what was asked: per attribute, and all together.   [nb 06-08]

    colour / shape / position: every expected object is matched (one to one) by a found object with
    that attribute right; count: as many objects found as expected; background: None when the
    expectation names none. ok: all of these.
    """

    colour: bool
    shape: bool
    position: bool
    count: bool
    background: bool | None
    found: Scene | None

    @property
    def ok(self) -> bool:
        return self.colour and self.shape and self.position and self.count and self.background is not False


def judge(image: torch.Tensor, expected) -> Judgement:
    """Check an image against a Scene, a caption, or parse_caption()'s dict.   [nb 06-08]

    The found objects are matched to the expected ones by the assignment that agrees on the most
    attributes; each attribute is right when it agrees for every expected object.
    """
    if isinstance(expected, str):
        expected = parse_caption(expected)
    elif isinstance(expected, Scene):
        expected = expected.describe()
    if not isinstance(expected, dict) or "objects" not in expected:
        raise CourseInputError("expected must be a Scene, a caption, or a dict from parse_caption().")
    want = [(o["colour"], o["shape"], (o["row"], o["col"])) for o in expected["objects"]]
    found = read_scene(image)
    got = [] if found is None else [(o.colour, o.shape, o.cell) for o in found.objects]
    best = (-1, [False] * 3)
    padded = got + [None] * len(want)
    for perm in itertools.permutations(range(len(padded)), len(want)):
        checks = [[padded[j] is not None and padded[j][a] == w[a] for a in range(3)] for w, j in zip(want, perm)]
        score = sum(map(sum, checks))
        if score > best[0]:
            best = (score, [all(c[a] for c in checks) for a in range(3)])
    colour_ok, shape_ok, position_ok = best[1]
    background = None if expected.get("background") is None else (found is not None and found.background == expected["background"])
    return Judgement(colour_ok, shape_ok, position_ok, found is not None and len(got) == len(want), background, found)
