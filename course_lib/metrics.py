"""Sample-quality measures.   [notebooks 01-03]"""

from __future__ import annotations

import torch

from course_lib import data
from course_lib import noise as noise_lib
from course_lib.validation import CourseInputError, check_finite, check_float_tensor, check_number, check_positive_int


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


# ----------------------------------------------------------------------------------------------
# Notebook 03: distance to data with its floor, and a digits classifier
# ----------------------------------------------------------------------------------------------

def energy_distance_plugin(x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the energy distance between the two empirical distributions (self-pairs kept: a V-statistic).   [nb 03]

    2 mean|x_i - y_j| - mean|x_i - x_k| - mean|y_j - y_l| over ALL pairs. Always >= 0; for two
    independent draws of one law it is about E|X - X'| (1/n + 1/m) > 0: the floor a perfect model
    reaches, so "distance / floor" is a meaningful ratio (the U-statistic energy_distance is
    unbiased and centred at 0 for equal laws, where a ratio means nothing). Shapes: x (n, D), y (m, D).
    """
    check_float_tensor(x, "x")
    check_float_tensor(y, "y")
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise CourseInputError(f"need x (n, D) and y (m, D) with the same D, got {tuple(x.shape)} and {tuple(y.shape)}.")
    x, y = x.double(), y.double()
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def distance_to_data(samples: torch.Tensor, draw_data, generator: torch.Generator | None = None,
                     repeats: int = 4) -> float:
    """Return the mean plug-in energy distance from `samples` to `repeats` fresh data draws of the same size.   [nb 03]

    draw_data(n, generator) -> (n, D) draws real data (e.g. data.two_moons). Averaging over several
    reference draws steadies a number that jumps from draw to draw.
    """
    check_float_tensor(samples, "samples")
    repeats = check_positive_int(repeats, "repeats")
    generator = noise_lib.as_generator(generator)
    n = len(samples)
    return sum(energy_distance_plugin(samples.cpu(), draw_data(n, generator)) for _ in range(repeats)) / repeats


def data_floor(draw_data, n: int, generator: torch.Generator | None = None, repeats: int = 4) -> float:
    """Return the mean plug-in energy distance between two independent data draws of n points: the floor.   [nb 03]"""
    n, repeats = check_positive_int(n, "n"), check_positive_int(repeats, "repeats")
    generator = noise_lib.as_generator(generator)
    return sum(energy_distance_plugin(draw_data(n, generator), draw_data(n, generator)) for _ in range(repeats)) / repeats


_DIGITS_CLASSIFIER: dict = {}


def digits_classifier(size: int = 16):
    """Return a small MLP classifier of real digits at size x size, trained once per process (a few seconds).   [nb 03]

    scikit-learn's MLPClassifier (one hidden layer of 128, L2 weight alpha = 0.3, seeded, so the
    same on every run), trained on a fixed 80 % of the digits. The strong L2 keeps it from being
    confident on non-digits: on this split it is ~99 % accurate, ~92 % of held-out real digits get
    confidence >= 0.9 (the ceiling for generated digits), pure noise ~1 % and 50/50 blends of two
    digits ~23 % (tests/test_data.py checks these). `.heldout_accuracy` and
    `.heldout_confident_share` hold its figures on the other 20 %. Input: images in [-1, 1],
    flattened to (N, size * size).
    """
    if size in _DIGITS_CLASSIFIER:
        return _DIGITS_CLASSIFIER[size]
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from threadpoolctl import threadpool_limits

    x, y = data.load_digits(size)
    order = np.random.RandomState(0).permutation(len(x))  # a fixed split, independent of torch's RNG
    train, test = order[: int(0.8 * len(x))], order[int(0.8 * len(x)):]
    features, labels = x.reshape(len(x), -1).numpy(), y.numpy()
    clf = MLPClassifier(hidden_layer_sizes=(128,), alpha=0.3, max_iter=400, random_state=0)
    # One BLAS thread: the same numbers on any machine, and no threads spinning against other work.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(features[train], labels[train])
        proba = clf.predict_proba(features[test])
    clf.heldout_accuracy = float((proba.argmax(1) == labels[test]).mean())
    clf.heldout_confident_share = float((proba.max(1) >= 0.9).mean())
    _DIGITS_CLASSIFIER[size] = clf
    return clf


def classify_digits(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (predicted digit, confidence) for images (N, 1, S, S) in [-1, 1], by digits_classifier().   [nb 03]"""
    check_float_tensor(images, "images")
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[2] != images.shape[3]:
        raise CourseInputError(f"need grey images (N, 1, S, S), got shape {tuple(images.shape)}.")
    clf = digits_classifier(images.shape[-1])
    proba = torch.from_numpy(clf.predict_proba(images.detach().cpu().float().clamp(-1, 1).reshape(len(images), -1).numpy()))
    confidence, label = proba.max(dim=1)
    return label, confidence.float()


def digit_figures(images: torch.Tensor, threshold: float = 0.9) -> dict:
    """Return the share of images classified with confidence >= threshold, the class histogram and its distance from uniform.   [nb 03]

    histogram: share of each predicted digit 0..9 (all images); tv_from_uniform: total variation
    0.5 * sum_k |p_k - 1/10| (0 = perfectly uniform, 0.9 = all one class).
    """
    label, confidence = classify_digits(images)
    hist = torch.bincount(label, minlength=10).double() / len(label)
    return {
        "confident_share": float((confidence >= threshold).double().mean()),
        "histogram": [round(float(h), 4) for h in hist],
        "tv_from_uniform": float(0.5 * (hist - 0.1).abs().sum()),
    }


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 2.0, *, keep: torch.Tensor | None = None,
         cap: float | None = None) -> float:
    """Return the peak signal-to-noise ratio 10 log10(data_range^2 / MSE) in dB, min(cap, .) if capped.   [nb 04, 07]

    data_range is max - min of the pixel scale: 2 for the course's images in [-1, 1] (1 for [0, 1],
    255 for bytes). The MSE averages over the whole batch, or only over the pixels where `keep` is
    True: a bool mask over the last two axes (H, W), e.g. the pixels an edit must leave alone; a mask
    that keeps no pixel is refused (there is nothing to measure). Identical inputs give inf, or `cap`.
    Computed in float64. Shapes: x and y alike (..., H, W); keep (H, W).
    """
    check_float_tensor(x, "x")
    check_float_tensor(y, "y")
    if x.shape != y.shape:
        raise CourseInputError(f"x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}.")
    if not x.numel():
        raise CourseInputError("x and y are empty: there is no pixel to compare.")
    check_finite(x, "x")
    check_finite(y, "y")
    data_range = check_number(data_range, "data_range", low=0, low_open=True, hint="max - min of the pixel scale: 2 for [-1, 1]")
    if cap is not None:
        cap = check_number(cap, "cap", hint="the largest value reported, in dB")
    diff2 = (x.double() - y.double()) ** 2
    if keep is not None:
        if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or x.ndim < 2 or keep.shape != x.shape[-2:]:
            raise CourseInputError(f"keep must be a bool tensor of shape {tuple(x.shape[-2:])} (H, W), got "
                                   f"{getattr(keep, 'dtype', type(keep).__name__)} {tuple(getattr(keep, 'shape', ()))}.")
        if not bool(keep.any()):
            raise CourseInputError("keep selects no pixel: there is nothing to compare (check the mask's polarity).")
        diff2 = diff2[..., keep.to(diff2.device)]
    mse = torch.mean(diff2).item()
    value = float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(data_range**2 / mse, dtype=torch.float64)).item()
    return value if cap is None else min(cap, value)
