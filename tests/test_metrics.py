"""course_lib.metrics.energy_distance against a brute-force sum, a closed form, and Monte Carlo."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from course_lib import metrics

pytestmark = pytest.mark.usefixtures("one_thread")


def brute_force(x: torch.Tensor, y: torch.Tensor) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| with self-pairs left out, by explicit loops."""
    x, y = x.double().tolist(), y.double().tolist()
    dist = lambda a, b: math.sqrt(sum((u - v) ** 2 for u, v in zip(a, b)))  # noqa: E731
    xy = sum(dist(a, b) for a in x for b in y) / (len(x) * len(y))
    xx = sum(dist(a, b) for a, b in itertools.permutations(x, 2)) / (len(x) * (len(x) - 1))
    yy = sum(dist(a, b) for a, b in itertools.permutations(y, 2)) / (len(y) * (len(y) - 1))
    return 2 * xy - xx - yy


def normal_abs_mean(mu: float, s: float) -> float:
    """E|Z| for Z ~ N(mu, s^2) (folded normal): s sqrt(2/pi) exp(-mu^2 / 2s^2) + mu (1 - 2 Phi(-mu/s))."""
    phi = 0.5 * (1 + math.erf(-mu / s / math.sqrt(2)))
    return s * math.sqrt(2 / math.pi) * math.exp(-(mu**2) / (2 * s**2)) + mu * (1 - 2 * phi)


def closed_form_1d(shift: float) -> float:
    """Energy distance between N(0, 1) and N(shift, 1): X - Y ~ N(-shift, 2), X - X' ~ N(0, 2)."""
    return 2 * normal_abs_mean(shift, math.sqrt(2)) - 2 * normal_abs_mean(0.0, math.sqrt(2))


def test_hand_computed_and_brute_force():
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [3.0]])
    # xy = (0 + 3 + 1 + 2) / 4 = 1.5, xx = 1, yy = 3: 2 * 1.5 - 1 - 3 = -1 (U-statistics can be < 0).
    assert metrics.energy_distance(x, y) == pytest.approx(-1.0, abs=1e-12)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 2, generator=g), torch.randn(41, 2, generator=g) + 0.5
    assert metrics.energy_distance(x, y) == pytest.approx(brute_force(x, y), abs=1e-9)
    # Two point masses a and b: 2 |a - b|.
    assert metrics.energy_distance(torch.zeros(5, 3), torch.ones(4, 3)) == pytest.approx(2 * math.sqrt(3), abs=1e-9)


def test_symmetric_and_invariant_to_rigid_motions():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 2, generator=g), 1.5 * torch.randn(150, 2, generator=g)
    ed = metrics.energy_distance(x, y)
    assert metrics.energy_distance(y, x) == pytest.approx(ed, abs=1e-12)
    c, s = math.cos(0.7), math.sin(0.7)
    rot = torch.tensor([[c, -s], [s, c]])
    shift = torch.tensor([3.0, -2.0])
    assert metrics.energy_distance(x @ rot.T + shift, y @ rot.T + shift) == pytest.approx(ed, abs=1e-6)


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_matches_closed_form_for_1d_gaussians(shift, worst):
    """Mean of R = 20 independent estimates (n = m = 1000) within 5 standard errors of the closed form;
    SE = sd / sqrt(R), the sd measured over the R estimates. For shift 0 that is 'zero within 5 SE'."""
    g = torch.Generator().manual_seed(int(shift * 10) + 3)
    estimates = torch.tensor([
        metrics.energy_distance(torch.randn(1000, 1, generator=g), torch.randn(1000, 1, generator=g) + shift)
        for _ in range(20)
    ])
    expected = closed_form_1d(shift)
    se = estimates.std().item() / math.sqrt(len(estimates))
    z = abs(estimates.mean().item() - expected) / se
    worst("Monte Carlo: energy distance vs 1D Gaussian closed form (in SE)", z)
    assert z < 5, f"shift={shift}: mean estimate {estimates.mean():.5f} vs closed form {expected:.5f}, {z:.2f} SE"
    if shift == 0:
        # Each single estimate of a zero distance is within a few of its own standard deviations of 0.
        assert estimates.abs().max() < 5 * estimates.std()


def test_grows_with_a_shift():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(800, 2, generator=g), torch.randn(800, 2, generator=g)
    values = [metrics.energy_distance(x, y + torch.tensor([s, 0.0])) for s in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[1] > 0
    # Shift 4 in 2D: E|X - X'| = sqrt(pi) (Rayleigh, sigma = sqrt 2) and 4 <= E|X - Y| <= 4 + sqrt(pi)
    # (Jensen; triangle inequality), so 8 - 2 sqrt(pi) <= ED <= 8 (true value ~4.96).
    assert 8 - 2 * math.sqrt(math.pi) < values[-1] < 8
