"""DDPM's ancestral step and DDIM's step, as functions a notebook calls and as Sampler objects.   [notebook 02]

The public step functions check what they are given; the Sampler objects check once in begin, and their
steps go straight to the same update (_ddpm_update, _ddim_update) with alpha_bars looked up in a table
already in x's dtype.
"""

from __future__ import annotations

import torch

from course_lib import noise as noise_lib
from course_lib import posterior
from course_lib.samplers.base import Sampler, Step, check_clipping
from course_lib.validation import (CourseInputError, check_bool, check_choice, check_float_tensor, check_number,
                                   check_same_shape)

VARIANCE_TYPES = ("fixed_small", "fixed_large")  # sigma_t^2 = beta_tilde_t or beta_t
ETA_HINT = "0 is deterministic DDIM, 1 is DDPM-like"


def _check_step_inputs(model_output, xt, prediction_type, clip_sample, clip_sample_range, generator):
    """The checks ddpm_step and ddim_step share; returns (clip_sample, clip_sample_range, generator)."""
    check_choice(prediction_type, posterior.PREDICTION_TYPES, "prediction_type")
    check_float_tensor(model_output, "model_output")
    check_float_tensor(xt, "xt")
    check_same_shape(model_output=model_output, xt=xt)
    return (*check_clipping(clip_sample, clip_sample_range), noise_lib.as_generator(generator))


def _check_eta(eta) -> float:
    eta = check_number(eta, "eta", hint=ETA_HINT)
    if eta < 0:
        raise CourseInputError(f"eta must be >= 0 ({ETA_HINT}), got {eta}.")
    return eta


def _lands_on_data(t, t_prev) -> torch.Tensor:
    """Return t_prev < 0 (the step lands on clean data) per sample; t_prev None means t - 1."""
    return (torch.as_tensor(t) - 1 if t_prev is None else torch.as_tensor(t_prev)) < 0


def _x0_hat(model_output, xt, ab_t, prediction_type, clip_sample, clip_sample_range):
    """x0_hat and eps_hat from the model output (DDPM eq. 15), x0_hat clipped if asked."""
    x0_hat, eps_hat = posterior.predict_x0_eps(model_output, xt, ab_t, prediction_type)
    if clip_sample:
        x0_hat = x0_hat.clamp(-clip_sample_range, clip_sample_range)
    return x0_hat, eps_hat


# ----------------------------------------------------------------------------------------------
# DDPM
# ----------------------------------------------------------------------------------------------

def ddpm_step(model_output: torch.Tensor, xt: torch.Tensor, t: int, t_prev: int, alpha_bars: torch.Tensor, *,
              prediction_type: str = "epsilon", variance_type: str = "fixed_small", clip_sample: bool = False,
              clip_sample_range: float = 1.0, noise=None, generator=None) -> Step:
    """Take one ancestral step: x_prev = mu(x_t, x0_hat) + sigma_t * z, with no noise when t_prev = -1.   [DDPM Alg. 2, nb 02]

    mu is the posterior mean of eq. 7 with x0_hat in place of x0; sigma_t^2 is beta_tilde_t
    ("fixed_small", the posterior variance) or beta_t ("fixed_large"). For a jump from t to t_prev,
    beta_t = 1 - ab_t / ab_prev. t, t_prev: ints, or one per sample (B,).
    """
    check_choice(variance_type, VARIANCE_TYPES, "variance_type")
    clip_sample, clip_sample_range, generator = _check_step_inputs(model_output, xt, prediction_type, clip_sample,
                                                                   clip_sample_range, generator)
    ab_t, ab_prev = posterior.alpha_bars_at(t, t_prev, alpha_bars, xt)
    return _ddpm_update(model_output, xt, ab_t, ab_prev, _lands_on_data(t, t_prev), prediction_type, variance_type,
                        clip_sample, clip_sample_range, noise, generator)


def _ddpm_update(model_output, xt, ab_t, ab_prev, lands_on_data, prediction_type, variance_type, clip_sample,
                 clip_sample_range, noise, generator) -> Step:
    # 1. x0_hat from the model output (eq. 15), clipped if asked
    x0_hat, _ = _x0_hat(model_output, xt, ab_t, prediction_type, clip_sample, clip_sample_range)
    # 2. posterior mean mu_t(x_t, x0_hat) and variance (eq. 7)
    coef_x0, coef_xt, beta_tilde = posterior.posterior_coefficients(ab_t, ab_prev)
    mean = coef_x0 * x0_hat + coef_xt * xt
    # 3. add sigma_t * z, except on the last step to clean data (t_prev = -1; per sample if t_prev is (B,))
    if lands_on_data.all():
        return Step(mean, x0_hat)
    variance = beta_tilde if variance_type == "fixed_small" else 1 - ab_t / ab_prev
    if lands_on_data.any():
        keep = ~lands_on_data.reshape(lands_on_data.shape + (1,) * (xt.ndim - 1)).to(xt.device)
        variance = variance * keep
    return Step(mean + torch.sqrt(variance) * noise_lib.given_or_drawn(noise, xt, generator), x0_hat)


class DDPM(Sampler):
    """DDPM's ancestral sampler (ddpm_step), variance 'fixed_small' or 'fixed_large'.   [DDPM Alg. 2, nb 02]"""

    name = "ddpm"
    stochastic = True

    def __init__(self, *, prediction_type: str = "epsilon", variance_type: str = "fixed_small",
                 clip_sample: bool = False, clip_sample_range: float = 1.0, **unknown):
        super().__init__(prediction_type=prediction_type, **unknown)
        self.variance_type = check_choice(variance_type, VARIANCE_TYPES, "variance_type")
        self.clip_sample, self.clip_sample_range = check_clipping(clip_sample, clip_sample_range)

    def step(self, model, x, i, *, generator=None):
        t, t_prev = self._levels(i)
        table = self._table(x)
        return _ddpm_update(model(x, t), x, table[t], table[t_prev], torch.tensor(t_prev < 0), self.prediction_type,
                            self.variance_type, self.clip_sample, self.clip_sample_range, None, generator)


# ----------------------------------------------------------------------------------------------
# DDIM
# ----------------------------------------------------------------------------------------------

def ddim_sigma(ab_t, ab_prev, eta: float) -> torch.Tensor:
    """Return DDIM's noise scale sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev).   [DDIM eq. 16, nb 02]

    ab_t, ab_prev: alpha_bars (numbers or tensors) with 0 < ab_t < 1 and ab_t <= ab_prev <= 1.
    """
    eta = _check_eta(eta)
    ab_t, ab_prev = posterior.check_levels(ab_t, ab_prev)
    return _ddim_sigma(ab_t, ab_prev, eta)


def _ddim_sigma(ab_t, ab_prev, eta: float):
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
    eta = _check_eta(eta)
    clip_sample, clip_sample_range, generator = _check_step_inputs(model_output, xt, prediction_type, clip_sample,
                                                                   clip_sample_range, generator)
    use_clipped_model_output = check_bool(use_clipped_model_output, "use_clipped_model_output")
    ab_t, ab_prev = posterior.alpha_bars_at(t, t_prev, alpha_bars, xt, final_alpha_bar)
    return _ddim_update(model_output, xt, ab_t, ab_prev, eta, prediction_type, clip_sample, clip_sample_range,
                        use_clipped_model_output, noise, generator)


def _ddim_update(model_output, xt, ab_t, ab_prev, eta, prediction_type, clip_sample, clip_sample_range,
                 use_clipped_model_output, noise, generator) -> Step:
    # 1. x0_hat and eps_hat from the model output (eq. 12's "predicted x0")
    x0_hat, eps_hat = _x0_hat(model_output, xt, ab_t, prediction_type, clip_sample, clip_sample_range)
    if use_clipped_model_output:
        eps_hat = posterior.eps_from_x0(xt, x0_hat, ab_t)
    # 2. sigma_t(eta), eq. 16
    sigma = _ddim_sigma(ab_t, ab_prev, eta)
    # 3. "direction pointing to x_t" and the new sample, eq. 12
    x_prev = torch.sqrt(ab_prev) * x0_hat + torch.sqrt(1 - ab_prev - sigma**2) * eps_hat
    if eta > 0:
        x_prev = x_prev + sigma * noise_lib.given_or_drawn(noise, xt, generator)
    return Step(x_prev, x0_hat)


class DDIM(Sampler):
    """DDIM (ddim_step): deterministic at eta = 0, DDPM-like at eta = 1.   [DDIM eq. 12, nb 02]"""

    name = "ddim"
    lands_anywhere = True  # final_alpha_bar: diffusers' set_alpha_to_one

    def __init__(self, *, eta: float = 0.0, prediction_type: str = "epsilon", clip_sample: bool = False,
                 clip_sample_range: float = 1.0, use_clipped_model_output: bool = False, **unknown):
        super().__init__(prediction_type=prediction_type, **unknown)
        self.eta = _check_eta(eta)
        self.stochastic = self.eta > 0
        self.clip_sample, self.clip_sample_range = check_clipping(clip_sample, clip_sample_range)
        self.use_clipped_model_output = check_bool(use_clipped_model_output, "use_clipped_model_output")

    def step(self, model, x, i, *, generator=None):
        t, t_prev = self._levels(i)
        table = self._table(x)
        return _ddim_update(model(x, t), x, table[t], table[t_prev], self.eta, self.prediction_type, self.clip_sample,
                            self.clip_sample_range, self.use_clipped_model_output, None, generator)
