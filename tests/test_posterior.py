"""course_lib.posterior against a product of Gaussians, Monte Carlo, and diffusers' scheduler internals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from course_lib import posterior, schedules

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEDULES = ["linear", "scaled_linear", "cosine"]
PREDICTIONS = list(posterior.PREDICTION_TYPES)
# (t, t_prev): one training step, jumps of several, and the step to clean data is tested apart.
PAIRS = [(1, 0), (10, 9), (500, 499), (999, 998), (500, 300), (999, 949), (37, 0)]


def product_of_gaussians(x0: np.ndarray, xt: np.ndarray, ab_t: float, ab_prev: float):
    """Posterior of x_prev given x_t and x0 by completing the square, in float64.

    q(x_t | x_prev) = N(sqrt(a) x_prev, 1 - a) with a = ab_t / ab_prev, read as a function of x_prev,
    is proportional to N(x_prev; x_t / sqrt(a), (1 - a) / a); times q(x_prev | x0) = N(sqrt(ab_prev) x0,
    1 - ab_prev). Precisions add; the mean is the precision-weighted mean of the two centres.
    """
    a = ab_t / ab_prev
    prec_1, centre_1 = a / (1 - a), xt / math.sqrt(a)
    prec_2, centre_2 = 1 / (1 - ab_prev), math.sqrt(ab_prev) * x0
    prec = prec_1 + prec_2
    return (prec_1 * centre_1 + prec_2 * centre_2) / prec, 1 / prec


@pytest.mark.parametrize("t,t_prev", PAIRS)
@pytest.mark.parametrize("name", SCHEDULES)
def test_q_posterior_is_the_product_of_gaussians(name, t, t_prev, worst):
    ab = schedules.NoiseSchedule(name).alpha_bars
    g = torch.Generator().manual_seed(t)
    x0 = torch.randn(4, 3, generator=g)
    xt = torch.randn(4, 3, generator=g)
    ab64 = ab.double().numpy()
    ref_mean, ref_var = product_of_gaussians(x0.double().numpy(), xt.double().numpy(), ab64[t], ab64[t_prev])
    # In float64 throughout, the two agree to rounding.
    mean64, var64 = posterior.q_posterior(x0.double(), xt.double(), t, ab.double(),
                                          t_prev=None if t_prev == t - 1 else t_prev)
    np.testing.assert_allclose(mean64.numpy(), ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var64.numpy(), ref_var, rtol=1e-10, atol=1e-15)
    # In float32 (as the samplers run), beta = 1 - ab_t / ab_prev is computed from two numbers
    # rounded to float32 (relative error <= 2^-24 each), so it carries an absolute error of about
    # 2 * 2^-24 and a relative one of 2^-23 / beta, which reaches 1e-3 at t ~ 0 where beta ~ 1e-4
    # (diffusers computes it the same way). The tolerance is that conditioning, times the data's size.
    mean, var = posterior.q_posterior(x0, xt, t, ab, t_prev=t_prev)
    beta = 1 - ab64[t] / ab64[t_prev]
    cond = 4 * 2.0**-24 / beta
    mean_tol = 1e-6 + cond * (np.abs(x0.numpy()).max() + np.abs(xt.numpy()).max())
    mean_err = np.abs(mean.double().numpy() - ref_mean).max()
    var_err = np.abs(var.double().numpy() - ref_var).max()
    worst("posterior: float32 q_posterior mean vs product of Gaussians (/ tolerance)", mean_err / mean_tol)
    worst("posterior: float32 q_posterior variance vs product of Gaussians (/ tolerance)",
          var_err / (1e-7 + cond * ref_var.max()))
    assert mean_err <= mean_tol, f"mean off by {mean_err:.2e} > {mean_tol:.2e}"
    assert var_err <= 1e-7 + cond * ref_var.max(), f"variance off by {var_err:.2e}"


@pytest.mark.parametrize("name", SCHEDULES)
def test_q_posterior_to_clean_data_and_per_sample_steps(name):
    ab = schedules.NoiseSchedule(name).alpha_bars.double()
    g = torch.Generator().manual_seed(0)
    x0, xt = torch.randn(3, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g, dtype=torch.float64)
    # t_prev = -1 (alpha_bar = 1): the posterior is a point mass at x0. t = 0 defaults to t_prev = -1.
    for t in (0, 5, 999):
        mean, var = posterior.q_posterior(x0, xt, t, ab, t_prev=-1)
        torch.testing.assert_close(mean, x0)
        assert torch.all(var == 0)
    torch.testing.assert_close(posterior.q_posterior(x0, xt, 0, ab)[0], x0)
    # Per-sample (B,) timesteps equal row-by-row calls.
    t, t_prev = torch.tensor([999, 400, 3]), torch.tensor([998, 100, -1])
    mean, var = posterior.q_posterior(x0, xt, t, ab, t_prev=t_prev)
    for i in range(3):
        m_i, v_i = posterior.q_posterior(x0[i:i + 1], xt[i:i + 1], int(t[i]), ab, t_prev=int(t_prev[i]))
        torch.testing.assert_close(mean[i:i + 1], m_i)
        torch.testing.assert_close(var[i:i + 1], v_i)


@pytest.mark.parametrize("name", SCHEDULES)
def test_posterior_coefficients_are_ddpm_eq_7(name):
    """For one step (t_prev = t - 1), written with the schedule's beta_t as in DDPM's eq. 7. The
    alpha_bars are rebuilt in float64 from the betas, so the check is of the algebra alone."""
    betas = schedules.NoiseSchedule(name).betas.double()
    ab = torch.cumprod(1 - betas, 0)
    t = torch.arange(1, 1000)
    coef_x0, coef_xt, var = posterior.posterior_coefficients(ab[t], ab[t - 1])
    torch.testing.assert_close(coef_x0, ab[t - 1].sqrt() * betas[t] / (1 - ab[t]), atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(coef_xt, (1 - betas[t]).sqrt() * (1 - ab[t - 1]) / (1 - ab[t]), atol=1e-12,
                               rtol=1e-9)
    torch.testing.assert_close(var, (1 - ab[t - 1]) / (1 - ab[t]) * betas[t], atol=1e-15, rtol=1e-9)
    assert (var < betas[t]).all(), "beta_tilde < beta"


@pytest.mark.parametrize("t,t_prev", [(20, 19), (300, 299), (600, 500)])
def test_q_posterior_monte_carlo(t, t_prev, worst):
    """Sample x_prev ~ q(. | x0), x_t ~ q(. | x_prev), keep pairs with x_t in a narrow bin around c,
    and compare the mean and variance of the kept x_prev with q_posterior(x0, c). Within the bin the
    posterior mean moves linearly with x_t, so we compare at the bin's mean x_t and take the variance
    of the residuals of a least-squares line (both remove the bin's width without our coefficients).
    Tolerance 5 standard errors: SE(mean) = sqrt(var / m), SE(var) = var * sqrt(2 / (m - 1))."""
    ab = schedules.NoiseSchedule("linear").alpha_bars.double()
    n = 2_000_000
    g = torch.Generator().manual_seed(t)
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    x_prev = schedules.q_sample(x0, t_prev, ab, generator=g)
    a = ab[t] / ab[t_prev]
    xt = a.sqrt() * x_prev + (1 - a).sqrt() * torch.randn(n, 1, generator=g, dtype=torch.float64)
    c = (xt.mean() + 0.5 * xt.std()).item()  # a typical x_t, half a standard deviation above the mean
    keep = ((xt - c).abs() < 0.05 * xt.std())[:, 0]
    xs, ys = xt[keep, 0], x_prev[keep, 0]
    m = len(ys)
    design = torch.stack([torch.ones_like(xs), xs - xs.mean()], 1)
    coef = torch.linalg.lstsq(design, ys[:, None]).solution[:, 0]
    resid_var = ((ys - design @ coef) ** 2).sum() / (m - 2)
    mean, var = posterior.q_posterior(x0[:1], xs.mean().reshape(1, 1), t, ab, t_prev=t_prev)
    mean, var = mean.item(), var.item()
    z_mean = abs(ys.mean().item() - mean) / math.sqrt(var / m)
    z_var = abs(resid_var.item() - var) / (var * math.sqrt(2 / (m - 1)))
    worst("Monte Carlo: q_posterior vs binned pairs (in SE)", max(z_mean, z_var))
    assert z_mean < 5, f"t={t}: binned mean {ys.mean():.5f} is {z_mean:.2f} SE from {mean:.5f} (m={m}, limit 5 SE)"
    assert z_var < 5, f"t={t}: binned variance {resid_var:.3e} is {z_var:.2f} SE from {var:.3e} (m={m}, limit 5 SE)"


# ---------------------------------------------------------------------------------------------
# eps / x0 / v


@pytest.mark.parametrize("name", SCHEDULES)
def test_conversions_round_trip(name):
    ab = schedules.NoiseSchedule(name).alpha_bars.double()
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64), torch.randn(6, 2, 3, 3, generator=g,
                                                                                    dtype=torch.float64)
    t = torch.tensor([0, 1, 100, 500, 998, 999])
    ab_t = schedules.gather(ab, t, x0)
    xt = schedules.q_sample(x0, t, ab, noise=eps)
    v = posterior.v_from_x0_eps(x0, eps, ab_t)
    torch.testing.assert_close(posterior.x0_from_eps(xt, eps, ab_t), x0)
    torch.testing.assert_close(posterior.eps_from_x0(xt, x0, ab_t), eps)
    torch.testing.assert_close(posterior.x0_from_v(xt, v, ab_t), x0)
    torch.testing.assert_close(posterior.eps_from_v(xt, v, ab_t), eps)
    # v is the rotation of (x0, eps) by the angle phi with cos(phi) = sqrt(ab): |v|^2 + |xt|^2 = |x0|^2 + |eps|^2.
    torch.testing.assert_close(v**2 + xt**2, x0**2 + eps**2)
    targets = {"epsilon": eps, "sample": x0, "v_prediction": v}
    for prediction_type, target in targets.items():
        x0_hat, eps_hat = posterior.predict_x0_eps(target, xt, ab_t, prediction_type)
        torch.testing.assert_close(x0_hat, x0)
        torch.testing.assert_close(eps_hat, eps)


@pytest.mark.parametrize("name", SCHEDULES)
def test_v_matches_diffusers_get_velocity(name, worst):
    s = schedules.NoiseSchedule(name)
    sched = DDPMScheduler(**s.diffusers_config())
    sched.alphas_cumprod = s.alpha_bars.clone()
    g = torch.Generator().manual_seed(2)
    x0, eps = torch.randn(5, 3, 4, 4, generator=g), torch.randn(5, 3, 4, 4, generator=g)
    t = torch.tensor([0, 10, 500, 900, 999])
    ours = posterior.v_from_x0_eps(x0, eps, schedules.gather(s.alpha_bars, t, x0))
    diff = (ours - sched.get_velocity(x0, eps, t)).abs().max().item()
    worst("posterior: v_from_x0_eps vs DDPMScheduler.get_velocity", diff)
    assert diff <= 1e-6


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
@pytest.mark.parametrize("name", SCHEDULES)
def test_predict_x0_eps_matches_diffusers_step_internals(name, prediction_type, worst):
    """x0_hat against DDPMScheduler.step's pred_original_sample; eps_hat against the eps that
    DDIMScheduler.step (eta = 0) puts in its 'direction pointing to x_t'."""
    s = schedules.NoiseSchedule(name)
    g = torch.Generator().manual_seed(3)
    xt, model_output = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    ddpm = DDPMScheduler(**s.diffusers_config(), prediction_type=prediction_type, clip_sample=False)
    ddim = DDIMScheduler(**s.diffusers_config(), prediction_type=prediction_type, clip_sample=False)
    for sched in (ddpm, ddim):
        sched.alphas_cumprod = s.alpha_bars.clone()
        sched.set_timesteps(50)
    for t in (980, 500, 100):  # t_prev = t - 20 keeps 1 - ab_prev away from 0, so their_eps is well conditioned
        ab_t = s.alpha_bars[t]
        x0_hat, eps_hat = posterior.predict_x0_eps(model_output, xt, ab_t, prediction_type)
        their_x0 = ddpm.step(model_output, t, xt, generator=torch.Generator().manual_seed(0)).pred_original_sample
        ab_prev = s.alpha_bars[t - 20]
        out = ddim.step(model_output, t, xt, eta=0.0)
        their_eps = (out.prev_sample - ab_prev.sqrt() * out.pred_original_sample) / (1 - ab_prev).sqrt()
        dx = (x0_hat - their_x0).abs().max().item() / max(1.0, their_x0.abs().max().item())
        de = (eps_hat - their_eps).abs().max().item()
        worst("posterior: predict_x0_eps vs diffusers step internals (x0 rel., eps abs.)", max(dx, de))
        assert dx <= 1e-6, f"t={t}: x0_hat off by {dx:.2e} (relative)"
        assert de <= 1e-5, f"t={t}: eps_hat off by {de:.2e}"
