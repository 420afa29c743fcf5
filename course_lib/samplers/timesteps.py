"""The timesteps a sampler visits: diffusers' three spacings, and the previous step looked up, never computed.   [nb 02]"""

from __future__ import annotations

import math

import numpy as np
import torch

from course_lib.validation import CourseInputError, check_choice, check_int, check_positive_int

SPACINGS = ("leading", "trailing", "linspace")


def inference_timesteps(num_train_steps: int, num_steps: int, spacing: str = "leading",
                        offset: int = 0) -> torch.Tensor:
    """Return the num_steps timesteps a sampler visits, in descending order.   [DDIM sec. 4.2, nb 02]

    leading:  0, k, 2k, ... with k = num_train_steps // num_steps, plus `offset` (diffusers' steps_offset,
              which diffusers adds to this spacing only); never reaches T-1.
    trailing: round(T, T - T/N, ...) - 1; always starts at T-1.
    linspace: round(linspace(0, T-1, N)); starts at T-1, strides may differ by one.
    These match diffusers' "timestep_spacing" options and Table 2 of "Common Diffusion Noise
    Schedules and Sample Steps are Flawed" (Lin et al. 2024).
    """
    check_choice(spacing, SPACINGS, "spacing")
    num_train_steps = check_positive_int(num_train_steps, "num_train_steps")
    num_steps = check_positive_int(num_steps, "num_steps")
    offset = check_int(offset, "offset", hint="diffusers' steps_offset, usually 0 or 1")
    if not 1 <= num_steps <= num_train_steps:
        raise CourseInputError(
            f"num_steps must be between 1 and num_train_steps={num_train_steps}, got {num_steps}."
        )
    if spacing == "leading":
        timesteps = np.arange(num_steps)[::-1] * (num_train_steps // num_steps) + offset
    elif spacing == "trailing":
        # np.arange overshoots by one element for some N (61, 103, 201, ... of 1000), whose last
        # timestep would be -1; diffusers keeps that element, we keep exactly num_steps.
        timesteps = np.round(np.arange(num_train_steps, 0, -num_train_steps / num_steps))[:num_steps] - 1
    else:
        timesteps = np.round(np.linspace(0, num_train_steps - 1, num_steps))[::-1]
    timesteps = torch.from_numpy(timesteps.astype(np.int64).copy())
    if timesteps.max() >= num_train_steps or timesteps.min() < 0:
        raise CourseInputError(
            f"offset={offset} pushes the timesteps out of 0..{num_train_steps - 1}; "
            f"use an offset between 0 and {num_train_steps - 1 - int(timesteps.max()) + offset}."
        )
    return timesteps


def fractional_linspace(num_train_steps: int, num_steps: int) -> torch.Tensor:
    """Return linspace(T-1, 0, N) unrounded, in float32: the 'linspace' timesteps of diffusers' Euler and Heun.   [nb 03b]

    EulerDiscreteScheduler and HeunDiscreteScheduler keep these fractional (999, 832.5, 666, 499.5, ... for N = 7),
    interpolate sigma between the table's entries, and call the model at the fractional timestep.
    """
    num_train_steps = check_positive_int(num_train_steps, "num_train_steps")
    num_steps = check_int(num_steps, "num_steps", minimum=1, maximum=num_train_steps)
    return torch.from_numpy(np.linspace(0, num_train_steps - 1, num_steps, dtype=np.float32)[::-1].copy())


def timestep_list(timesteps, num_train_steps: int | None = None, *, fractional: bool = False,
                  who: str = "this step function") -> list:
    """Return timesteps as a strictly decreasing list of numbers, after checking them.

    Integral values become ints; fractional ones (832.5) are kept as floats where `fractional` allows them.
    With num_train_steps, every value must lie in 0 .. num_train_steps - 1.
    """
    if isinstance(timesteps, (torch.Tensor, np.ndarray)):
        if timesteps.ndim != 1 or timesteps.dtype in (torch.bool, np.bool_):
            raise CourseInputError(f"timesteps must be a 1-D sequence of numbers, got shape {tuple(timesteps.shape)} "
                                   f"and dtype {timesteps.dtype}. Use sampler.timesteps(...) or samplers.inference_timesteps(...).")
        values = timesteps.tolist()
    elif isinstance(timesteps, (list, tuple, range)):
        values = list(timesteps)
    else:
        raise CourseInputError(f"timesteps must be a list, range or 1-D tensor of timesteps, got {type(timesteps).__name__}. "
                               f"Use sampler.timesteps(...) or samplers.inference_timesteps(...).")
    if not values:
        raise CourseInputError("timesteps is empty: there is no step to take.")
    out = []
    for value in values:
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            raise CourseInputError(f"timesteps must hold finite numbers, got {value!r}.")
        if float(value) == int(value):
            out.append(int(value))
        elif fractional:
            out.append(float(value))
        else:
            raise CourseInputError(f"timesteps must be integers for {who}, got {value!r}; fractional timesteps are "
                                   f"only for euler and heun (diffusers' 'linspace' choice). Use sampler.timesteps(...).")
    if any(a <= b for a, b in zip(out, out[1:])):
        raise CourseInputError("timesteps must be strictly decreasing; use samplers.inference_timesteps(...).")
    if num_train_steps is not None and (out[0] > num_train_steps - 1 or out[-1] < 0):
        raise CourseInputError(f"timesteps must lie in 0..{num_train_steps - 1}, got {out[0]}..{out[-1]}: they are "
                               f"0-based, as in diffusers.")
    return out


def previous_timestep(timesteps, t) -> int:
    """Return the timestep after t in `timesteps` (looked up, not computed), or -1 after the last."""
    ts = timestep_list(timesteps, fractional=True)
    if t not in ts:
        raise CourseInputError(f"t={t} is not one of the timesteps {ts}.")
    i = ts.index(t)
    return ts[i + 1] if i + 1 < len(ts) else -1
