"""Drawing the Gaussian noise every part of the course needs, in one place.   [notebooks 01-08]

One rule, diffusers' `randn_tensor`: the numbers are drawn on the generator's device (the target
device when there is no generator), then moved to the target device and dtype. A CPU generator
therefore gives the same x_T, the same forward-process noise and the same sampler noise on a
laptop, on Colab's GPU and on Apple silicon.
"""

from __future__ import annotations

import numpy as np
import torch

from course_lib.validation import CourseInputError, check_device, check_float_tensor, check_int, check_same_shape


def as_generator(generator, name: str = "generator") -> torch.Generator | None:
    """Return a torch.Generator for `generator`: None stays None, an int seed (or numpy integer) becomes
    torch.Generator().manual_seed(seed) on the CPU, a Generator passes through; anything else is refused.

    Every public function that takes generator= calls this once at its door, so `generator=0` means the
    same numbers as `generator=torch.Generator().manual_seed(0)`.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, (bool, np.bool_)):
        if not 0 <= int(generator) < 2**64:
            raise CourseInputError(f"{name}={generator!r}: a seed must lie in [0, 2**64).")
        return torch.Generator().manual_seed(int(generator))
    raise CourseInputError(f"{name} must be a torch.Generator, an int seed or None, got {type(generator).__name__}. "
                           f"Pass e.g. torch.Generator().manual_seed(0), or simply 0.")


def randn(shape, generator: torch.Generator | None = None, *, device=None, dtype=None) -> torch.Tensor:
    """Return N(0, I) of `shape` drawn from `generator` (or an int seed) on its device, then moved to `device` and `dtype`."""
    if isinstance(shape, (int, np.integer)) or not isinstance(shape, (tuple, list, torch.Size)):
        raise CourseInputError(f"shape must be a tuple of ints such as (4, 2), got {shape!r}.")
    shape = tuple(check_int(s, "every entry of shape", minimum=0) for s in shape)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise CourseInputError(f"dtype must be a floating-point torch.dtype such as torch.float32, got {dtype!r}.")
    return _draw(shape, as_generator(generator), check_device(device) if device is not None else torch.device("cpu"),
                 dtype)


def _draw(shape: tuple, generator: torch.Generator | None, device: torch.device, dtype) -> torch.Tensor:
    """randn's rule, for checked arguments: draw on the generator's device (else `device`), then move to `device`."""
    draw_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


def randn_like(like: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return N(0, I) shaped like `like`, on its device and in its dtype (randn's rule for where it is drawn)."""
    check_float_tensor(like, "like")
    return _draw(tuple(like.shape), as_generator(generator), like.device, like.dtype)


def given_or_drawn(noise, like: torch.Tensor, generator: torch.Generator | None = None,
                   name: str = "noise", like_name: str = "xt") -> torch.Tensor:
    """Return `noise` after checking it is a float tensor shaped like `like`, or a fresh draw when it is None."""
    if noise is None:
        return randn_like(like, generator)
    check_float_tensor(noise, name)
    check_same_shape(**{name: noise, like_name: like})
    return noise
