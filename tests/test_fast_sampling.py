"""course_lib.fast_sampling and the probability-flow reference: orders read off slopes, against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib import fast_sampling, mixtures, models
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_probability_flow_reference_equals_the_closed_form_for_one_gaussian():
    """One Gaussian N(mu, s^2 I): x_bar(sigma) - mu grows as sqrt(s^2 + sigma^2), so x_0 = mu + (x_bar_T - mu) s / sqrt(s^2 + sigma_T^2)."""
    mu, s = torch.tensor([[1.0, -0.5]]), 0.3
    one = mixtures.GaussianMixture(mu, torch.tensor([s]), torch.tensor([1.0]))
    ab_T = float(models.SCHEDULE.alpha_bars[-1])
    sigma_T = math.sqrt((1 - ab_T) / ab_T)
    x_T = torch.randn(200, 2, generator=torch.Generator().manual_seed(0))
    ours = mixtures.probability_flow_solution(one, x_T, ab_T, num_steps=400)
    closed = mu.double() + (x_T.double() * math.sqrt(sigma_T**2 + 1) - mu.double()) * s / math.sqrt(s**2 + sigma_T**2)
    assert float((ours - closed).abs().max()) < 1e-6
    with pytest.raises(CourseInputError, match="alpha_bar_T must be in"):
        mixtures.probability_flow_solution(one, x_T, 1.0)


def gaussian_conditioning_eps(x: np.ndarray, ab: float, means: np.ndarray, stds: np.ndarray,
                              weights: np.ndarray) -> np.ndarray:
    """E[eps | x_t] for mixture data, by conditioning jointly Gaussian (x_t, eps) within each component.

    Given component k: x_t ~ N(sqrt(ab) mu_k, v_k I) with v_k = ab s_k^2 + 1 - ab, Cov(eps, x_t) = sqrt(1 - ab) I,
    so E[eps | x_t, k] = sqrt(1 - ab) (x_t - sqrt(ab) mu_k) / v_k; then average over the posterior r_k(x_t)
    proportional to w_k N(x_t; sqrt(ab) mu_k, v_k I). numpy, float64, one component at a time.
    """
    d = x.shape[1]
    log_r, cond = [], []
    for mu, s, w in zip(means, stds, weights):
        v = ab * s**2 + 1 - ab
        centred = x - math.sqrt(ab) * mu
        log_r.append(math.log(w) - 0.5 * (centred**2).sum(1) / v - 0.5 * d * math.log(2 * math.pi * v))
        cond.append(math.sqrt(1 - ab) * centred / v)
    log_r = np.stack(log_r)  # (K, n)
    r = np.exp(log_r - log_r.max(0))
    r /= r.sum(0)
    return (r[:, :, None] * np.stack(cond)).sum(0)


@pytest.mark.parametrize("t", [0, 300, 999])
def test_optimal_eps_is_gaussian_conditioning_and_reads_the_table(t, worst):
    ab, ring32 = models.SCHEDULE.alpha_bars.double(), mixtures.ring()
    ring = mixtures.GaussianMixture(ring32.means.double(), ring32.stds.double(), ring32.weights.double())
    x = torch.randn(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = mixtures.optimal_eps(x, t, ab, ring)
    oracle = gaussian_conditioning_eps(x.numpy(), float(ab[t]), ring.means.double().numpy(),
                                       ring.stds.double().numpy(), ring.weights.double().numpy())
    worst("mixtures.optimal_eps vs Gaussian conditioning", float(np.abs(ours.numpy() - oracle).max()))
    np.testing.assert_allclose(ours.numpy(), oracle, atol=1e-10, rtol=1e-10)
    assert torch.equal(ours, mixtures.optimal_eps_at(x, float(ab[t]), ring))  # a table entry is that noise level
    # one timestep per row reads each row's own entry of the table
    rows = torch.tensor([t, 10] * 25)
    mixed = mixtures.optimal_eps(x, rows, ab, ring)
    other = gaussian_conditioning_eps(x.numpy(), float(ab[10]), ring.means.double().numpy(),
                                      ring.stds.double().numpy(), ring.weights.double().numpy())
    want = np.where((rows == t).numpy()[:, None], oracle, other)
    np.testing.assert_allclose(mixed.numpy(), want, atol=1e-10, rtol=1e-10)


def test_log_sigma_table_is_even_in_log_sigma():
    ab = fast_sampling.log_sigma_alpha_bars(size=1000)
    log_sigma = torch.log(((1 - ab) / ab).sqrt())
    steps = log_sigma.diff()
    assert ab.dtype == torch.float64 and (steps > 0).all()
    assert float((steps / steps.mean() - 1).abs().max()) < 1e-6
    assert math.isclose(float(log_sigma[0].exp()), 0.002, rel_tol=1e-9)
    assert math.isclose(float(log_sigma[-1].exp()), 80.0, rel_tol=1e-9)


def test_each_solver_shows_its_order_on_the_smooth_grid():
    rows = fast_sampling.ode_errors(n=200, evaluations=(17, 33, 65, 129), reference_steps=1000)
    assert 0.9 <= fast_sampling.fitted_order(rows, "ddim") <= 1.2
    assert 1.8 <= fast_sampling.fitted_order(rows, "heun") <= 2.6
    assert 1.4 <= fast_sampling.fitted_order(rows, "dpmpp_2m") <= 2.3
    at_65 = {r["sampler"]: r["error"] for r in rows if r["evaluations"] == 65}
    assert at_65["dpmpp_2m"] < at_65["ddim"] / 4 and at_65["heun"] < at_65["ddim"] / 2


def test_fitted_order_and_matching_on_made_up_rows():
    rows = [{"sampler": "a", "evaluations": e, "error": 3.0 * e**-2.0} for e in (10, 20, 40, 80)]
    rows += [{"sampler": "b", "evaluations": e, "error": 1.0 / e} for e in (10, 20, 40, 80)]
    assert math.isclose(fast_sampling.fitted_order(rows, "a", min_evaluations=10), 2.0, rel_tol=1e-9)
    assert fast_sampling.matching_evaluations(rows, target=("b", 40), key="error") == {"a": 20, "b": 40}  # a: 3/400 <= 1/40 < 3/100
    with pytest.raises(CourseInputError, match="need two rows"):
        fast_sampling.fitted_order(rows, "c")
    with pytest.raises(CourseInputError, match="no row of 'b' with 50"):
        fast_sampling.matching_evaluations(rows, target=("b", 50), key="error")


def test_gpu_quotes_name_their_source_setting_and_what_they_time():
    """Every quoted GPU figure says what it measures (seconds of a call, or steps per second) and where it is from."""
    assert fast_sampling.GPU_QUOTES
    for quote in fast_sampling.GPU_QUOTES:
        assert quote["source"] in fast_sampling.GPU_SOURCES and quote["setting"] and quote["times"]
        assert quote["unit"] in ("s", "steps/s") and quote["value"] > 0
        steps = [int(word) for word in quote["setting"].replace(",", " ").split() if word.isdigit()]
        assert steps and steps[-1] in (20, 50), "the setting names its step count"
    # the two kinds of figure: seconds of whole calls from the tutorial, a rate from the benchmark table
    assert {q["unit"] for q in fast_sampling.GPU_QUOTES if q["source"] == "tutorial"} == {"s"}
    assert {q["unit"] for q in fast_sampling.GPU_QUOTES if q["source"] == "benchmark"} == {"steps/s"}
    for source in fast_sampling.GPU_SOURCES.values():
        assert "huggingface/diffusers" in source and "docs/source/en/" in source
    assert all(q["rounded_to"] is None or 0 < q["rounded_to"] <= q["value"] for q in fast_sampling.GPU_QUOTES)


def test_last_step_error_equals_the_closed_form_for_one_gaussian():
    # one Gaussian N(mu, r^2 I): x_bar(sigma) - mu grows as sqrt(r^2 + sigma^2); one Euler step from sigma_L to 0
    # lands on x0_hat = mu + (x_bar_L - mu) r^2 / (r^2 + sigma_L^2), the exact end is mu + (x_bar_L - mu) r / sqrt(r^2 + sigma_L^2)
    mu, r = torch.tensor([[0.5, -1.0]], dtype=torch.float64), 0.2
    one = mixtures.GaussianMixture(mu, torch.tensor([r], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
    table = models.SCHEDULE.alpha_bars.double()
    rows = fast_sampling.last_step_errors(one, evaluations=(17, 65), n=300, seed=3, alpha_bars=table, reference_steps=400)
    x_T = torch.randn(300, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    sigma_T = math.sqrt((1 - float(table[-1])) / float(table[-1]))
    for row, steps in zip(rows, (17, 65)):
        t_last = round(1000 / steps) - 1  # trailing spacing: the last timestep before data
        ab = float(table[t_last])
        sigma_l = math.sqrt((1 - ab) / ab)
        assert row["sigma_last"] == pytest.approx(sigma_l, rel=1e-9)
        e_l = (x_T * math.sqrt(sigma_T**2 + 1) - mu) * math.sqrt(r**2 + sigma_l**2) / math.sqrt(r**2 + sigma_T**2)
        per_point = e_l * (r / math.sqrt(r**2 + sigma_l**2) - r**2 / (r**2 + sigma_l**2))
        assert row["error"] == pytest.approx(float(per_point.pow(2).sum(1).mean().sqrt()), rel=1e-4)


def test_draw_paths_draws_one_line_per_sample_through_its_states():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = torch.randn(5, 3, 2, generator=torch.Generator().manual_seed(0))
    fig, ax = plt.subplots()
    fast_sampling.draw_paths(ax, paths, color="C1", label="solver")
    assert len(ax.lines) == 3
    for i, line in enumerate(ax.lines):
        np.testing.assert_allclose(line.get_xdata(), paths[:, i, 0].double().numpy())
        np.testing.assert_allclose(line.get_ydata(), paths[:, i, 1].double().numpy())
    assert [line.get_label() for line in ax.lines][0] == "solver"
    np.testing.assert_allclose(ax.collections[0].get_offsets(), paths[-1].double().numpy())
    with pytest.raises(CourseInputError, match="paths must be a tensor"):
        fast_sampling.draw_paths(ax, paths[0])
    plt.close(fig)
