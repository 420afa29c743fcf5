"""Sampling scenes: random scenes of a split, deterministic by (seed, split) or by a generator.   [nb 04]"""

from __future__ import annotations

import torch

from course_lib import noise
from course_lib.shapes.scene import Scene, ShapeObject
from course_lib.shapes.world import ALL_PAIRS, BACKGROUNDS, GRID, HALF_SIZE_RANGE, HELDOUT_PAIRS, JITTER, MAX_OBJECTS, \
    SPLITS, TRAIN_PAIRS
from course_lib.validation import CourseInputError, check_choice, check_int


def check_num_objects(num_objects) -> tuple[int, int]:
    """Return num_objects (an int, or a (min, max) pair) as a (min, max) range within 1..MAX_OBJECTS, else raise."""
    message = f"num_objects must be an int or a (min, max) pair within 1..{MAX_OBJECTS}, got {num_objects!r}."
    if isinstance(num_objects, (list, tuple)) and len(num_objects) == 2:
        pair = num_objects
    elif isinstance(num_objects, (list, tuple)):
        raise CourseInputError(message)
    else:
        pair = (num_objects, num_objects)
    try:
        lo, hi = (check_int(v, "num_objects") for v in pair)
    except CourseInputError:
        raise CourseInputError(message) from None
    if not 1 <= lo <= hi <= MAX_OBJECTS:
        raise CourseInputError(message)
    return lo, hi


def split_generator(seed: int, split: str) -> torch.Generator:
    """Return the generator of a (seed, split) stream: seed * 3 + the split's index, so the three splits never share a seed."""
    check_choice(split, SPLITS, "split")
    seed = check_int(seed, "seed", minimum=0)
    return torch.Generator().manual_seed(seed * len(SPLITS) + SPLITS.index(split))


def sample_scenes(n: int, seed: int | None = 0, split: str = "train", *, num_objects=(1, MAX_OBJECTS),
                  backgrounds=None, generator: torch.Generator | int | None = None,
                  include_heldout: bool = False) -> list[Scene]:
    """Draw n random scenes, deterministic by (seed, split) or by a generator.   [nb 04]

    split "train" and "test" draw the same law (colour-shape pairs from TRAIN_PAIRS only) from
    different seed streams; "heldout" puts one pair of HELDOUT_PAIRS in every scene (the others from
    TRAIN_PAIRS). num_objects: an int or a (min, max) range, drawn uniformly. backgrounds: names to
    draw from (all of BACKGROUNDS by default). A generator (or an int seed for one), when given,
    replaces seed (the split still decides the pairs). include_heldout=True draws "train"/"test"
    objects from all pairs (ALL_PAIRS) with the same random numbers otherwise: images without
    captions, for the VAE, which like Stable Diffusion's is trained on a broader image set than the
    text-image pairs.
    """
    n = check_int(n, "n", minimum=0, hint="the number of scenes")
    check_choice(split, SPLITS, "split")
    lo, hi = check_num_objects(num_objects)
    backgrounds = tuple(BACKGROUNDS) if backgrounds is None else tuple([backgrounds] if isinstance(backgrounds, str) else backgrounds)
    if not backgrounds:
        raise CourseInputError(f"backgrounds must name at least one of {tuple(BACKGROUNDS)} (None: all of them).")
    for b in backgrounds:
        check_choice(b, BACKGROUNDS, "background")
    g = noise.as_generator(generator) if generator is not None else split_generator(seed, split)
    return _draw_scenes(n, split, lo, hi, backgrounds, g, include_heldout)


def _draw_scenes(n: int, split: str, lo: int, hi: int, backgrounds: tuple, g: torch.Generator,
                 include_heldout: bool) -> list[Scene]:
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
