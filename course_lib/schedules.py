"""Noise schedules and the forward (noising) process q.   [notebook 01]

Legend, code name -> symbol (full table in notebooks/NOTATION.md):
    betas       beta_t        variance added at step t
    alphas      alpha_t       1 - beta_t
    alpha_bars  alpha_bar_t   prod_{s<=t} alpha_s   (DDIM's paper calls this alpha_t)
    snr         SNR(t)        alpha_bar_t / (1 - alpha_bar_t)

Timesteps are 0-based as in diffusers: code t = 0 .. T-1 is the paper's t = 1 .. T, and t = -1
stands for clean data (alpha_bar = 1). Schedules are built in float64 and stored in float32.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from course_lib import noise as noise_lib
from course_lib.validation import (
    CourseInputError,
    check_alpha_bars,
    check_batch_timesteps,
    check_betas,
    check_choice,
    check_finite,
    check_float_tensor,
    check_number,
    check_positive_int,
    check_same_shape,
    check_schedule_table,
    check_timestep,
)

# Our names, and the names diffusers' schedulers use for the same schedules.
SCHEDULE_NAMES = ("linear", "scaled_linear", "cosine")
DIFFUSERS_NAMES = {"linear": "linear", "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2"}
_ALIASES = {"squaredcos_cap_v2": "cosine"}
# Defaults: DDPM's linear schedule, and Stable Diffusion's scaled-linear one.
DEFAULT_BETA_RANGE = {"linear": (1e-4, 0.02), "scaled_linear": (0.00085, 0.012)}


def _check_beta_range(num_steps, beta_start, beta_end) -> tuple[int, float, float]:
    """Return (num_steps, beta_start, beta_end) as int and floats after checking 0 < beta_start <= beta_end < 1."""
    num_steps = check_positive_int(num_steps, "num_steps")
    beta_start, beta_end = check_number(beta_start, "beta_start"), check_number(beta_end, "beta_end")
    if not 0 < beta_start <= beta_end < 1:
        raise CourseInputError(
            f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start} and beta_end={beta_end}."
        )
    return num_steps, beta_start, beta_end


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """Return beta_t evenly spaced from beta_start to beta_end.   [DDPM sec. 4, nb 01]"""
    num_steps, beta_start, beta_end = _check_beta_range(num_steps, beta_start, beta_end)
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64).float()


def scaled_linear_betas(
    num_steps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """Return beta_t = (linspace(sqrt(beta_start), sqrt(beta_end)))^2, Stable Diffusion's schedule.   [LDM, nb 01]"""
    num_steps, beta_start, beta_end = _check_beta_range(num_steps, beta_start, beta_end)
    return (torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2).float()


def cosine_alpha_bar(u: torch.Tensor, s: float = 0.008) -> torch.Tensor:
    """Return f(u) = cos((u + s)/(1 + s) * pi/2)^2 for u = t/T in [0, 1].   [improved DDPM eq. 17, nb 01]"""
    check_float_tensor(u, "u")
    if not bool(((u >= 0) & (u <= 1)).all()):  # NaN fails too
        raise CourseInputError("u = t / T must lie in [0, 1]: 0 is clean data, 1 the last step.")
    s = check_number(s, "s", low=0, hint="improved DDPM's offset, 0.008")
    return torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2


def cosine_betas(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Return beta_t = min(1 - f((t+1)/T) / f(t/T), max_beta) for the cosine alpha_bar f.   [improved DDPM, nb 01]"""
    num_steps = check_positive_int(num_steps, "num_steps")
    max_beta = check_number(max_beta, "max_beta", low=0, high=1, low_open=True, hint="improved DDPM clips at 0.999")
    u = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = cosine_alpha_bar(u, s)
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta).float()


def karras_sigma(alpha_bar) -> torch.Tensor:
    """Return sigma = sqrt((1 - ab) / ab): the noise level of x_bar = x_t / sqrt(ab) = x0 + sigma eps.   [Karras eq. 4, nb 03b]

    In these variables the probability-flow ODE of the forward process is dx_bar / dsigma = eps*(x_t, t)
    (notebook 03b derives it), and x_t = x_bar / sqrt(sigma^2 + 1). Computed in alpha_bar's dtype (float32
    for the course's tables), as diffusers' EulerDiscreteScheduler computes its sigmas. alpha_bar: a number
    or a tensor, every value in (0, 1].
    """
    if not isinstance(alpha_bar, torch.Tensor):
        alpha_bar = torch.tensor(check_number(alpha_bar, "alpha_bar", low=0, high=1, low_open=True))
    check_float_tensor(alpha_bar, "alpha_bar")
    if not bool(((alpha_bar > 0) & (alpha_bar <= 1)).all()):
        raise CourseInputError("alpha_bar must lie in (0, 1]: at 0 (pure noise) sigma is infinite. "
                               "Take it from a schedule's table, e.g. NoiseSchedule('linear').alpha_bars.")
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


def sigmas_at(alpha_bars: torch.Tensor, timesteps) -> torch.Tensor:
    """Return Karras' sigma at each timestep; at a fractional one, interpolated linearly between the table's entries.   [nb 03b]

    diffusers' EulerDiscreteScheduler and HeunDiscreteScheduler visit fractional timesteps (832.5 with
    "linspace" spacing) at sigma = np.interp(t, 0..T-1, sigmas); the ODE solvers and the exact eps* of a
    mixture (mixtures.optimal_eps) take the noise level of such a t from here. At an integer t it is the
    table's own sigma. Shapes: alpha_bars (T,), timesteps a sequence of numbers in [0, T-1] -> (len,) in
    the table's dtype.
    """
    check_alpha_bars(alpha_bars, "alpha_bars")
    t = np.asarray([float(v) for v in timesteps], dtype=np.float64)
    if not len(t) or not np.isfinite(t).all() or t.min() < 0 or t.max() > len(alpha_bars) - 1:
        raise CourseInputError(f"timesteps must be finite numbers in 0..{len(alpha_bars) - 1}, got {timesteps!r}.")
    table = karras_sigma(alpha_bars).detach().cpu()
    return torch.from_numpy(np.interp(t, np.arange(len(table)), table.double().numpy())).to(alpha_bars.dtype)


def alpha_bars_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """Return alpha_bar_t = prod_{s<=t} (1 - beta_s).   [DDPM eq. 4, nb 01]"""
    check_betas(betas, "betas")
    return torch.cumprod(1 - betas.double(), dim=0).float()


def snr(alpha_bars: torch.Tensor) -> torch.Tensor:
    """Return the signal-to-noise ratio alpha_bar_t / (1 - alpha_bar_t).   [VDM eq. 3, nb 01]"""
    check_float_tensor(alpha_bars, "alpha_bars")
    if not bool(((alpha_bars >= 0) & (alpha_bars <= 1)).all()):  # NaN fails too
        raise CourseInputError("alpha_bars must lie in [0, 1] (1 is clean data, 0 pure noise); "
                               "pass NoiseSchedule(...).alpha_bars, not its betas or SNRs.")
    return alpha_bars / (1 - alpha_bars)


@dataclass(frozen=True)
class NoiseSchedule:
    """A named beta schedule with its alphas, alpha_bars and SNR; the fields are its saved config.   [nb 01]

    >>> sched = NoiseSchedule("cosine", num_steps=1000)
    >>> sched.alpha_bars.shape
    torch.Size([1000])
    """

    name: str = "linear"
    num_steps: int = 1000
    beta_start: float | None = None
    beta_end: float | None = None
    betas: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        name = _ALIASES.get(self.name, self.name)
        check_choice(name, SCHEDULE_NAMES, "schedule name")
        object.__setattr__(self, "num_steps", check_positive_int(self.num_steps, "num_steps"))
        object.__setattr__(self, "name", name)
        if name == "cosine":
            if self.beta_start is not None or self.beta_end is not None:
                raise CourseInputError("the cosine schedule has no beta_start/beta_end; leave them as None.")
            betas = cosine_betas(self.num_steps)
        else:
            start, end = DEFAULT_BETA_RANGE[name]
            _, start, end = _check_beta_range(self.num_steps, start if self.beta_start is None else self.beta_start,
                                              end if self.beta_end is None else self.beta_end)
            object.__setattr__(self, "beta_start", start)
            object.__setattr__(self, "beta_end", end)
            make = linear_betas if name == "linear" else scaled_linear_betas
            betas = make(self.num_steps, self.beta_start, self.beta_end)
        object.__setattr__(self, "betas", betas)

    @property
    def alphas(self) -> torch.Tensor:
        return 1 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        return alpha_bars_from_betas(self.betas)

    @property
    def snr(self) -> torch.Tensor:
        return snr(self.alpha_bars)

    @property
    def log_snr(self) -> torch.Tensor:
        return torch.log(self.snr)

    def to_config(self) -> dict:
        """Return the constructor arguments, JSON-ready."""
        return {k: v for k, v in asdict(self).items() if k != "betas"}

    def diffusers_config(self) -> dict:
        """Return the keyword arguments that give a diffusers scheduler the same betas."""
        config = {"num_train_timesteps": self.num_steps, "beta_schedule": DIFFUSERS_NAMES[self.name]}
        if self.name != "cosine":
            config.update(beta_start=self.beta_start, beta_end=self.beta_end)
        return config


def gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return values[t] shaped to broadcast against `like`: (B,) or () -> (B, 1, 1, ...).

    A t of -1 means clean data and gives 1.0 (used for alpha_bar at the last sampling step).
    t may be an int or an integer tensor of shape () or (B,).
    """
    check_schedule_table(values, "values")
    check_float_tensor(like, "like")
    t = check_timestep(t, len(values), allow_data=True)
    check_batch_timesteps(t, like)
    t = t.to(values.device)
    out = torch.where(t >= 0, values[t.clamp(min=0)], torch.ones((), dtype=values.dtype, device=values.device))
    out = out.to(device=like.device, dtype=like.dtype)
    return out.reshape(out.shape + (1,) * (like.ndim - out.ndim)) if out.ndim else out


def _check_forward_inputs(x: torch.Tensor, t, schedule_values: torch.Tensor, noise, x_name: str,
                          table_name: str = "alpha_bars"):
    check_float_tensor(x, x_name)
    check_finite(x, x_name)
    (check_alpha_bars if table_name == "alpha_bars" else check_betas)(schedule_values, table_name)
    t = check_timestep(t, len(schedule_values))
    check_batch_timesteps(t, x)
    if noise is not None:
        check_float_tensor(noise, "noise")
        check_same_shape(**{x_name: x, "noise": noise})
        check_finite(noise, "noise")
    return t


def q_step(x_prev: torch.Tensor, t, betas: torch.Tensor, noise=None, generator=None) -> torch.Tensor:
    """Take one forward step: x_t = sqrt(1 - beta_t) * x_{t-1} + sqrt(beta_t) * eps.   [DDPM eq. 2, nb 01]

    Shapes: x_prev (B, ...); t an int or (B,); returns (B, ...).
    """
    t = _check_forward_inputs(x_prev, t, betas, noise, "x_prev", "betas")
    eps = noise if noise is not None else noise_lib.randn_like(x_prev, noise_lib.as_generator(generator))
    beta_t = gather(betas, t, x_prev)
    return torch.sqrt(1 - beta_t) * x_prev + torch.sqrt(beta_t) * eps


def q_mean_variance(x0: torch.Tensor, t, alpha_bars: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the mean sqrt(ab_t)*x0 and variance (1 - ab_t) of q(x_t | x0).   [DDPM eq. 4, nb 01]"""
    t = _check_forward_inputs(x0, t, alpha_bars, None, "x0")
    ab_t = gather(alpha_bars, t, x0)
    return torch.sqrt(ab_t) * x0, (1 - ab_t).expand_as(x0)


def q_sample(x0: torch.Tensor, t, alpha_bars: torch.Tensor, noise=None, generator=None) -> torch.Tensor:
    """Noise x0 to step t in one jump: x_t = sqrt(ab_t) * x0 + sqrt(1 - ab_t) * eps.   [DDPM eq. 4, nb 01]

    Shapes: x0 (B, ...); t an int or (B,); noise like x0; returns (B, ...).
    """
    t = _check_forward_inputs(x0, t, alpha_bars, noise, "x0")
    eps = noise if noise is not None else noise_lib.randn_like(x0, noise_lib.as_generator(generator))
    ab_t = gather(alpha_bars, t, x0)
    return torch.sqrt(ab_t) * x0 + torch.sqrt(1 - ab_t) * eps
