"""Data sets of the shapes world: rendered scenes with captions, and fresh image batches for training.   [nb 04-06]"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib import noise
from course_lib.shapes.captioning import random_captions
from course_lib.shapes.rendering import check_size, render
from course_lib.shapes.sampling import check_num_objects, sample_scenes, split_generator
from course_lib.shapes.scene import Scene
from course_lib.shapes.world import DEFAULT_SIZE, MAX_OBJECTS, PHRASINGS, SPLITS
from course_lib.validation import CourseInputError, check_choice, check_int


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
    check_size(size)
    g = split_generator(seed, split)
    scenes = sample_scenes(n, split=split, num_objects=num_objects, generator=g)
    return ShapesDataset(render(scenes, size), scenes, random_captions(scenes, g, phrasings))


def image_batches(batch_size: int, split: str = "train", *, size: int = DEFAULT_SIZE,
                  num_objects=(1, MAX_OBJECTS), include_heldout: bool = False):
    """Return data(generator) -> {"x0": (B, 3, S, S)}: fresh scenes every call, for training.train.   [nb 04]

    include_heldout: draw objects from ALL_PAIRS (see sample_scenes), as the VAE's training does.
    data() takes a torch.Generator or an int seed.
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    size = check_size(size)
    check_num_objects(num_objects)
    check_choice(split, SPLITS, "split")
    if split == "heldout":
        raise CourseInputError("train on split 'train'; 'heldout' scenes are kept for evaluation.")

    def data(generator: torch.Generator | int) -> dict:
        scenes = sample_scenes(batch_size, split=split, num_objects=num_objects, generator=noise.as_generator(generator),
                               include_heldout=include_heldout)
        return {"x0": render(scenes, size)}

    return data
