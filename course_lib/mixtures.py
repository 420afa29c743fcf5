"""Gaussian mixtures: data whose noised score, and so the ideal noise prediction eps*, is known exactly.   [notebooks 01-02]

If x0 ~ sum_k w_k N(mu_k, s_k^2 I), then x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps is again a mixture,
    x_t ~ sum_k w_k N(sqrt(ab_t) mu_k, (ab_t s_k^2 + 1 - ab_t) I),
so its score grad log p_t(x_t) is exact, and so is the best possible noise prediction
    eps*(x_t, t) = E[eps | x_t] = -sqrt(1 - ab_t) * grad log p_t(x_t)      (Tweedie's formula).
Sampling with eps* shows what the reverse process does before any network is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from course_lib import noise as noise_lib
from course_lib import schedules
from course_lib.validation import (
    CourseInputError,
    check_alpha_bars,
    check_batch_timesteps,
    check_finite,
    check_float_tensor,
    check_number,
    check_positive_int,
    check_timestep,
)


@dataclass(frozen=True)
class GaussianMixture:
    """An isotropic Gaussian mixture: means (K, D), stds (K,), weights (K,) summing to 1."""

    means: torch.Tensor
    stds: torch.Tensor
    weights: torch.Tensor

    def __post_init__(self):
        for name in ("means", "stds", "weights"):
            check_float_tensor(getattr(self, name), name)
            check_finite(getattr(self, name), name)
        k = self.means.shape[0]
        if self.means.ndim != 2 or self.stds.shape != (k,) or self.weights.shape != (k,):
            raise CourseInputError(
                f"need means (K, D), stds (K,), weights (K,); got {tuple(self.means.shape)}, "
                f"{tuple(self.stds.shape)}, {tuple(self.weights.shape)}."
            )
        if (self.stds <= 0).any() or (self.weights < 0).any() or abs(self.weights.sum().item() - 1) > 1e-5:
            raise CourseInputError(
                f"stds must be > 0 and weights >= 0 summing to 1, got stds {self.stds.tolist()} and weights "
                f"summing to {self.weights.sum().item():.6g}. Normalise with weights / weights.sum()."
            )

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, generator=None) -> torch.Tensor:
        """Draw n points, shape (n, D): a component k ~ weights, then mu_k + s_k eps (sample_with_labels keeps k)."""
        return self.sample_with_labels(n, generator)[0]

    def sample_with_labels(self, n: int, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw n points (n, D) and the component each came from (n,): the same draws as sample."""
        n = check_positive_int(n, "n")
        generator = noise_lib.as_generator(generator)
        labels = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = noise_lib.randn((n, self.dim), generator, device=self.means.device, dtype=self.means.dtype)
        return self.means[labels] + self.stds[labels, None] * noise, labels

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Return log p(x) for x (n, D), shape (n,)."""
        self._check_points(x)
        return torch.logsumexp(self._component_log_probs(x), dim=1)

    def _check_points(self, x: torch.Tensor) -> None:
        check_float_tensor(x, "x")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise CourseInputError(
                f"x must have shape (n, {self.dim}) for this {self.dim}-D mixture, got {tuple(x.shape)}. "
                f"Reshape it, e.g. x.reshape(-1, {self.dim})."
            )

    def _component_log_probs(self, x: torch.Tensor) -> torch.Tensor:
        # log w_k + log N(x; mu_k, s_k^2 I), shape (n, K)
        var = self.stds**2
        sq = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        return torch.log(self.weights) - 0.5 * sq / var - 0.5 * self.dim * torch.log(2 * math.pi * var)

    def responsibilities(self, x: torch.Tensor) -> torch.Tensor:
        """Return p(component k | x), shape (n, K)."""
        self._check_points(x)
        return torch.softmax(self._component_log_probs(x), dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Return grad_x log p(x) = sum_k r_k(x) (mu_k - x) / s_k^2, shape (n, D)."""
        self._check_points(x)
        r = self.responsibilities(x)
        return (r[:, :, None] * (self.means[None] - x[:, None, :]) / (self.stds**2)[None, :, None]).sum(1)

    def noised(self, alpha_bar: float) -> GaussianMixture:
        """Return the law of x_t = sqrt(ab) x0 + sqrt(1 - ab) eps: a mixture again.   [nb 02]"""
        alpha_bar = check_number(alpha_bar, "alpha_bar", finite=False)
        if not 0 < alpha_bar <= 1:
            raise CourseInputError(
                f"alpha_bar must be in (0, 1], got {alpha_bar}. Pass one value of the table, e.g. "
                f"float(alpha_bars[t])."
            )
        return GaussianMixture(
            means=math.sqrt(alpha_bar) * self.means,
            stds=torch.sqrt(alpha_bar * self.stds**2 + (1 - alpha_bar)),
            weights=self.weights,
        )


def optimal_eps(xt: torch.Tensor, t, alpha_bars: torch.Tensor, mixture: GaussianMixture) -> torch.Tensor:
    """Return the exact eps*(x_t, t) = -sqrt(1 - ab_t) * grad log p_t(x_t) for mixture data.   [Tweedie, nb 02]

    Shapes: xt (n, D); t an int or (n,); returns (n, D). The ideal denoiser that training approaches.
    A fractional t (Euler's and Heun's 'linspace' timesteps, 832.5) is at the noise level the samplers give it:
    sigma interpolated between the table's entries (schedules.sigmas_at), ab = 1 / (1 + sigma^2).
    """
    check_float_tensor(xt, "xt")
    _check_mixture(mixture)
    check_alpha_bars(alpha_bars, "alpha_bars")
    fractional = isinstance(t, (float, np.floating)) or (isinstance(t, torch.Tensor) and t.is_floating_point())
    t = _fractional_timestep(t, len(alpha_bars)) if fractional else check_timestep(t, len(alpha_bars))
    check_batch_timesteps(t, xt)
    if xt.ndim != 2 or xt.shape[1] != mixture.dim:
        raise CourseInputError(f"xt must have shape (n, {mixture.dim}), got {tuple(xt.shape)}.")
    if t.ndim == 0:
        return optimal_eps_at(xt, _alpha_bar_at(alpha_bars, t), mixture)
    out = torch.empty_like(xt)
    for value in t.unique():
        rows = t == value
        out[rows] = optimal_eps_at(xt[rows], _alpha_bar_at(alpha_bars, value), mixture)
    return out


def _fractional_timestep(t, num_steps: int) -> torch.Tensor:
    """Return a float timestep (a number, or a 0-dim or (n,) float tensor) as a float64 tensor after checking its range."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if not bool(((t >= 0) & (t <= num_steps - 1)).all()):  # NaN fails too
        raise CourseInputError(f"t must lie in 0..{num_steps - 1} (timesteps are 0-based; fractional ones are "
                               f"between two entries of the table), got {t.tolist()}.")
    return t


def _alpha_bar_at(alpha_bars: torch.Tensor, t: torch.Tensor) -> float:
    """alpha_bar at one timestep: the table's at an integer t, 1 / (1 + sigma^2) with sigma interpolated between."""
    if float(t).is_integer():
        return float(alpha_bars[int(t)])
    return float(1 / (1 + schedules.sigmas_at(alpha_bars, [float(t)])[0].double() ** 2))


def optimal_eps_at(xt: torch.Tensor, alpha_bar: float, mixture: GaussianMixture) -> torch.Tensor:
    """Return eps*(x_t) = -sqrt(1 - ab) grad log p(x_t) at any noise level ab in (0, 1], not only a table's.   [Tweedie, nb 02, nb 03b]"""
    check_float_tensor(xt, "xt")
    _check_mixture(mixture)
    noised = mixture.noised(alpha_bar)  # checks alpha_bar in (0, 1]
    return -math.sqrt(1 - float(alpha_bar)) * noised.score(xt)


def probability_flow_solution(mixture: GaussianMixture, x_T: torch.Tensor, alpha_bar_T: float, *,
                              num_steps: int = 2000, sigma_min: float = 1e-4) -> torch.Tensor:
    """Return x_0 of the probability-flow ODE from x_T at alpha_bar_T, solved far more finely than any sampler.   [nb 03b]

    In x_bar = x_t / sqrt(ab) and sigma = sqrt((1 - ab) / ab) the ODE is dx_bar/dsigma = eps*(x_t) with
    x_t = x_bar / sqrt(sigma^2 + 1) (samplers.karras_sigma; notebook 03b derives it). Classical RK4 in
    float64 with the exact eps* of the mixture, num_steps steps evenly spaced in log sigma from sigma_T
    down to sigma_min, then x_0 = x_bar - sigma_min eps* (an error of order sigma_min^2). The reference
    the samplers' errors are measured against; for one Gaussian N(mu, s^2 I) it equals the closed form
    mu + (x_bar_T - mu) s / sqrt(s^2 + sigma_T^2). Shapes: x_T (n, D) -> (n, D) float64.
    """
    _check_mixture(mixture)
    check_float_tensor(x_T, "x_T")
    check_finite(x_T, "x_T")
    if x_T.ndim != 2 or x_T.shape[1] != mixture.dim:
        raise CourseInputError(f"x_T must have shape (n, {mixture.dim}) for this mixture, got {tuple(x_T.shape)}.")
    num_steps = check_positive_int(num_steps, "num_steps")
    alpha_bar_T = check_number(alpha_bar_T, "alpha_bar_T", finite=False)
    if not 0 < alpha_bar_T < 1:
        raise CourseInputError(f"alpha_bar_T must be in (0, 1) (a noisy start), got {alpha_bar_T}.")
    sigma_T = math.sqrt((1 - alpha_bar_T) / alpha_bar_T)
    sigma_min = check_number(sigma_min, "sigma_min", low=0, high=sigma_T, low_open=True, high_open=True,
                             hint="the noise level the ODE is solved down to, below sigma_T")
    mix = GaussianMixture(mixture.means.double(), mixture.stds.double(), mixture.weights.double())

    def slope(x_bar, sigma):
        return optimal_eps_at(x_bar / math.sqrt(sigma**2 + 1), 1 / (1 + sigma**2), mix)

    sigmas = torch.logspace(math.log10(sigma_T), math.log10(sigma_min), num_steps + 1, dtype=torch.float64).tolist()
    x = x_T.double() * math.sqrt(sigma_T**2 + 1)
    for s, s_next in zip(sigmas, sigmas[1:]):
        h = s_next - s
        k1 = slope(x, s)
        k2 = slope(x + h / 2 * k1, s + h / 2)
        k3 = slope(x + h / 2 * k2, s + h / 2)
        k4 = slope(x + h * k3, s_next)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x - sigma_min * slope(x, sigma_min)


def _check_mixture(mixture) -> None:
    if not isinstance(mixture, GaussianMixture):
        raise CourseInputError(f"mixture must be a mixtures.GaussianMixture (e.g. mixtures.ring()), "
                               f"got {type(mixture).__name__}.")


def ring(num_modes: int = 8, radius: float = 2.0, std: float = 0.1) -> GaussianMixture:
    """Return num_modes equal-weight Gaussians evenly spaced on a circle of the given radius."""
    num_modes = check_positive_int(num_modes, "num_modes")
    radius = check_number(radius, "radius", low=0)
    std = check_number(std, "std", low=0, low_open=True)
    angles = torch.arange(num_modes) * 2 * math.pi / num_modes
    means = radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    return GaussianMixture(means, torch.full((num_modes,), float(std)), torch.full((num_modes,), 1 / num_modes))
