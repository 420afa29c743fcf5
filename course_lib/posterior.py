"""The reverse-process maths: the posterior q(x_{t-1} | x_t, x0) and the eps / x0 / v parameterisations.   [notebook 02]

Every function takes the current step t and, where a jump skips steps (fewer sampling steps than
training steps), the step it lands on, t_prev; t_prev = -1 means clean data (alpha_bar = 1).
For one training step t_prev = t - 1, and the formulas are DDPM's eqs. 6-7 and 15 exactly.
"""

from __future__ import annotations

import torch

from course_lib.schedules import gather
from course_lib.validation import (
    CourseInputError,
    check_alpha_bar_t,
    check_batch_timesteps,
    check_choice,
    check_float_tensor,
    check_same_shape,
    check_schedule_table,
    check_timestep,
)

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")  # diffusers' names: eps, x0, v


def _alpha_bars_at(t, t_prev, alpha_bars, like, final_alpha_bar: float = 1.0):
    """Check t and t_prev and return (ab_t, ab_prev) shaped to broadcast against `like`."""
    check_schedule_table(alpha_bars, "alpha_bars")
    if not 0 < float(final_alpha_bar) <= 1:
        raise CourseInputError(
            f"final_alpha_bar must be in (0, 1], got {float(final_alpha_bar)}. Use 1.0 (clean data) "
            f"or alpha_bars[0] (diffusers' set_alpha_to_one=False)."
        )
    t = check_timestep(t, len(alpha_bars))
    check_batch_timesteps(t, like)
    t_prev = t - 1 if t_prev is None else check_timestep(t_prev, len(alpha_bars), "t_prev", allow_data=True)
    check_batch_timesteps(t_prev, like, "t_prev")
    if (t_prev >= t).any():
        raise CourseInputError(
            f"t_prev must be earlier than t (the reverse process goes from t down to t_prev), "
            f"got t={t.tolist()} and t_prev={t_prev.tolist()}."
        )
    ab_t = gather(alpha_bars, t, like)
    # Append the alpha_bar that t_prev = -1 (clean data) stands for, so that -1 indexes it.
    table = torch.cat([alpha_bars, alpha_bars.new_tensor([final_alpha_bar])])
    ab_prev = gather(table, t_prev % len(table), like)
    return ab_t, ab_prev


def posterior_coefficients(alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor):
    """Return (coef_x0, coef_xt, variance) of q(x_{t-1} | x_t, x0).   [DDPM eq. 7, nb 02]

    With alpha_t = ab_t / ab_prev and beta_t = 1 - alpha_t (one step, or a jump of several):
        mean     = coef_x0 * x0 + coef_xt * x_t
        coef_x0  = sqrt(ab_prev) * beta_t / (1 - ab_t)
        coef_xt  = sqrt(alpha_t) * (1 - ab_prev) / (1 - ab_t)
        variance = beta_tilde_t = (1 - ab_prev) / (1 - ab_t) * beta_t
    Numbers or tensors; tensors must broadcast against each other.
    """
    alpha_bar_t = torch.as_tensor(alpha_bar_t) if isinstance(alpha_bar_t, (int, float)) else alpha_bar_t
    alpha_bar_prev = torch.as_tensor(alpha_bar_prev) if isinstance(alpha_bar_prev, (int, float)) else alpha_bar_prev
    check_float_tensor(alpha_bar_t, "alpha_bar_t")
    check_float_tensor(alpha_bar_prev, "alpha_bar_prev")
    alpha_t = alpha_bar_t / alpha_bar_prev
    beta_t = 1 - alpha_t
    coef_x0 = torch.sqrt(alpha_bar_prev) * beta_t / (1 - alpha_bar_t)
    coef_xt = torch.sqrt(alpha_t) * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t
    return coef_x0, coef_xt, variance


def q_posterior(x0: torch.Tensor, xt: torch.Tensor, t, alpha_bars: torch.Tensor, t_prev=None):
    """Return the mean and variance of q(x_{t_prev} | x_t, x0), a Gaussian.   [DDPM eqs. 6-7, nb 02]

    Shapes: x0, xt (B, ...); t, t_prev an int or (B,); returns mean (B, ...) and variance (B, ...).
    """
    check_float_tensor(x0, "x0")
    check_float_tensor(xt, "xt")
    check_same_shape(x0=x0, xt=xt)
    ab_t, ab_prev = _alpha_bars_at(t, t_prev, alpha_bars, xt)
    coef_x0, coef_xt, variance = posterior_coefficients(ab_t, ab_prev)
    return coef_x0 * x0 + coef_xt * xt, variance.expand_as(xt)


def _check_conversion(first, second, alpha_bar_t, first_name: str, second_name: str) -> torch.Tensor:
    """Check the two tensors of a conversion and return alpha_bar_t ready to broadcast against them."""
    check_float_tensor(first, first_name)
    check_float_tensor(second, second_name)
    check_same_shape(**{first_name: first, second_name: second})
    return check_alpha_bar_t(alpha_bar_t, first)


def x0_from_eps(xt: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """Return x0 = (x_t - sqrt(1 - ab_t) * eps) / sqrt(ab_t).   [DDPM eq. 15, nb 02]"""
    alpha_bar_t = _check_conversion(xt, eps, alpha_bar_t, "xt", "eps")
    return (xt - torch.sqrt(1 - alpha_bar_t) * eps) / torch.sqrt(alpha_bar_t)


def eps_from_x0(xt: torch.Tensor, x0: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """Return eps = (x_t - sqrt(ab_t) * x0) / sqrt(1 - ab_t).   [DDPM eq. 4 solved for eps, nb 02]"""
    alpha_bar_t = _check_conversion(xt, x0, alpha_bar_t, "xt", "x0")
    return (xt - torch.sqrt(alpha_bar_t) * x0) / torch.sqrt(1 - alpha_bar_t)


def v_from_x0_eps(x0: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """Return the velocity v = sqrt(ab_t) * eps - sqrt(1 - ab_t) * x0.   [progressive distillation sec. 4, nb 02]"""
    alpha_bar_t = _check_conversion(x0, eps, alpha_bar_t, "x0", "eps")
    return torch.sqrt(alpha_bar_t) * eps - torch.sqrt(1 - alpha_bar_t) * x0


def x0_from_v(xt: torch.Tensor, v: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """Return x0 = sqrt(ab_t) * x_t - sqrt(1 - ab_t) * v.   [progressive distillation, nb 02]"""
    alpha_bar_t = _check_conversion(xt, v, alpha_bar_t, "xt", "v")
    return torch.sqrt(alpha_bar_t) * xt - torch.sqrt(1 - alpha_bar_t) * v


def eps_from_v(xt: torch.Tensor, v: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """Return eps = sqrt(ab_t) * v + sqrt(1 - ab_t) * x_t.   [progressive distillation, nb 02]"""
    alpha_bar_t = _check_conversion(xt, v, alpha_bar_t, "xt", "v")
    return torch.sqrt(alpha_bar_t) * v + torch.sqrt(1 - alpha_bar_t) * xt


def predict_x0_eps(model_output: torch.Tensor, xt: torch.Tensor, alpha_bar_t: torch.Tensor,
                   prediction_type: str = "epsilon") -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x0_hat, eps_hat) from a model that predicts eps, x0 ("sample") or v.   [nb 02]

    alpha_bar_t must already broadcast against xt (see schedules.gather).
    """
    check_choice(prediction_type, PREDICTION_TYPES, "prediction_type")
    check_float_tensor(model_output, "model_output")
    check_float_tensor(xt, "xt")
    check_same_shape(model_output=model_output, xt=xt)
    if prediction_type == "epsilon":
        return x0_from_eps(xt, model_output, alpha_bar_t), model_output
    if prediction_type == "sample":
        return model_output, eps_from_x0(xt, model_output, alpha_bar_t)
    return x0_from_v(xt, model_output, alpha_bar_t), eps_from_v(xt, model_output, alpha_bar_t)
