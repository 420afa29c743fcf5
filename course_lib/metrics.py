"""Sample-quality measures.   [notebooks 02-03]"""

from __future__ import annotations

import torch

from course_lib.validation import CourseInputError, check_float_tensor


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between two samples.   [Szekely & Rizzo 2013]

    Zero exactly when the two laws are equal; U-statistic form (self-pairs left out), so it is
    unbiased and can be slightly negative for two draws of the same law. Shapes: x (n, D), y (m, D).
    """
    check_float_tensor(x, "x")
    check_float_tensor(y, "y")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise CourseInputError(f"need x (n, D) and y (m, D) with the same D, got {tuple(x.shape)} and {tuple(y.shape)}.")
    if len(x) < 2 or len(y) < 2:
        raise CourseInputError("need at least 2 points in each sample.")
    x, y = x.double(), y.double()
    n, m = len(x), len(y)
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (n * (n - 1))
    yy = torch.cdist(y, y).sum() / (m * (m - 1))
    return float(2 * xy - xx - yy)
