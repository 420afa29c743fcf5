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
    check_alpha_bars,
    check_batch_timesteps,
    check_choice,
    check_float_tensor,
    check_number,
    check_same_shape,
    check_timestep,
)

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")  # diffusers' names: eps, x0, v


def model_prediction_type(model) -> str:
    """Return what a model's output means, from its config ("epsilon" when it has none or it does not say).

    One of PREDICTION_TYPES, or "flow" for a flow-matching velocity model (notebook 03b), which the
    diffusion samplers refuse.
    """
    config = getattr(model, "config", None)
    value = config.get("prediction_type", None) if hasattr(config, "get") else getattr(config, "prediction_type", None)
    return value or "epsilon"


def check_final_alpha_bar(final_alpha_bar) -> float:
    """Return final_alpha_bar as a float in (0, 1]: the alpha_bar that t_prev = -1 (after the last step) stands for."""
    hint = "Use 1.0 (clean data) or alpha_bars[0] (diffusers' set_alpha_to_one=False)"
    value = check_number(final_alpha_bar, "final_alpha_bar", hint=hint)
    if not 0 < value <= 1:
        raise CourseInputError(f"final_alpha_bar must be in (0, 1], got {value}. {hint}.")
    return value


def alpha_bars_at(t, t_prev, alpha_bars: torch.Tensor, like: torch.Tensor, final_alpha_bar: float = 1.0):
    """Return (ab_t, ab_prev) shaped to broadcast against `like`, after checking t, t_prev and the table.   [nb 02]

    t_prev = None means t - 1 (one training step); t_prev = -1 means the end of sampling, where
    ab_prev = final_alpha_bar (1.0: clean data). t, t_prev: ints or (B,) integer tensors.
    """
    check_alpha_bars(alpha_bars, "alpha_bars")
    final_alpha_bar = check_final_alpha_bar(final_alpha_bar)
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
    ab_prev = gather(alpha_bars, t_prev, like)  # 1.0 where t_prev = -1, then the final_alpha_bar asked for
    if final_alpha_bar != 1.0:
        ab_prev = torch.where((t_prev < 0).to(like.device).reshape(ab_prev.shape) if ab_prev.ndim else t_prev < 0,
                              torch.tensor(final_alpha_bar, dtype=ab_prev.dtype, device=ab_prev.device), ab_prev)
    if final_alpha_bar != 1.0 and bool((ab_prev < ab_t).any()):
        raise CourseInputError(
            f"final_alpha_bar={final_alpha_bar:g} is below alpha_bar at t={t.min().item()} "
            f"({alpha_bars[t.min()].item():.6g}): the last step would go back towards noise. Use 1.0 (clean data) "
            f"or alpha_bars[0] (diffusers' set_alpha_to_one=False).")
    return ab_t, ab_prev


def check_levels(alpha_bar_t, alpha_bar_prev) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (ab_t, ab_prev) as tensors after checking 0 < ab_t < 1 and ab_t <= ab_prev <= 1: a step towards clean data.

    Numbers (numpy scalars too) become tensors of the default dtype; tensors must be floating point and finite.
    """
    alpha_bar_t, alpha_bar_prev = _level(alpha_bar_t, "alpha_bar_t"), _level(alpha_bar_prev, "alpha_bar_prev")
    # one pass for the common case (NaN fails every comparison), then the diagnosis
    if bool(((alpha_bar_t > 0) & (alpha_bar_t < 1) & (alpha_bar_prev <= 1) & (alpha_bar_prev >= alpha_bar_t)).all()):
        return alpha_bar_t, alpha_bar_prev
    if not bool(((alpha_bar_t > 0) & (alpha_bar_t < 1)).all()) or not bool((alpha_bar_prev <= 1).all()):
        raise CourseInputError("need 0 < alpha_bar_t < 1 and alpha_bar_prev <= 1: at alpha_bar_t = 1 (clean data) "
                               "there is no step to take, and at 0 no signal to keep.")
    if not bool((alpha_bar_prev >= alpha_bar_t).all()):
        raise CourseInputError("alpha_bar_prev must be >= alpha_bar_t: the reverse step goes from t towards clean data "
                               "(alpha_bar grows). Did you swap the two?")
    return alpha_bar_t, alpha_bar_prev


def _level(value, name: str) -> torch.Tensor:
    """Return an alpha_bar given as a number or a float tensor as a float tensor (check_levels checks its values)."""
    if not isinstance(value, torch.Tensor):
        return torch.as_tensor(check_number(value, name, low=0, high=1, hint="an alpha_bar, e.g. float(alpha_bars[t])"),
                               dtype=torch.get_default_dtype())
    return check_float_tensor(value, name)


def posterior_coefficients(alpha_bar_t, alpha_bar_prev):
    """Return (coef_x0, coef_xt, variance) of q(x_{t-1} | x_t, x0).   [DDPM eq. 7, nb 02]

    With alpha_t = ab_t / ab_prev and beta_t = 1 - alpha_t (one step, or a jump of several):
        mean     = coef_x0 * x0 + coef_xt * x_t
        coef_x0  = sqrt(ab_prev) * beta_t / (1 - ab_t)
        coef_xt  = sqrt(alpha_t) * (1 - ab_prev) / (1 - ab_t)
        variance = beta_tilde_t = (1 - ab_prev) / (1 - ab_t) * beta_t
    Numbers or tensors, 0 < ab_t < 1 and ab_t <= ab_prev <= 1 (check_levels); tensors must broadcast.
    """
    alpha_bar_t, alpha_bar_prev = check_levels(alpha_bar_t, alpha_bar_prev)
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
    ab_t, ab_prev = alpha_bars_at(t, t_prev, alpha_bars, xt)
    coef_x0, coef_xt, variance = posterior_coefficients(ab_t, ab_prev)
    return coef_x0 * x0 + coef_xt * xt, variance.expand_as(xt)


def _check_conversion(first, second, alpha_bar_t, first_name: str, second_name: str,
                      open_end: float | None = None) -> torch.Tensor:
    """Check the two tensors of a conversion and return alpha_bar_t ready to broadcast against them.

    open_end: the alpha_bar (0 or 1) where the conversion divides by zero, refused.
    """
    check_float_tensor(first, first_name)
    check_float_tensor(second, second_name)
    check_same_shape(**{first_name: first, second_name: second})
    alpha_bar_t = check_alpha_bar_t(alpha_bar_t, first)
    if open_end is not None and alpha_bar_t.numel() == 1 and float(alpha_bar_t) != open_end:
        return alpha_bar_t
    if open_end is not None and bool((alpha_bar_t == open_end).any()):
        what = "pure noise, no signal left to recover x0 from" if open_end == 0 else "clean data, no noise to recover"
        raise CourseInputError(f"alpha_bar_t = {open_end:g} is {what}: this conversion divides by zero there. "
                               f"Use a timestep inside the schedule (0 < alpha_bar_t < 1).")
    return alpha_bar_t


def x0_from_eps(xt: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """Return x0 = (x_t - sqrt(1 - ab_t) * eps) / sqrt(ab_t).   [DDPM eq. 15, nb 02]"""
    alpha_bar_t = _check_conversion(xt, eps, alpha_bar_t, "xt", "eps", open_end=0.0)
    return (xt - torch.sqrt(1 - alpha_bar_t) * eps) / torch.sqrt(alpha_bar_t)


def eps_from_x0(xt: torch.Tensor, x0: torch.Tensor, alpha_bar_t: torch.Tensor) -> torch.Tensor:
    """Return eps = (x_t - sqrt(ab_t) * x0) / sqrt(1 - ab_t).   [DDPM eq. 4 solved for eps, nb 02]"""
    alpha_bar_t = _check_conversion(xt, x0, alpha_bar_t, "xt", "x0", open_end=1.0)
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
