"""Numerical claims that a notebook prints: verdicts that read the same on every machine.   [every notebook]

No two machines agree on the last bits of floating point. Another CPU (Apple silicon, AVX2 or
AVX-512 kernels), another thread count or another BLAS build adds and multiplies in another order,
and a chain of sampling steps can turn those bits into a different sample. So a notebook never
prints a raw difference such as 2.4e-07, nor a metric of sampled images to its last digit: it
prints the claim it makes and asserts it, and the printed line is the same wherever it runs.

    claims.close("from scratch vs schedules.q_sample", ours, library)
        from scratch vs schedules.q_sample: max |difference| <= 1e-05: yes
    claims.within("DDIM-50 samples classified right", accuracy, 0.85, 1.0, percent=True)
        DDIM-50 samples classified right: in [85 %, 100 %]: yes

A claim that does not hold raises AssertionError with the figure that broke it, so the cell fails
loudly instead of printing "no". Every claim returns None, so a claim on a cell's last line adds
nothing to the compared output. Exact comparisons stay exact where they are honest (text, shapes,
counts, integers): compare them with ==.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course_lib.validation import CourseInputError, check_bool, check_int, check_number


def _number(value, name: str, measured: bool = False) -> float:
    """Return a claim's number as a float: int, float, numpy scalar or one-element tensor. A measured value may be
    NaN or infinite (the claim then fails with AssertionError); a bound must be finite."""
    if isinstance(value, torch.Tensor) and value.numel() != 1:
        raise CourseInputError(f"{name} must be one number, got a tensor of shape {tuple(value.shape)}.")
    return check_number(value, name, finite=not measured)


def _check_label(label) -> None:
    if not isinstance(label, str) or not label.strip():
        raise CourseInputError(f"label must be a non-empty str naming the claim, got {label!r}.")


def _check_format(percent, digits, unit) -> None:
    check_bool(percent, "percent")
    if digits is not None:
        check_int(digits, "digits", minimum=0, hint="decimal places to print")
    if not isinstance(unit, str):
        raise CourseInputError(f"unit must be a str such as ' dB', got {unit!r}.")


def _fmt(value: float, percent: bool, digits: int | None) -> str:
    if percent:
        return f"{100 * value:.{digits if digits is not None else 0}f} %"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:g}"


def max_difference(a, b) -> float:
    """Return max |a - b| over all elements, in float64 (0 for empty tensors); shapes must match."""
    try:
        a_t, b_t = (torch.as_tensor(v).detach().cpu().double() for v in (a, b))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CourseInputError(f"max_difference compares numbers, arrays or tensors; got {type(a).__name__} and "
                               f"{type(b).__name__} ({exc}).") from None
    if a_t.shape != b_t.shape:
        raise CourseInputError(f"cannot compare shapes {tuple(a_t.shape)} and {tuple(b_t.shape)}.")
    return (a_t - b_t).abs().max().item() if a_t.numel() else 0.0


def close(label: str, a, b, *, atol: float = 1e-5) -> None:
    """Print "label: max |difference| <= atol: yes"; raise AssertionError if the difference is larger.

    atol is the claim: pick it from what the comparison can honestly promise on any machine (float32
    round-off of one formula ~1e-6; a loop of UNet calls ~1e-4), not from what this machine printed.
    NaN anywhere fails the claim.
    """
    _check_label(label)
    atol = check_number(atol, "atol", low=0, low_open=True, hint="the largest difference the claim allows")
    worst = max_difference(a, b)
    if not worst <= atol:  # also catches NaN
        raise AssertionError(f"{label}: max |difference| = {worst:.3g} is above the claimed {atol:g}.")
    print(f"{label}: max |difference| <= {atol:g}: yes")


def within(label: str, value, low: float, high: float, *, percent: bool = False, digits: int | None = None,
           unit: str = "") -> None:
    """Print "label: in [low, high]: yes"; raise AssertionError if value lies outside.

    For a figure that moves from machine to machine (a metric of sampled images, a trained model's
    score): the band is what the notebook's prose relies on. percent=True shows shares as percentages.
    """
    _check_label(label)
    _check_format(percent, digits, unit)
    value, low, high = _number(value, "value", measured=True), _number(low, "low"), _number(high, "high")
    if not low <= high:
        raise CourseInputError(f"the band must have low <= high, got [{low}, {high}].")
    band = f"[{_fmt(low, percent, digits)}, {_fmt(high, percent, digits)}]{unit}"
    if not (low <= value <= high) or math.isnan(value):
        raise AssertionError(f"{label} = {_fmt(value, percent, 4 if digits is None else digits + 2)} is outside "
                             f"the expected band {band}.")
    print(f"{label}: in {band}: yes")


def at_most(label: str, value, bound: float, *, percent: bool = False, digits: int | None = None,
            unit: str = "") -> None:
    """Print "label: <= bound: yes"; raise AssertionError if value is larger (or NaN)."""
    _check_label(label)
    _check_format(percent, digits, unit)
    value, bound = _number(value, "value", measured=True), _number(bound, "bound")
    if not value <= bound:
        raise AssertionError(f"{label} = {value:.4g} is above the claimed bound {_fmt(bound, percent, digits)}{unit}.")
    print(f"{label}: <= {_fmt(bound, percent, digits)}{unit}: yes")


def at_least(label: str, value, bound: float, *, percent: bool = False, digits: int | None = None,
             unit: str = "") -> None:
    """Print "label: >= bound: yes"; raise AssertionError if value is smaller (or NaN)."""
    _check_label(label)
    _check_format(percent, digits, unit)
    value, bound = _number(value, "value", measured=True), _number(bound, "bound")
    if not value >= bound:
        raise AssertionError(f"{label} = {value:.4g} is below the claimed bound {_fmt(bound, percent, digits)}{unit}.")
    print(f"{label}: >= {_fmt(bound, percent, digits)}{unit}: yes")


def holds(label: str, condition) -> None:
    """Print "label: yes" if condition is true (for a tensor: every element); raise AssertionError if it is not."""
    _check_label(label)
    if isinstance(condition, torch.Tensor):
        if condition.numel() == 0:
            raise CourseInputError(f"the claim {label!r} is about an empty tensor: it holds of nothing. Check what "
                                   f"selected the elements.")
        condition = bool(condition.all())
    elif not isinstance(condition, (bool, np.bool_)):
        raise CourseInputError(f"condition must be a bool (or a bool tensor), got {type(condition).__name__}: "
                               f"compare explicitly, e.g. value == expected.")
    if not condition:
        raise AssertionError(f"the claim {label!r} does not hold.")
    print(f"{label}: yes")
