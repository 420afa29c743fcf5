"""Reading an image back: the judge of colour, shape and position.   [nb 06-08]"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from course_lib.shapes.captioning import parse_caption
from course_lib.shapes.rendering import shape_distance
from course_lib.shapes.scene import Scene, ShapeObject
from course_lib.shapes.world import BACKGROUNDS, COLOURS, GRID, HALF_SIZE_RANGE, JITTER, MAX_OBJECTS, SHAPES, cell_centre
from course_lib.validation import CourseInputError, check_number

_COLOUR_NP = np.array(list(COLOURS.values()))
TEMPLATE_BLURS = (0.5, 0.8, 1.1)  # Gaussian blurs (pixels) of the shape templates read_scene also tries
_BG_NP = np.array(list(BACKGROUNDS.values()))
MIN_AREA = 4.0  # pixels of total alpha a region needs to count as an object
RANGE_SLACK = 0.5  # read_scene clips values up to this far outside [-1, 1] (a decoder overshoots); beyond, it refuses


def _check_image(image) -> np.ndarray:
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise CourseInputError("image must be a float tensor (3, S, S) in [-1, 1].")
    if image.ndim != 3 or image.shape[0] != 3 or image.shape[1] != image.shape[2] or image.shape[1] < 8:
        raise CourseInputError(f"image must have shape (3, S, S) with S >= 8, got {tuple(image.shape)}.")
    x = image.detach().double().cpu().numpy()
    if not np.isfinite(x).all():
        raise CourseInputError(f"image holds {int((~np.isfinite(x)).sum())} NaN or infinite values; "
                               f"the judge reads images in [-1, 1].")
    if x.min() < -1 - RANGE_SLACK or x.max() > 1 + RANGE_SLACK:
        raise CourseInputError(f"image values span [{x.min():.3g}, {x.max():.3g}]; the judge reads images in [-1, 1]. "
                               f"Convert first: x * 2 - 1 from [0, 1], x / 127.5 - 1 from [0, 255].")
    return x


def read_scene(image: torch.Tensor, *, min_area: float = MIN_AREA) -> Scene | None:
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
    1 ms per 32 x 32 image). Any finite image in [-1, 1] (up to RANGE_SLACK outside, clipped) is
    read without raising; NaN, infinities and images in another range are refused.
    """
    x = _check_image(image)
    min_area = check_number(min_area, "min_area", low=0, hint="pixels of total alpha an object needs")
    return _read_scene(x, min_area)


def _read_scene(x: np.ndarray, min_area: float) -> Scene | None:
    from scipy import ndimage  # imported when an image is first read, not with the package

    x = (np.clip(x, -1, 1) + 1) / 2  # (3, S, S) in [0, 1]
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
        np.clip(0.5 - shape_distance(k, coords[None, None, :] - mx[:, None, None],
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
        ccx, ccy = cell_centre(*cell)
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


def _expected_objects(expected) -> tuple[list[tuple], str | None]:
    if isinstance(expected, str):
        expected = parse_caption(expected)
    elif isinstance(expected, Scene):
        expected = expected.describe()
    if not isinstance(expected, dict) or not isinstance(expected.get("objects"), (list, tuple)):
        raise CourseInputError("expected must be a Scene, a caption, or a dict from parse_caption().")
    want = []
    for o in expected["objects"]:
        if not isinstance(o, dict) or any(k not in o for k in ("colour", "shape", "row", "col")):
            raise CourseInputError(f"each expected object needs colour, shape, row and col (parse_caption's keys), got {o!r}.")
        want.append((o["colour"], o["shape"], (o["row"], o["col"])))
    return want, expected.get("background")


def judge(image: torch.Tensor, expected) -> Judgement:
    """Check an image against a Scene, a caption, or parse_caption()'s dict.   [nb 06-08]

    The found objects are matched to the expected ones by the assignment that agrees on the most
    attributes; each attribute is right when it agrees for every expected object.
    """
    want, background_wanted = _expected_objects(expected)
    found = _read_scene(_check_image(image), MIN_AREA)
    got = [] if found is None else [(o.colour, o.shape, o.cell) for o in found.objects]
    best = (-1, [False] * 3)
    padded = got + [None] * len(want)
    for perm in itertools.permutations(range(len(padded)), len(want)):
        checks = [[padded[j] is not None and padded[j][a] == w[a] for a in range(3)] for w, j in zip(want, perm)]
        score = sum(map(sum, checks))
        if score > best[0]:
            best = (score, [all(c[a] for c in checks) for a in range(3)])
    colour_ok, shape_ok, position_ok = best[1]
    background = None if background_wanted is None else (found is not None and found.background == background_wanted)
    return Judgement(colour_ok, shape_ok, position_ok, found is not None and len(got) == len(want), background, found)
