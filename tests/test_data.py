"""course_lib.data's notebook-03 additions (2D toys, digits, the batch sampler), and the notebook-03
metrics built on them (plug-in energy distance and its floor, the digits classifier).

(The metrics tests sit here because they are about these data sets; test_metrics.py covers the
rest of course_lib.metrics.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import make_moons

from course_lib import data, metrics
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_two_moons_is_standardised_seeded_and_matches_sklearn_shape():
    x = data.two_moons(50_000, generator=gen(0))
    assert x.shape == (50_000, 2) and x.dtype == torch.float32
    torch.testing.assert_close(x.mean(0), torch.zeros(2), atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), torch.ones(2), atol=0.02, rtol=0)
    assert torch.equal(data.two_moons(100, generator=gen(1)), data.two_moons(100, generator=gen(1)))
    # The same law as scikit-learn's make_moons (noise-free), standardised the same way: energy distance ~ 0.
    sk, _ = make_moons(4000, noise=0.0, random_state=0)
    sk = (torch.from_numpy(sk).float() - torch.tensor([0.5, 0.25])) / torch.tensor([0.866, 0.494])
    ours = data.two_moons(4000, generator=gen(2), noise=0.0)
    assert abs(metrics.energy_distance(ours, sk)) < 5e-3


def test_swiss_roll_and_toy_2d():
    x = data.swiss_roll(20_000, generator=gen(0))
    assert x.shape == (20_000, 2) and 0.8 < x.std(0).min() < 1.1
    radius = x.norm(dim=1)
    assert radius.min() > 0.4 and radius.max() < 2.2
    for name in data.TOY_2D:
        assert data.toy_2d(name, 10, generator=gen(0)).shape == (10, 2)
    with pytest.raises(CourseInputError, match="two_moons"):
        data.toy_2d("spiral", 10)
    with pytest.raises(CourseInputError, match="positive int"):
        data.two_moons(0)


def test_digits_are_resized_scaled_and_labelled():
    x, y = data.load_digits()
    assert x.shape == (1797, 1, 16, 16) and y.shape == (1797,)
    assert x.min() == -1 and x.max() == 1 and set(y.tolist()) == set(range(10))
    x8, _ = data.load_digits(8)
    from sklearn.datasets import load_digits

    torch.testing.assert_close(x8[:, 0], torch.from_numpy(load_digits().images).float() / 8 - 1)
    # Upsampling keeps the content: averaging 2x2 blocks gives back the 8x8 picture, up to blur.
    pooled = torch.nn.functional.avg_pool2d(x, 2)
    assert (pooled - x8).abs().mean() < 0.15
    with pytest.raises(CourseInputError):
        data.load_digits(4)


def test_batch_sampler_takes_the_same_rows_from_every_tensor_and_is_seeded():
    x, y = torch.arange(100.0)[:, None], torch.arange(100)
    draw = data.batch_sampler({"x0": x, "class_labels": y}, 16)
    batch = draw(gen(3))
    assert torch.equal(batch["x0"][:, 0].long(), batch["class_labels"])
    assert torch.equal(draw(gen(3))["class_labels"], batch["class_labels"])
    assert data.batch_sampler(x, 7)(gen(0)).shape == (7, 1)
    with pytest.raises(CourseInputError, match="same first dimension"):
        data.batch_sampler({"a": x, "b": y[:5]}, 4)
    with pytest.raises(CourseInputError, match="batch_size"):
        data.batch_sampler(x, 0)


# ---- metrics added for notebook 03 ------------------------------------------------------------

def test_plugin_energy_distance_is_the_all_pairs_formula_and_never_negative():
    x, y = torch.randn(50, 2, generator=gen(0)), torch.randn(70, 2, generator=gen(1)) + 0.3
    d = lambda a, b: (a.double()[:, None] - b.double()[None]).norm(dim=-1).mean()  # noqa: E731
    expected = 2 * d(x, y) - d(x, x) - d(y, y)
    assert metrics.energy_distance_plugin(x, y) == pytest.approx(float(expected), rel=1e-9)
    same = [metrics.energy_distance_plugin(data.two_moons(200, generator=gen(s)), data.two_moons(200, generator=gen(s + 50)))
            for s in range(5)]
    assert min(same) > 0


def test_floor_is_about_mean_pair_distance_times_two_over_n():
    # For two independent draws of n points, E[plug-in ED] = E|X - X'| (1/n + 1/n) exactly.
    n = 200
    floor = metrics.data_floor(data.two_moons, n, generator=gen(0), repeats=60)
    big = data.two_moons(4000, generator=gen(9))
    mean_pair = float(torch.cdist(big[:2000], big[2000:]).mean())
    assert floor == pytest.approx(mean_pair * 2 / n, rel=0.15)
    far = metrics.distance_to_data(data.two_moons(n, generator=gen(1)) + 0.5, data.two_moons, generator=gen(2))
    assert far > 10 * floor


def test_digits_classifier_is_accurate_confident_on_real_digits_and_not_on_junk():
    clf = metrics.digits_classifier()
    assert clf is metrics.digits_classifier()  # cached per process
    assert clf.heldout_accuracy >= 0.97 and clf.heldout_confident_share >= 0.88
    x, y = data.load_digits()
    label, confidence = metrics.classify_digits(x[:300])
    assert (label == y[:300]).float().mean() > 0.97
    noise = torch.randn(300, 1, 16, 16, generator=gen(0)).clamp(-1, 1)
    assert metrics.digit_figures(noise)["confident_share"] < 0.05
    blends = 0.5 * x[:300] + 0.5 * x[300:600]
    assert metrics.digit_figures(blends)["confident_share"] < 0.4


def test_digit_figures_histogram_and_distance_from_uniform():
    x, y = data.load_digits()
    figs = metrics.digit_figures(x[:500])
    assert sum(figs["histogram"]) == pytest.approx(1.0, abs=1e-3)
    assert figs["tv_from_uniform"] < 0.05 and figs["confident_share"] > 0.85
    ones = x[y == 1][:100]
    figs = metrics.digit_figures(ones)
    assert figs["tv_from_uniform"] > 0.8
    with pytest.raises(CourseInputError, match="grey images"):
        metrics.classify_digits(torch.zeros(3, 16, 16))
    np.testing.assert_allclose(sum(figs["histogram"]), 1.0, atol=1e-3)
