"""Rendering scenes: signed distances, anti-aliased coverage, and the composite image.   [nb 04]

    image = background * (1 - sum_k a_k) + sum_k a_k * colour_k,      a_k = clamp(0.5 - d_k, 0, 1)

where d_k is the signed distance (in pixels) from the pixel centre to object k's outline.
"""

from __future__ import annotations

import math

import torch

from course_lib.shapes.scene import Scene, check_scene, check_scenes
from course_lib.shapes.world import BACKGROUNDS, COLOURS, DEFAULT_SIZE, MAX_OBJECTS, SHAPES
from course_lib.validation import CourseInputError, check_int

_SHAPE_ID = {s: i for i, s in enumerate(SHAPES)}
_COLOUR_RGB = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
_BG_RGB = torch.tensor(list(BACKGROUNDS.values()), dtype=torch.float32)
_COLOUR_ID = {c: i for i, c in enumerate(COLOURS)}
_BG_ID = {b: i for i, b in enumerate(BACKGROUNDS)}


def check_size(size) -> int:
    """Return `size` as an int if it is an int >= 8 (numpy integers too), else raise."""
    return check_int(size, "size", minimum=8, hint="pixels per side")


def _as_scene_list(scenes) -> tuple[list[Scene], bool]:
    if isinstance(scenes, Scene):
        return [scenes], True
    return check_scenes(scenes, "scenes (a Scene or a list of them)"), False


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


def shape_distance(shape: int, x, y, r, xp):
    """Return the signed distance to one shape's outline (< 0 inside), in torch or numpy (xp).

    x, y: offsets from the centre in pixels (y down); r: the half-size. circle: sqrt(x^2 + y^2) - r;
    square: max(|x|, |y|) - r; triangle (apex up): max(y - r, (2|x| - (y + r)) / sqrt(5)). One formula
    for rendering (torch) and for reading images back (numpy, shapes.read_scene).
    """
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
    return shape_distance(shape, x, y, r[:, None, None], torch)


def signed_distance(shape_id: torch.Tensor, geom: torch.Tensor, size: int) -> torch.Tensor:
    """Return the signed distance in pixels from each pixel centre to each object's outline (< 0 inside).

    circle: |p - c| - r;  square: max(|x - cx|, |y - cy|) - r;  triangle (apex up, base 2r, height 2r):
    max(y - cy - r, (2|x - cx| - (y - cy + r)) / sqrt(5)). Shapes: shape_id (...) integers in
    0..len(SHAPES)-1, geom (..., 3) = (cx, cy, r) in fractions of the side; returns (..., size, size) float32.
    """
    size = check_size(size)
    if not isinstance(shape_id, torch.Tensor) or shape_id.is_floating_point() or shape_id.dtype == torch.bool:
        raise CourseInputError("shape_id must be an integer tensor of shape indices into shapes.SHAPES.")
    if shape_id.numel() and not bool(((shape_id >= 0) & (shape_id < len(SHAPES))).all()):
        raise CourseInputError(f"shape_id must hold indices 0..{len(SHAPES) - 1} into shapes.SHAPES {SHAPES}, "
                               f"got values {sorted(set(shape_id.flatten().tolist()))}.")
    if not isinstance(geom, torch.Tensor) or not geom.is_floating_point() or tuple(geom.shape) != (*shape_id.shape, 3):
        got = tuple(geom.shape) if isinstance(geom, torch.Tensor) else type(geom).__name__
        raise CourseInputError(f"geom must be a float tensor of shape {(*shape_id.shape, 3)} (cx, cy, r per object, "
                               f"fractions of the side), got {got}.")
    if not bool(torch.isfinite(geom).all()):
        raise CourseInputError("geom holds NaN or infinite values; give finite (cx, cy, r) per object.")
    return _signed_distance(shape_id, geom, size)


def _signed_distance(shape_id: torch.Tensor, geom: torch.Tensor, size: int) -> torch.Tensor:
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
        d = _signed_distance(packed["shape"][b, k], packed["geom"][b, k], size)
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
    chunk = check_int(chunk, "chunk", minimum=1, hint="scenes rendered at once")
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


def changed_support(source: Scene, target: Scene, size: int) -> torch.Tensor:
    """Return the (S, S) bool mask of pixels whose value depends on anything that differs between two scenes.   [nb 07]

    The supports (a_k > 0) of every object not present identically in both scenes, and all visible
    background if the background changed: outside this mask the two renderings are bitwise equal.
    """
    check_scene(source, "source"), check_scene(target, "target")
    size = check_size(size)
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
