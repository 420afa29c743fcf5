"""course_lib.mixtures against autograd, torch.distributions and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch
from torch import distributions as D

from course_lib import mixtures, schedules

pytestmark = pytest.mark.usefixtures("one_thread")


def lopsided(dtype=torch.float64) -> mixtures.GaussianMixture:
    """Three unequal components in 3D, unequal weights and widths."""
    return mixtures.GaussianMixture(
        means=torch.tensor([[0.0, 1.0, -1.0], [2.0, -0.5, 0.3], [-1.5, -1.0, 1.0]], dtype=dtype),
        stds=torch.tensor([0.3, 0.7, 0.5], dtype=dtype),
        weights=torch.tensor([0.5, 0.2, 0.3], dtype=dtype),
    )


def ring64() -> mixtures.GaussianMixture:
    r = mixtures.ring()
    return mixtures.GaussianMixture(r.means.double(), r.stds.double(), r.weights.double())


MIXTURES = {"ring": ring64, "lopsided": lopsided}


def torch_mixture(m: mixtures.GaussianMixture) -> D.MixtureSameFamily:
    comps = D.Independent(D.Normal(m.means, m.stds[:, None].expand_as(m.means)), 1)
    return D.MixtureSameFamily(D.Categorical(probs=m.weights), comps)


@pytest.mark.parametrize("which", list(MIXTURES))
def test_log_prob_and_responsibilities_match_torch_distributions(which):
    m = MIXTURES[which]()
    x = m.sample(500, generator=torch.Generator().manual_seed(0)) * 1.3
    ref = torch_mixture(m)
    torch.testing.assert_close(m.log_prob(x), ref.log_prob(x))
    # Bayes: p(k | x) = w_k N(x; mu_k, s_k^2 I) / p(x).
    comp = D.Independent(D.Normal(m.means[None], m.stds[None, :, None].expand(1, *m.means.shape)), 1)
    joint = torch.log(m.weights) + comp.log_prob(x[:, None, :])
    torch.testing.assert_close(m.responsibilities(x), torch.softmax(joint, 1))


@pytest.mark.parametrize("which", list(MIXTURES))
def test_score_equals_autograd_of_log_prob(which, worst):
    m = MIXTURES[which]()
    x = (m.sample(400, generator=torch.Generator().manual_seed(1)) * 1.5).requires_grad_(True)
    (grad,) = torch.autograd.grad(m.log_prob(x).sum(), x)
    diff = (m.score(x.detach()) - grad).abs().max().item()
    worst("mixtures: score vs autograd of log_prob (float64)", diff)
    assert diff <= 1e-10
    # The noised mixture too (its score is what eps* is built from).
    noised = m.noised(0.3)
    (grad,) = torch.autograd.grad(noised.log_prob(x).sum(), x)
    torch.testing.assert_close(noised.score(x.detach()), grad)


def test_log_prob_integrates_to_one_on_a_grid():
    m = ring64()
    u = torch.linspace(-3.5, 3.5, 701, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    mass = m.log_prob(grid).exp().sum() * (u[1] - u[0]) ** 2
    assert abs(mass.item() - 1) < 1e-4, f"integral of p over the grid is {mass.item():.6f}"


def test_sample_moments_and_labels():
    """Component frequencies within 5 SE of the weights (SE = sqrt(w(1-w)/n)); the mean and per-component
    spread within 5 SE of the parameters."""
    m = lopsided()
    n = 40_000
    x, labels = m.sample_with_labels(n, generator=torch.Generator().manual_seed(2))
    assert x.shape == (n, 3) and labels.shape == (n,)
    freq = torch.bincount(labels, minlength=3).double() / n
    se = (m.weights * (1 - m.weights) / n).sqrt()
    assert ((freq - m.weights).abs() / se).max() < 5
    for k in range(3):
        xk = x[labels == k]
        se_mean = m.stds[k] / math.sqrt(len(xk))
        assert ((xk.mean(0) - m.means[k]).abs() / se_mean).max() < 5
        se_var = m.stds[k] ** 2 * math.sqrt(2 / (len(xk) - 1))
        assert ((xk.var(0) - m.stds[k] ** 2).abs() / se_var).max() < 5


def mixture_moments(m: mixtures.GaussianMixture):
    """Mean and covariance of a mixture: sum_k w_k mu_k and sum_k w_k (s_k^2 I + mu_k mu_k^T) - m m^T."""
    mean = (m.weights[:, None] * m.means).sum(0)
    second = sum(w * (s**2 * torch.eye(m.dim, dtype=m.means.dtype) + torch.outer(mu, mu))
                 for w, s, mu in zip(m.weights, m.stds, m.means))
    return mean, second - torch.outer(mean, mean)


@pytest.mark.parametrize("t", [50, 200, 500, 999])
@pytest.mark.parametrize("which", list(MIXTURES))
def test_noised_matches_the_law_of_q_sample(which, t, worst):
    """Moments of q_sample(x0 ~ mixture, t) against the moments of noised(ab_t), within 5 SE, and the
    density of noised(ab_t) against the Monte Carlo average E_x0[N(x; sqrt(ab) x0, (1 - ab) I)]."""
    m = MIXTURES[which]()
    ab = schedules.NoiseSchedule("linear").alpha_bars.double()
    g = torch.Generator().manual_seed(t)
    n = 40_000
    xt = schedules.q_sample(m.sample(n, generator=g), t, ab, generator=g)
    law = m.noised(float(ab[t]))
    mean, cov = mixture_moments(law)
    sd = cov.diagonal().sqrt()
    z_mean = ((xt.mean(0) - mean).abs() / (sd / math.sqrt(n))).max().item()
    # SE of a sample covariance entry: sqrt((C_ii C_jj + C_ij^2) / n) (Gaussian approximation; the
    # mixture's heavier tails are absorbed by the 5-SE limit at these sample sizes).
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov**2) / n).sqrt()
    z_cov = ((torch.cov(xt.T) - cov).abs() / se_cov).max().item()
    worst("Monte Carlo: noised() moments vs q_sample (in SE)", max(z_mean, z_cov))
    assert z_mean < 5, f"t={t}: sample mean {z_mean:.2f} SE from the noised mixture's (n={n}, limit 5 SE)"
    assert z_cov < 5, f"t={t}: sample covariance {z_cov:.2f} SE from the noised mixture's (n={n}, limit 5 SE)"

    # Density: p_t(x) = E_x0 N(x; sqrt(ab) x0, (1 - ab) I), averaged over 40 000 draws of x0.
    x0 = m.sample(n, generator=g)
    queries = xt[:5]
    var = 1 - float(ab[t])
    log_k = (-((queries[:, None] - math.sqrt(ab[t]) * x0[None]) ** 2).sum(-1) / (2 * var)
             - 0.5 * m.dim * math.log(2 * math.pi * var))
    k = log_k.exp()
    mc, se = k.mean(1), k.std(1) / math.sqrt(n)
    z = ((law.log_prob(queries).exp() - mc).abs() / se).max().item()
    assert z < 5, f"t={t}: density of noised() is {z:.2f} SE from the Monte Carlo convolution"


@pytest.mark.parametrize("t", [100, 300, 600])
@pytest.mark.parametrize("which", list(MIXTURES))
def test_optimal_eps_is_the_posterior_mean_of_the_noise(which, t, worst):
    """Self-normalised importance sampling: draw x0_i from the mixture, weight each by
    N(x_t; sqrt(ab) x0_i, (1 - ab) I); then E[eps | x_t] ~ sum_i w_i (x_t - sqrt(ab) x0_i) / sqrt(1 - ab).
    Its standard error is sqrt(sum_i w_i^2 (f_i - estimate)^2) (delta method); limit 5 SE + 1e-3."""
    m = MIXTURES[which]()
    ab = schedules.NoiseSchedule("linear").alpha_bars.double()
    g = torch.Generator().manual_seed(10 + t)
    a = float(ab[t])
    xt = schedules.q_sample(m.sample(6, generator=g), t, ab, generator=g)
    xt = torch.cat([xt, torch.zeros(1, m.dim, dtype=xt.dtype)])  # and a point between the modes
    exact = mixtures.optimal_eps(xt, t, ab, m)
    x0 = m.sample(200_000, generator=g)
    for i in range(len(xt)):
        resid = xt[i] - math.sqrt(a) * x0  # (N, D)
        logw = -(resid**2).sum(1) / (2 * (1 - a))
        w = torch.softmax(logw, 0)
        f = resid / math.sqrt(1 - a)
        est = (w[:, None] * f).sum(0)
        se = ((w[:, None] ** 2) * (f - est) ** 2).sum(0).sqrt()
        z = ((exact[i] - est).abs() / (5 * se + 1e-3)).max().item()
        worst("Monte Carlo: optimal_eps vs self-normalised IS (/ (5 SE + 1e-3))", z)
        ess = 1 / (w**2).sum().item()
        assert ess > 100, f"too few effective samples ({ess:.0f}) for a trustworthy estimate"
        assert z < 1, f"t={t}, point {i}: eps* {exact[i].tolist()} vs IS {est.tolist()} +- {se.tolist()}"


def test_optimal_eps_tweedie_and_per_sample_t():
    m = ring64()
    ab = schedules.NoiseSchedule("cosine").alpha_bars.double()
    xt = m.sample(6, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0, 10, 10, 400, 999, 999])
    batched = mixtures.optimal_eps(xt, t, ab, m)
    for i in range(6):
        a = float(ab[t[i]])
        row = mixtures.optimal_eps(xt[i:i + 1], int(t[i]), ab, m)
        torch.testing.assert_close(batched[i:i + 1], row)
        # Tweedie: eps* = -sqrt(1 - ab) * grad log p_t(x_t), the score by autograd.
        x = xt[i:i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(m.noised(a).log_prob(x).sum(), x)
        torch.testing.assert_close(row, -math.sqrt(1 - a) * grad)


def test_ring_layout():
    r = mixtures.ring(num_modes=6, radius=3.0, std=0.2)
    torch.testing.assert_close(r.means.norm(dim=1), torch.full((6,), 3.0))
    angles = torch.atan2(r.means[:, 1], r.means[:, 0]) % (2 * math.pi)
    torch.testing.assert_close(angles, torch.arange(6) * 2 * math.pi / 6, atol=1e-5, rtol=0)
    assert torch.all(r.stds == 0.2) and torch.allclose(r.weights, torch.full((6,), 1 / 6))
