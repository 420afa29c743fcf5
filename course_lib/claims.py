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

import torch

from course_lib.validation import CourseInputError


def _number(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise CourseInputError(f"{name} must be one number, got a tensor of shape {tuple(value.shape)}.")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CourseInputError(f"{name} must be a number, got {type(value).__name__}.")
    return float(value)


def _fmt(value: float, percent: bool, digits: int | None) -> str:
    if percent:
        return f"{100 * value:.{digits if digits is not None else 0}f} %"
    if digits is not None:
        return f"{value:.{digits}f}"
    return f"{value:g}"


def max_difference(a, b) -> float:
    """Return max |a - b| over all elements, in float64 (0 for empty tensors); shapes must match."""
    a_t, b_t = torch.as_tensor(a).detach().double().cpu(), torch.as_tensor(b).detach().double().cpu()
    if a_t.shape != b_t.shape:
        raise CourseInputError(f"cannot compare shapes {tuple(a_t.shape)} and {tuple(b_t.shape)}.")
    return (a_t - b_t).abs().max().item() if a_t.numel() else 0.0


def close(label: str, a, b, *, atol: float = 1e-5) -> None:
    """Print "label: max |difference| <= atol: yes"; raise AssertionError if the difference is larger.

    atol is the claim: pick it from what the comparison can honestly promise on any machine (float32
    round-off of one formula ~1e-6; a loop of UNet calls ~1e-4), not from what this machine printed.
    NaN anywhere fails the claim.
    """
    if not atol > 0:
        raise CourseInputError(f"atol must be > 0 (the largest difference the claim allows), got {atol!r}.")
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
    value, low, high = _number(value, "value"), _number(low, "low"), _number(high, "high")
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
    value, bound = _number(value, "value"), _number(bound, "bound")
    if not value <= bound:
        raise AssertionError(f"{label} = {value:.4g} is above the claimed bound {_fmt(bound, percent, digits)}{unit}.")
    print(f"{label}: <= {_fmt(bound, percent, digits)}{unit}: yes")


def at_least(label: str, value, bound: float, *, percent: bool = False, digits: int | None = None,
             unit: str = "") -> None:
    """Print "label: >= bound: yes"; raise AssertionError if value is smaller (or NaN)."""
    value, bound = _number(value, "value"), _number(bound, "bound")
    if not value >= bound:
        raise AssertionError(f"{label} = {value:.4g} is below the claimed bound {_fmt(bound, percent, digits)}{unit}.")
    print(f"{label}: >= {_fmt(bound, percent, digits)}{unit}: yes")


def holds(label: str, condition) -> None:
    """Print "label: yes" if condition is true; raise AssertionError naming the claim if it is not."""
    if isinstance(condition, torch.Tensor):
        condition = bool(condition.all())
    if not condition:
        raise AssertionError(f"the claim {label!r} does not hold.")
    print(f"{label}: yes")
