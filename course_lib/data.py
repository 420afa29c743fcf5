"""Data the course uses: a bundled photo, and (notebook 03) toy 2D sets and digits.   [notebooks 01-03]

Everything here is generated or comes bundled with an installed package: nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib import mixtures
from course_lib import noise as noise_lib
from course_lib.validation import CourseInputError, check_choice, check_int, check_number, check_positive_int

PHOTOS = ("chelsea", "astronaut", "coffee", "rocket")  # scikit-image's bundled sample photos


def load_photo(name: str = "chelsea", size: int = 128) -> torch.Tensor:
    """Return a bundled scikit-image photo as a (3, size, size) float tensor in [-1, 1], centre-cropped."""
    check_choice(name, PHOTOS, "photo name")
    size = check_int(size, "size", minimum=8)
    from skimage import data as skdata
    from skimage.transform import resize

    image = getattr(skdata, name)()  # (H, W, 3) uint8
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top: top + side, left: left + side]
    image = resize(image, (size, size), anti_aliasing=True)  # float64 in [0, 1]
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float() * 2 - 1


# ----------------------------------------------------------------------------------------------
# Notebook 03: toy 2D sets, digits, and a batch sampler that takes a generator
# ----------------------------------------------------------------------------------------------

TOY_2D = ("two_moons", "swiss_roll", "ring")


def two_moons(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """Draw n points of two interleaved half circles, centred and scaled to unit std per axis.   [nb 03]

    The same shape as scikit-learn's make_moons (radius 1, the second moon shifted by (1, 0.5) and
    flipped), drawn from a torch generator (or an int seed); `noise` is the Gaussian jitter before scaling.
    Shapes: (n, 2).
    """
    n, generator, noise = _check_draw(n, generator, noise)
    which = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * np.pi
    upper = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    lower = torch.stack([1 - torch.cos(angle), 0.5 - torch.sin(angle)], dim=1)
    x = torch.where(which[:, None], upper, lower) + noise * noise_lib.randn((n, 2), generator)
    # Standardise with the noise-free moons' population mean (0.5, 0.25) and stds (sqrt(3)/2, 0.494),
    # so that every draw uses the same map.
    return (x - torch.tensor([0.5, 0.25])) / torch.tensor([0.866, 0.494])


def swiss_roll(n: int, generator: torch.Generator | None = None, noise: float = 0.05) -> torch.Tensor:
    """Draw n points of a 2D swiss roll (a spiral t(cos t, sin t), t in [1.5 pi, 4.5 pi]), scaled to about unit std.   [nb 03]

    Shapes: (n, 2).
    """
    n, generator, noise = _check_draw(n, generator, noise)
    t = 1.5 * np.pi * (1 + 2 * torch.rand(n, generator=generator))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], dim=1) / 7.0
    return x + noise * noise_lib.randn((n, 2), generator)


def toy_2d(name: str, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n points of a named 2D toy set: two_moons, swiss_roll or ring (mixtures.ring()).   [nb 03]"""
    check_choice(name, TOY_2D, "toy data set")
    if name == "two_moons":
        return two_moons(n, generator)
    if name == "swiss_roll":
        return swiss_roll(n, generator)
    return mixtures.ring().sample(n, generator=generator)


def _check_draw(n, generator, noise) -> tuple[int, torch.Generator | None, float]:
    """The checks of the toy sets: a positive count, a generator or an int seed, a jitter >= 0."""
    return (check_positive_int(n, "n"), noise_lib.as_generator(generator),
            check_number(noise, "noise", low=0, hint="the std of the Gaussian jitter"))


DIGITS_SIZE = 16  # pixels per side after resizing sklearn's 8x8 digits


def load_digits(size: int = DIGITS_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Return scikit-learn's 1,797 bundled 8x8 digits resized to (N, 1, size, size) in [-1, 1], and labels (N,).   [nb 03]

    The 8x8 originals hold 17 grey levels (0..16). Bilinear upsampling to 16x16 (the default) keeps
    their content and gives the UNet three resolutions (16, 8, 4) to work at, and pictures a reader
    can recognise; it costs 4x the pixels of 8x8. size=8 returns the originals, only rescaled.
    """
    size = check_int(size, "size", minimum=8)
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = torch.from_numpy(bunch.images).float()[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 2 - 1).contiguous()
    return x, torch.from_numpy(bunch.target).long()


def batch_sampler(tensors, batch_size: int):
    """Return next_batch(generator) drawing batch_size random rows (with replacement) of a tensor or dict of tensors.   [nb 03]

    Stateless, so a training run that saves its generator resumes on exactly the same batches.
    For a dict, the same rows are taken from every tensor (e.g. {"x0": images, "class_labels": y}).
    """
    if isinstance(tensors, torch.Tensor):
        n = len(tensors)
    elif isinstance(tensors, dict) and tensors and all(isinstance(v, torch.Tensor) for v in tensors.values()):
        lengths = {k: len(v) for k, v in tensors.items()}
        if len(set(lengths.values())) != 1:
            raise CourseInputError(f"every tensor in the dict needs the same first dimension, got {lengths}.")
        n = next(iter(lengths.values()))
    else:
        raise CourseInputError(f"need a tensor or a non-empty dict of tensors, got {type(tensors).__name__}.")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if n == 0:
        raise CourseInputError("cannot draw batches from an empty data set.")

    def next_batch(generator: torch.Generator | None = None):
        generator = noise_lib.as_generator(generator)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randint(0, n, (batch_size,), generator=generator, device=gen_device)
        if isinstance(tensors, torch.Tensor):
            return tensors[idx.to(tensors.device)]
        return {k: v[idx.to(v.device)] for k, v in tensors.items()}

    return next_batch
