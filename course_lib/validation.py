"""Input checks shared by the public entry points of course_lib.

Every public function checks its input up front and raises `CourseInputError` with a message that
says what was wrong and how to fix it, instead of letting a shape or index error surface from deep
inside torch.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterable

import numpy as np
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


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Return `x` if every value is finite, else raise counting the NaN and infinite values."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        raise CourseInputError(
            f"{name} holds {nan} NaN and {inf} infinite value(s) of {x.numel()}: every result computed from it would be "
            f"NaN. Find where they came from (a division by zero, a log of 0, an image that was never filled), or "
            f"replace them, e.g. torch.nan_to_num({name})."
        )
    return x


def check_number(value, name: str, *, low: float | None = None, high: float | None = None, low_open: bool = False,
                 high_open: bool = False, hint: str = "", finite: bool = True) -> float:
    """Return `value` as a float if it is a finite real number in the stated range, else raise.

    Accepted: int, float and numpy scalars (np.float32(0.5), np.int64(3)), and one-element real tensors;
    refused: bool, NaN, infinities, strings, and anything outside [low, high] (open ends with low_open/high_open).
    hint: what the number means, appended to the message (e.g. "the share of the steps to redo").
    finite=False lets NaN and the infinities through unchecked (a measured figure that a claim then judges).
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex and value.dtype != torch.bool:
        value = value.item()
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        value = float(value)
        if not finite and not math.isfinite(value):
            return value
        ok = math.isfinite(value)
    if ok:
        ok = (low is None or (value > low if low_open else value >= low)) and \
             (high is None or (value < high if high_open else value <= high))
    if not ok:
        if low is not None and high is not None:
            where = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            where = f" {'>' if low_open else '>='} {low:g}"
        elif high is not None:
            where = f" {'<' if high_open else '<='} {high:g}"
        else:
            where = ""
        shown = f"a {type(value).__name__}" if isinstance(value, torch.Tensor) else repr(value)
        raise CourseInputError(f"{name} must be a finite number{where}{f' ({hint})' if hint else ''}, got {shown}.")
    return value


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None, hint: str = "") -> int:
    """Return `value` as an int if it is an integer (int or numpy integer, not bool) in [minimum, maximum], else raise."""
    ok = not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))
    if ok:
        value = int(value)
        ok = (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        bounds = " and ".join(b for b in ((f">= {minimum}" if minimum is not None else ""),
                                          (f"<= {maximum}" if maximum is not None else "")) if b)
        raise CourseInputError(f"{name} must be an int{' ' + bounds if bounds else ''}"
                               f"{f' ({hint})' if hint else ''}, got {value!r}.")
    return value


def check_bool(value, name: str) -> bool:
    """Return `value` as a bool if it is True or False (numpy's np.True_ too), else raise: a switch takes no 1 or "yes"."""
    if not isinstance(value, (bool, np.bool_)):
        raise CourseInputError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def check_device(device, name: str = "device") -> torch.device:
    """Return `device` as a torch.device if it names one this machine has (cpu, or an available cuda/mps), else raise.

    The course's one device door: every function that takes device= checks it here, before anything is loaded.
    """
    shown = str(device) if isinstance(device, torch.device) else device
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise CourseInputError(f"{name}={shown!r} is not a device: {name} must be 'cpu', 'cuda', 'cuda:0', 'mps' or a "
                               f"torch.device (environment.default_device() picks the best one here).") from exc
    mps = getattr(torch.backends, "mps", None)
    available = {"cpu": True, "meta": True, "cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available()}
    if not available.get(parsed.type, False):
        kind = {"cuda": "CUDA GPU", "mps": "Apple GPU (MPS)"}.get(parsed.type, parsed.type)
        raise CourseInputError(f"{name}={shown!r}, but this machine has no {parsed.type.upper()} device (no {kind}): use "
                               f"{name}='cpu', or leave it out (environment.default_device() picks the best one here).")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise CourseInputError(f"{name}={shown!r}, but this machine has {torch.cuda.device_count()} CUDA device(s).")
    return parsed


def check_positive_int(value, name: str) -> int:
    """Return `value` as an int if it is a positive integer, else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CourseInputError(f"{name} must be a positive int (1, 2, 3, ...), got {value!r}.")
    return int(value)


def check_schedule_table(values, name: str = "alpha_bars") -> torch.Tensor:
    """Return `values` if it is a schedule table: a non-empty 1-D floating-point tensor, one finite value per step."""
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.ndim != 1 or not len(values):
        got = (f"a {type(values).__name__}" if not isinstance(values, torch.Tensor)
               else f"a tensor of shape {tuple(values.shape)} and dtype {values.dtype}")
        raise CourseInputError(
            f"{name} must be a non-empty 1-D floating-point tensor with one value per timestep, got {got}. "
            f"Pass the table itself, e.g. schedules.NoiseSchedule('linear').{name}."
        )
    if _seen(values, "table"):
        return values
    check_finite(values, name)
    return _remember(values, "table")


# Tables already checked, by kind: a sampling loop passes the same table to a public step function a thousand times,
# and its values are scanned once. A table changed in place (its _version moves on) is scanned again. Keyed by id,
# with a weak reference that confirms the object and drops the entry when the table is freed.
_CHECKED: dict[int, tuple[weakref.ref, dict[str, int]]] = {}


def _seen(values: torch.Tensor, kind: str) -> bool:
    entry = _CHECKED.get(id(values))
    return entry is not None and entry[0]() is values and entry[1].get(kind) == values._version


def _remember(values: torch.Tensor, kind: str) -> torch.Tensor:
    if values.is_inference():  # an inference-mode tensor has no version counter: it is checked at every call
        return values
    key = id(values)
    entry = _CHECKED.get(key)
    if entry is None or entry[0]() is not values:
        entry = (weakref.ref(values, lambda _, key=key: _CHECKED.pop(key, None)), {})
        _CHECKED[key] = entry
    entry[1][kind] = values._version
    return values


def check_alpha_bars(values, name: str = "alpha_bars") -> torch.Tensor:
    """Return `values` if it is an alpha_bar table: 1-D, every value in (0, 1], non-increasing along t.   [DDPM eq. 4]

    alpha_bar_t = prod_{s<=t} (1 - beta_s) starts near 1 (clean data) and falls towards 0 (noise). The message
    says what the table probably is when it is not one: betas (small and rising), or a table in reverse order.
    """
    check_schedule_table(values, name)
    if _seen(values, "alpha_bars"):
        return values
    outside = (values <= 0) | (values > 1)
    rising = values[1:] > values[:-1]
    if not bool(outside.any()) and not bool(rising.any()):
        return _remember(values, "alpha_bars")
    first, last = float(values[0]), float(values[-1])
    if bool(outside.any()):
        bad = float(values[outside][0])
        problem = f"holds {bad:g}, outside (0, 1]"
    else:
        i = int(rising.nonzero()[0, 0])
        problem = f"rises from {float(values[i]):g} at t={i} to {float(values[i + 1]):g} at t={i + 1}"
    if len(values) > 1 and bool((values[1:] >= values[:-1]).all()) and last < 0.5:
        guess = (" These look like betas (small and rising): pass schedules.alpha_bars_from_betas(betas), "
                 "or NoiseSchedule(...).alpha_bars.")
    elif len(values) > 1 and bool((values[1:] >= values[:-1]).all()) and 0 < first and last <= 1:
        guess = " These look like alpha_bars in reverse order: the table starts at t = 0 (clean data), e.g. alpha_bars.flip(0)."
    else:
        guess = " Pass the schedule's table, e.g. schedules.NoiseSchedule('linear').alpha_bars."
    raise CourseInputError(
        f"{name} must hold alpha_bar_t in (0, 1], non-increasing from t = 0 (clean data) to t = T-1 (noise); "
        f"this table {problem}.{guess}"
    )


def check_betas(values, name: str = "betas") -> torch.Tensor:
    """Return `values` if it is a beta table: 1-D, every beta_t in (0, 1] (the variance step t adds).   [DDPM eq. 2]"""
    check_schedule_table(values, name)
    if _seen(values, "betas"):
        return values
    outside = (values <= 0) | (values > 1)
    if bool(outside.any()):
        bad = float(values[outside][0])
        guess = (" These look like alpha_bars (they start near 1): pass the betas, e.g. NoiseSchedule(...).betas."
                 if float(values[0]) > 0.5 else "")
        raise CourseInputError(f"{name} must hold beta_t in (0, 1] (the variance added at step t); "
                               f"this table holds {bad:g}.{guess}")
    if len(values) > 1 and float(values[0]) > 0.5 and bool((values[1:] <= values[:-1]).all()):
        raise CourseInputError(f"{name} starts at {float(values[0]):g} and falls: these look like alpha_bars, not betas "
                               f"(beta_t is small, e.g. 1e-4 to 0.02). Pass NoiseSchedule(...).betas.")
    return _remember(values, "betas")


def check_alpha_bar_t(alpha_bar_t, like: torch.Tensor, name: str = "alpha_bar_t") -> torch.Tensor:
    """Return alpha_bar_t as a tensor that broadcasts against `like` sample by sample, every value in [0, 1].

    Accepted: a number (numpy scalars too), a one-element tensor, or one value per sample shaped (B, 1, 1, ...) as
    schedules.gather returns. A bare (B,) tensor is refused: against (B, C, H, W) it would
    broadcast along the last axis instead of the batch.
    """
    if not isinstance(alpha_bar_t, torch.Tensor):
        value = check_number(alpha_bar_t, name, finite=False, hint="an alpha_bar in [0, 1], e.g. alpha_bars[t]")
        alpha_bar_t = torch.tensor(value, dtype=like.dtype, device=like.device)
    check_float_tensor(alpha_bar_t, name)
    shape = tuple(alpha_bar_t.shape)
    fits = alpha_bar_t.ndim <= like.ndim and (
        alpha_bar_t.numel() == 1
        or (alpha_bar_t.ndim == like.ndim and all(a in (1, b) for a, b in zip(shape, like.shape)))
    )
    if not fits:
        raise CourseInputError(
            f"{name} of shape {shape} does not broadcast sample by sample against a batch of shape "
            f"{tuple(like.shape)}. Give one number, or one per sample shaped (B, 1, ...): "
            f"schedules.gather(alpha_bars, t, x)."
        )
    inside = (0 <= float(alpha_bar_t) <= 1) if alpha_bar_t.numel() == 1 else bool(
        ((alpha_bar_t >= 0) & (alpha_bar_t <= 1)).all())  # NaN fails too
    if not inside:
        bad = alpha_bar_t[~((alpha_bar_t >= 0) & (alpha_bar_t <= 1))].flatten()[0].item()
        raise CourseInputError(f"{name} must lie in [0, 1] (1 is clean data, 0 pure noise), got {bad!r}. "
                               f"Take it from the table: schedules.gather(alpha_bars, t, x).")
    return alpha_bar_t


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
    elif isinstance(t, bool) or not isinstance(t, (int, np.integer)):
        raise CourseInputError(
            f"{name} must be an int or an integer tensor, got {type(t).__name__}. "
            f"Pass an int, or torch.tensor([...]) with one timestep per sample."
        )
    else:
        t_tensor = torch.tensor(int(t))
    low = -1 if allow_data else 0
    if t_tensor.ndim == 0:  # the common case, checked in Python: sampling loops call this several times a step
        bad = None if low <= int(t_tensor) < num_steps else int(t_tensor)
    else:
        outside = (t_tensor < low) | (t_tensor >= num_steps)
        bad = t_tensor[outside].flatten()[0].item() if outside.any() else None
    if bad is not None:
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
