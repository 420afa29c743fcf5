"""Input checks shared by the public entry points of course_lib.

Every public function checks its input up front and raises `CourseInputError` with a message that
says what was wrong and how to fix it, instead of letting a shape or index error surface from deep
inside torch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


class CourseInputError(ValueError):
    """A course_lib function got input it cannot use; the message says what to change."""


def check_choice(value: str, choices: Iterable[str], name: str) -> str:
    """Return `value` if it is one of `choices`, else raise naming the valid ones."""
    choices = tuple(choices)
    if value not in choices:
        raise CourseInputError(
            f"{name}={value!r} is not known. Use one of: {', '.join(repr(c) for c in choices)}."
        )
    return value


def check_float_tensor(x, name: str) -> torch.Tensor:
    """Return `x` if it is a floating-point tensor, else raise saying how to convert it."""
    if not isinstance(x, torch.Tensor):
        raise CourseInputError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}. Wrap it with torch.as_tensor(...)."
        )
    if not x.is_floating_point():
        raise CourseInputError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}. "
            f"Convert it first, e.g. {name}.float() (images: {name}.float() / 127.5 - 1)."
        )
    return x


def check_same_shape(**tensors: torch.Tensor) -> None:
    """Raise if the named tensors do not all have the same shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise CourseInputError(f"shapes must match, got {listed}. Pass tensors of one shape.")


def check_timestep(t, num_steps: int, name: str = "t", allow_data: bool = False) -> torch.Tensor:
    """Return `t` as an int64 tensor after checking it indexes a schedule of `num_steps` steps.

    Timesteps are 0-based as in diffusers: 0 .. num_steps-1. With `allow_data`, -1 is also accepted
    and means "clean data" (alpha_bar = 1), the target of the last sampling step.
    """
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.dtype == torch.bool:
            raise CourseInputError(
                f"{name} must hold integer timesteps, got dtype {t.dtype}. Use {name}.long()."
            )
        t_tensor = t.long()
    elif isinstance(t, bool) or not isinstance(t, int):
        try:
            import numpy as np

            if isinstance(t, np.integer):
                t = int(t)
            else:
                raise TypeError
        except TypeError:
            raise CourseInputError(
                f"{name} must be an int or an integer tensor, got {type(t).__name__}."
            ) from None
        t_tensor = torch.tensor(t)
    else:
        t_tensor = torch.tensor(t)
    low = -1 if allow_data else 0
    if t_tensor.numel() and (t_tensor.min() < low or t_tensor.max() >= num_steps):
        bad = t_tensor[(t_tensor < low) | (t_tensor >= num_steps)].flatten()[0].item()
        raise CourseInputError(
            f"{name}={bad} is out of range: timesteps are 0-based, so valid values are "
            f"{low}..{num_steps - 1} for a schedule of {num_steps} steps."
        )
    return t_tensor


def check_batch_timesteps(t: torch.Tensor, x: torch.Tensor, name: str = "t") -> None:
    """Raise unless `t` is a scalar or holds one timestep per sample of `x` (shape (B,))."""
    if t.ndim == 0:
        return
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise CourseInputError(
            f"{name} must be a single timestep or one per sample, shape ({x.shape[0]},); "
            f"got shape {tuple(t.shape)} for a batch of shape {tuple(x.shape)}."
        )
