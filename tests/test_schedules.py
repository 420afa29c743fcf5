"""course_lib.schedules against diffusers, a float64 reference and Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from course_lib import schedules

SCHEDULES = ["linear", "scaled_linear", "cosine"]
T = 1000
pytestmark = pytest.mark.usefixtures("one_thread")


def float64_reference(name: str, num_steps: int = T) -> tuple[np.ndarray, np.ndarray]:
    """Return (betas, alpha_bars) computed in float64 with numpy/math from the papers' formulas."""
    if name == "linear":
        betas = np.linspace(1e-4, 0.02, num_steps, dtype=np.float64)
    elif name == "scaled_linear":
        betas = np.linspace(math.sqrt(0.00085), math.sqrt(0.012), num_steps, dtype=np.float64) ** 2
    else:  # improved DDPM eq. 17, betas clipped at 0.999
        f = [math.cos((i / num_steps + 0.008) / 1.008 * math.pi / 2) ** 2 for i in range(num_steps + 1)]
        betas = np.array([min(1 - f[i + 1] / f[i], 0.999) for i in range(num_steps)])
    return betas, np.cumprod(1 - betas)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_matches_diffusers_and_float64_reference(name, worst):
    ours = schedules.NoiseSchedule(name, num_steps=T)
    theirs = DDPMScheduler(**ours.diffusers_config())
    betas_ref, ab_ref = float64_reference(name)

    assert ours.betas.dtype == torch.float32 and ours.alpha_bars.dtype == torch.float32
    beta_diff = (ours.betas - theirs.betas).abs().max().item()
    ab_diff = (ours.alpha_bars - theirs.alphas_cumprod).abs().max().item()
    worst("schedules: |betas - diffusers betas|", beta_diff)
    worst("schedules: |alpha_bars - diffusers alphas_cumprod|", ab_diff)
    assert beta_diff <= 1e-6, f"{name}: betas differ from diffusers by {beta_diff:.2e}"
    assert ab_diff <= 1e-6, f"{name}: alpha_bars differ from diffusers by {ab_diff:.2e}"

    # Ours is built in float64 and rounded once; diffusers accumulates the product in float32.
    our_err = np.abs(ours.alpha_bars.double().numpy() - ab_ref).max()
    their_err = np.abs(theirs.alphas_cumprod.double().numpy() - ab_ref).max()
    worst("schedules: |alpha_bars - float64 reference| (ours)", our_err)
    worst("schedules: |alpha_bars - float64 reference| (diffusers)", their_err)
    assert our_err <= 1e-7, f"{name}: ours is {our_err:.2e} from the float64 reference"
    assert our_err < their_err, f"{name}: ours {our_err:.2e} should beat diffusers' {their_err:.2e}"
    np.testing.assert_allclose(ours.betas.double().numpy(), betas_ref, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_properties_are_consistent(name):
    s = schedules.NoiseSchedule(name)
    ab = s.alpha_bars.double()
    torch.testing.assert_close(s.alphas, 1 - s.betas)
    # alphas are rounded to float32 before this product, so it is only as close as diffusers' (~5e-7).
    torch.testing.assert_close(torch.cumprod(s.alphas.double(), 0), ab, atol=1e-6, rtol=0)
    torch.testing.assert_close(s.snr.double(), ab / (1 - ab), rtol=1e-5, atol=0)
    torch.testing.assert_close(s.log_snr, torch.log(s.snr))
    assert (s.betas > 0).all() and (s.betas < 1).all()
    assert (ab[1:] < ab[:-1]).all(), "alpha_bar must decrease strictly"
    assert (s.log_snr[1:] < s.log_snr[:-1]).all(), "log-SNR must decrease strictly"


def test_cosine_alpha_bar_telescopes_to_f_ratio():
    """Without the 0.999 clip, prod(1 - beta) telescopes to f((t+1)/T) / f(0) (improved DDPM eq. 17)."""
    s = schedules.NoiseSchedule("cosine")
    u = torch.arange(1, T + 1, dtype=torch.float64) / T
    expected = schedules.cosine_alpha_bar(u) / schedules.cosine_alpha_bar(torch.zeros((), dtype=torch.float64))
    unclipped = s.betas < 0.999
    assert unclipped[:-1].all() and not unclipped[-1], "only the last beta is clipped for T=1000"
    torch.testing.assert_close(s.alpha_bars.double()[unclipped], expected[unclipped], atol=1e-7, rtol=0)


def test_alias_and_config_roundtrip():
    a = schedules.NoiseSchedule("squaredcos_cap_v2", num_steps=50)
    assert a.name == "cosine" and a.to_config() == {"name": "cosine", "num_steps": 50, "beta_start": None,
                                                     "beta_end": None}
    for name in SCHEDULES:
        s = schedules.NoiseSchedule(name, num_steps=100)
        again = schedules.NoiseSchedule(**s.to_config())
        assert again == s and torch.equal(again.betas, s.betas)
        theirs = DDPMScheduler(**s.diffusers_config())
        torch.testing.assert_close(s.betas, theirs.betas, atol=1e-6, rtol=0)
    custom = schedules.NoiseSchedule("linear", num_steps=10, beta_start=0.001, beta_end=0.1)
    torch.testing.assert_close(custom.betas, torch.linspace(0.001, 0.1, 10))


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("shape", [(6, 3, 4, 4), (6, 2)])
def test_q_sample_matches_diffusers_add_noise(name, shape, worst):
    s = schedules.NoiseSchedule(name)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(shape, generator=g)
    noise = torch.randn(shape, generator=g)
    t = torch.tensor([0, 1, 250, 500, 998, 999])  # one timestep per sample
    ours = schedules.q_sample(x0, t, s.alpha_bars, noise=noise)
    # Same table in both: equal to float32 rounding (DDIMScheduler.add_noise is a copy of DDPM's).
    for cls in (DDPMScheduler, DDIMScheduler):
        theirs = cls(**s.diffusers_config())
        theirs.alphas_cumprod = s.alpha_bars.clone()
        same_table = (ours - theirs.add_noise(x0, noise, t)).abs().max().item()
        worst("schedules: q_sample vs add_noise (same table)", same_table)
        assert same_table <= 1e-6, f"{cls.__name__}: {same_table:.2e}"
    # diffusers' own table: the tables differ by <= 5e-7, which sqrt(ab) amplifies by 1/(2 sqrt(ab_999))
    # ~ 80 at t = 999 (conditioning, not an error), so the samples differ by up to ~1e-5.
    own_table = (ours - DDPMScheduler(**s.diffusers_config()).add_noise(x0, noise, t)).abs().max().item()
    assert own_table <= 3e-5
    # Per-sample t equals one call per sample with a scalar t.
    for i in range(len(t)):
        one = schedules.q_sample(x0[i : i + 1], int(t[i]), s.alpha_bars, noise=noise[i : i + 1])
        torch.testing.assert_close(one, ours[i : i + 1], atol=0, rtol=0)


@pytest.mark.parametrize("name", SCHEDULES)
def test_q_mean_variance_and_q_step_formulas(name):
    s = schedules.NoiseSchedule(name)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(4, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 3, 400, 999])
    mean, var = schedules.q_mean_variance(x0, t, s.alpha_bars)
    ab = s.alpha_bars.double()[t][:, None]
    torch.testing.assert_close(mean, ab.sqrt() * x0)
    torch.testing.assert_close(var, (1 - ab).expand_as(x0))
    # q_sample with zero noise is the mean; with unit noise it is mean + std.
    torch.testing.assert_close(schedules.q_sample(x0, t, s.alpha_bars, noise=torch.zeros_like(x0)), mean)
    torch.testing.assert_close(schedules.q_sample(x0, t, s.alpha_bars, noise=torch.ones_like(x0)), mean + var.sqrt())
    # One forward step, and the first step equals the closed form at t = 0.
    eps = torch.randn(4, 2, generator=g, dtype=torch.float64)
    beta = s.betas.double()[t][:, None]
    torch.testing.assert_close(schedules.q_step(x0, t, s.betas, noise=eps), (1 - beta).sqrt() * x0 + beta.sqrt() * eps)
    # 1 - ab_0 loses ~4 digits to cancellation in float32 (ab_0 ~ 0.9999), hence 1e-5 rather than 1e-7.
    torch.testing.assert_close(schedules.q_step(x0, 0, s.betas, noise=eps),
                               schedules.q_sample(x0, 0, s.alpha_bars, noise=eps), atol=1e-5, rtol=0)
    # The generator path draws the same noise as an explicit draw from an identically seeded generator.
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    drawn = torch.randn(x0.shape, generator=g2, dtype=x0.dtype)
    torch.testing.assert_close(schedules.q_sample(x0, t, s.alpha_bars, generator=g1),
                               schedules.q_sample(x0, t, s.alpha_bars, noise=drawn))


@pytest.mark.parametrize("name", SCHEDULES)
def test_iterated_q_step_matches_closed_form_monte_carlo(name, worst):
    """Run the chain x_t = sqrt(1-beta_t) x_{t-1} + sqrt(beta_t) eps from a fixed x0 and compare the
    sample mean and variance at several t with q_mean_variance (DDPM eq. 4), within 5 standard errors:
    SE(mean) = sqrt(var / n), SE(var) = var * sqrt(2 / (n - 1)) (Gaussian)."""
    s = schedules.NoiseSchedule(name)
    n = 20_000
    x0_row = torch.tensor([1.0, -0.5, 0.25])  # float32: the chain runs as the course runs it
    x0 = x0_row.expand(n, 3).clone()
    g = torch.Generator().manual_seed(11)
    checkpoints = {0, 9, 99, 499, 999}
    x = x0
    for t in range(T):
        x = schedules.q_step(x, t, s.betas, generator=g)
        if t not in checkpoints:
            continue
        mean, var = schedules.q_mean_variance(x0_row[None], t, s.alpha_bars)
        mean, var = mean[0], var[0]
        se_mean = (var / n).sqrt()
        se_var = var * math.sqrt(2 / (n - 1))
        z_mean = ((x.mean(0) - mean).abs() / se_mean).max().item()
        z_var = ((x.var(0) - var).abs() / se_var).max().item()
        worst("Monte Carlo: iterated q_step vs q_mean_variance (in SE)", max(z_mean, z_var))
        assert z_mean < 5, f"{name} t={t}: chain mean is {z_mean:.2f} SE from sqrt(ab_t)*x0 (n={n}, limit 5 SE)"
        assert z_var < 5, f"{name} t={t}: chain variance is {z_var:.2f} SE from 1-ab_t (n={n}, limit 5 SE)"
