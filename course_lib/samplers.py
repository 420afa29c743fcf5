"""Sampling: the inference timesteps, one DDPM or DDIM step, and one loop that runs any step.   [notebook 02]

Legend, code name -> symbol:
    model_output   what the network predicts: eps_hat, x0_hat or v_hat (prediction_type)
    xt, x_prev     x_t and x_{t_prev}
    t, t_prev      the current step and the one the step lands on; t_prev = -1 is clean data
    eta            DDIM's eta: 0 deterministic, 1 the DDPM-like ancestral variance
    noise          the z ~ N(0, I) a stochastic step adds; drawn from `generator` when not given

A step function has the signature step(model_output, xt, t, t_prev, ..., generator=None) -> Step,
and `sample` runs any of them; the previous step is looked up from the timestep array, never
computed by stride arithmetic (which is wrong for "linspace" and for trailing spacings that do not
divide the number of training steps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from course_lib import posterior
from course_lib.validation import (
    CourseInputError,
    check_choice,
    check_float_tensor,
    check_positive_int,
    check_same_shape,
)

SPACINGS = ("leading", "trailing", "linspace")
VARIANCE_TYPES = ("fixed_small", "fixed_large")  # sigma_t^2 = beta_tilde_t or beta_t


@dataclass
class Step:
    """What one reverse step returns: the new sample and the model's estimate of the clean data."""

    x_prev: torch.Tensor
    x0_hat: torch.Tensor


def inference_timesteps(num_train_steps: int, num_steps: int, spacing: str = "leading",
                        offset: int = 0) -> torch.Tensor:
    """Return the num_steps timesteps a sampler visits, in descending order.   [DDIM sec. 4.2, nb 02]

    leading:  0, k, 2k, ... with k = num_train_steps // num_steps (plus `offset`); never reaches T-1.
    trailing: round(T, T - T/N, ...) - 1; always starts at T-1.
    linspace: round(linspace(0, T-1, N)); starts at T-1, strides may differ by one.
    These match diffusers' "timestep_spacing" options and Table 2 of "Common Diffusion Noise
    Schedules and Sample Steps are Flawed" (Lin et al. 2024).
    """
    check_choice(spacing, SPACINGS, "spacing")
    num_train_steps = check_positive_int(num_train_steps, "num_train_steps")
    num_steps = check_positive_int(num_steps, "num_steps")
    if isinstance(offset, bool) or not isinstance(offset, (int, np.integer)):
        raise CourseInputError(f"offset must be an int (diffusers' steps_offset, usually 0 or 1), got {offset!r}.")
    if not 1 <= num_steps <= num_train_steps:
        raise CourseInputError(
            f"num_steps must be between 1 and num_train_steps={num_train_steps}, got {num_steps}."
        )
    if spacing == "leading":
        timesteps = np.arange(num_steps)[::-1] * (num_train_steps // num_steps) + offset
    elif spacing == "trailing":
        # np.arange overshoots by one element for some N (61, 103, 201, ... of 1000), whose last
        # timestep would be -1; diffusers keeps that element, we keep exactly num_steps.
        timesteps = np.round(np.arange(num_train_steps, 0, -num_train_steps / num_steps))[:num_steps] - 1
    else:
        timesteps = np.round(np.linspace(0, num_train_steps - 1, num_steps))[::-1]
    timesteps = torch.from_numpy(timesteps.astype(np.int64).copy())
    if timesteps.max() >= num_train_steps or timesteps.min() < 0:
        raise CourseInputError(
            f"offset={offset} pushes the timesteps out of 0..{num_train_steps - 1}; "
            f"use an offset between 0 and {num_train_steps - 1 - int(timesteps.max()) + offset}."
        )
    return timesteps


def previous_timestep(timesteps: torch.Tensor, t: int) -> int:
    """Return the timestep after t in `timesteps` (looked up, not computed), or -1 after the last."""
    matches = (torch.as_tensor(timesteps) == t).nonzero()
    if len(matches) == 0:
        raise CourseInputError(f"t={t} is not one of the timesteps {timesteps.tolist()}.")
    i = matches[0, 0].item()
    return int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1


def _noise_like(x: torch.Tensor, noise, generator) -> torch.Tensor:
    if noise is not None:
        check_float_tensor(noise, "noise")
        check_same_shape(noise=noise, xt=x)
        return noise
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _start(model_output, xt, t, t_prev, alpha_bars, prediction_type, clip_sample, clip_sample_range,
           final_alpha_bar=1.0):
    """Shared first part of every step: alpha_bars, then x0_hat and eps_hat (eq. 15), clipped if asked."""
    check_float_tensor(model_output, "model_output")
    check_float_tensor(xt, "xt")
    ab_t, ab_prev = posterior._alpha_bars_at(t, t_prev, alpha_bars, xt, final_alpha_bar)
    x0_hat, eps_hat = posterior.predict_x0_eps(model_output, xt, ab_t, prediction_type)
    if clip_sample:
        x0_hat = x0_hat.clamp(-clip_sample_range, clip_sample_range)
    return ab_t, ab_prev, x0_hat, eps_hat


def ddpm_step(model_output: torch.Tensor, xt: torch.Tensor, t: int, t_prev: int, alpha_bars: torch.Tensor, *,
              prediction_type: str = "epsilon", variance_type: str = "fixed_small", clip_sample: bool = False,
              clip_sample_range: float = 1.0, noise=None, generator=None) -> Step:
    """Take one ancestral step: x_prev = mu(x_t, x0_hat) + sigma_t * z, with no noise when t_prev = -1.   [DDPM Alg. 2, nb 02]

    mu is the posterior mean of eq. 7 with x0_hat in place of x0; sigma_t^2 is beta_tilde_t
    ("fixed_small", the posterior variance) or beta_t ("fixed_large"). For a jump from t to t_prev,
    beta_t = 1 - ab_t / ab_prev.
    """
    check_choice(variance_type, VARIANCE_TYPES, "variance_type")
    # 1. alpha_bars, then x0_hat from the model output (eq. 15), clipped if asked
    ab_t, ab_prev, x0_hat, _ = _start(model_output, xt, t, t_prev, alpha_bars, prediction_type,
                                      clip_sample, clip_sample_range)
    # 2. posterior mean mu_t(x_t, x0_hat) and variance (eq. 7)
    coef_x0, coef_xt, beta_tilde = posterior.posterior_coefficients(ab_t, ab_prev)
    mean = coef_x0 * x0_hat + coef_xt * xt
    # 3. add sigma_t * z, except on the last step to clean data (t_prev = -1; per sample if t_prev is (B,))
    lands_on_data = torch.as_tensor(t_prev) < 0
    if lands_on_data.all():
        return Step(mean, x0_hat)
    variance = beta_tilde if variance_type == "fixed_small" else 1 - ab_t / ab_prev
    if lands_on_data.any():
        keep = ~lands_on_data.reshape(lands_on_data.shape + (1,) * (xt.ndim - 1)).to(xt.device)
        variance = variance * keep
    return Step(mean + torch.sqrt(variance) * _noise_like(xt, noise, generator), x0_hat)


def ddim_sigma(ab_t: torch.Tensor, ab_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """Return DDIM's noise scale sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev).   [DDIM eq. 16, nb 02]"""
    return eta * torch.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))


def ddim_step(model_output: torch.Tensor, xt: torch.Tensor, t: int, t_prev: int, alpha_bars: torch.Tensor, *,
              eta: float = 0.0, prediction_type: str = "epsilon", clip_sample: bool = False,
              clip_sample_range: float = 1.0, use_clipped_model_output: bool = False,
              final_alpha_bar: float = 1.0, noise=None, generator=None) -> Step:
    """Take one DDIM step: x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps_hat + sigma z.   [DDIM eq. 12, nb 02]

    sigma = eta * sqrt((1 - ab_prev) / (1 - ab_t)) * sqrt(1 - ab_t / ab_prev)   [DDIM eq. 16]
    eta = 0 is deterministic; eta = 1 gives DDPM's posterior variance. `final_alpha_bar` is the
    alpha_bar that t_prev = -1 stands for (1.0, or alpha_bars[0] as diffusers' set_alpha_to_one=False).
    """
    if eta < 0:
        raise CourseInputError(f"eta must be >= 0 (0 is deterministic DDIM, 1 is DDPM-like), got {eta}.")
    # 1. alpha_bars, then x0_hat and eps_hat from the model output (eq. 12's "predicted x0")
    ab_t, ab_prev, x0_hat, eps_hat = _start(model_output, xt, t, t_prev, alpha_bars, prediction_type,
                                            clip_sample, clip_sample_range, final_alpha_bar)
    if use_clipped_model_output:
        eps_hat = posterior.eps_from_x0(xt, x0_hat, ab_t)
    # 2. sigma_t(eta), eq. 16
    sigma = ddim_sigma(ab_t, ab_prev, eta)
    # 3. "direction pointing to x_t" and the new sample, eq. 12
    x_prev = torch.sqrt(ab_prev) * x0_hat + torch.sqrt(1 - ab_prev - sigma**2) * eps_hat
    if eta > 0:
        x_prev = x_prev + sigma * _noise_like(xt, noise, generator)
    return Step(x_prev, x0_hat)


@dataclass
class SampleOutput:
    """The final sample, and (when kept) every x_t visited and every x0_hat, first to last."""

    x0: torch.Tensor
    trajectory: list[torch.Tensor] = field(default_factory=list)
    x0_hats: list[torch.Tensor] = field(default_factory=list)


@torch.no_grad()
def sample(model: Callable[[torch.Tensor, int], torch.Tensor], x_T: torch.Tensor, timesteps: Sequence[int],
           step: Callable[..., Step], *, generator=None, keep_trajectory: bool = False,
           callback: Callable[[int, int, Step], None] | None = None, progress: bool = False) -> SampleOutput:
    """Run the reverse process from x_T through `timesteps` with any step function.   [DDPM Alg. 2 / DDIM, nb 02]

    model(xt, t) returns the model output at step t; step is e.g.
    functools.partial(samplers.ddim_step, alpha_bars=alpha_bars, eta=0.0). The step after t is
    looked up in `timesteps`; after the last one it is -1 (clean data).
    Shapes: x_T (B, ...); returns SampleOutput with x0 (B, ...).
    """
    check_float_tensor(x_T, "x_T")
    timesteps = [int(t) for t in timesteps]
    if any(a <= b for a, b in zip(timesteps, timesteps[1:])):
        raise CourseInputError("timesteps must be strictly decreasing; use samplers.inference_timesteps(...).")
    out = SampleOutput(x0=x_T)
    x = x_T
    if keep_trajectory:
        out.trajectory.append(x)
    steps = enumerate(timesteps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, total=len(timesteps), desc="sampling")
    for i, t in steps:
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        result = step(model(x, t), x, t, t_prev, generator=generator)
        x = result.x_prev
        if keep_trajectory:
            out.trajectory.append(x)
            out.x0_hats.append(result.x0_hat)
        if callback is not None:
            callback(i, t, result)
    out.x0 = x
    return out
