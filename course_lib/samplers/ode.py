"""Solvers of the probability-flow ODE: Euler, Heun and DPM-Solver++(2M), as diffusers' schedulers.   [notebook 03b]

In x_bar = x_t / sqrt(ab) and Karras' sigma = sqrt((1 - ab) / ab) the ODE of the forward process is
dx_bar / dsigma = eps*(x_t, t) (notebook 03b derives it), and x_t = x_bar / sqrt(sigma^2 + 1). Each
solver visits the sigmas of its timesteps (interpolated between the table's entries at a fractional
timestep, as diffusers' Euler and Heun do for "linspace") and lands on sigma = 0 (clean data), or on the
sigma of final_alpha_bar (diffusers' final_sigmas_type="sigma_min") where the solver has that ending.
Every step converts the model output to x0_hat with ab = 1 / (sigma^2 + 1), in x's dtype. The sigmas are
schedules.karras_sigma and schedules.sigmas_at (the interpolation rule lives with the schedule, so that a model
of exactly known eps*, mixtures.optimal_eps, is called at the same noise level).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from course_lib import posterior, schedules
from course_lib.samplers.base import Sampler, Step
from course_lib.samplers.timesteps import SPACINGS, fractional_linspace, inference_timesteps
from course_lib.validation import CourseInputError, check_choice, check_float_tensor, check_int


class _KarrasSolver(Sampler):
    """Solvers of the probability-flow ODE dx_bar/dsigma = eps (Karras et al. 2022), landing on sigma = 0."""

    def timesteps(self, num_train_steps, num_steps, spacing="trailing", offset=0):
        """Return diffusers' timesteps for this solver; Euler and Heun keep 'linspace' fractional (999, 832.5, ...)."""
        if spacing == "linspace" and self.fractional_timesteps:
            check_int(offset, "offset", hint="diffusers' steps_offset, added to 'leading' spacing only")
            return fractional_linspace(num_train_steps, self.check_steps(num_steps))
        return super().timesteps(num_train_steps, num_steps, spacing, offset)

    def _sigmas(self, like: torch.Tensor) -> list[float]:
        """Return the sigma of every visited timestep, then the final one, in like's dtype (cached per run)."""
        key = ("sigmas", like.dtype)
        if key not in self._tables:
            visited = schedules.sigmas_at(self._alpha_bars.to(like.dtype), self._timesteps).tolist()
            final = 0.0 if self._final_alpha_bar == 1 else float(
                schedules.karras_sigma(torch.tensor(self._final_alpha_bar, dtype=like.dtype)))
            self._tables[key] = visited + [final]
        return self._tables[key]

    def _x0_hat(self, model_output, x, sigma: float) -> torch.Tensor:
        """x0_hat from the model output at x_t = x, noise level sigma (ab = 1 / (sigma^2 + 1)), in x's dtype."""
        check_float_tensor(model_output, "model_output")
        x0_hat, _ = posterior.predict_x0_eps(model_output, x, 1.0 / (sigma**2 + 1), self.prediction_type)
        return x0_hat

    def _derivative(self, model, x_bar, sigma, t):
        """dx_bar/dsigma = (x_bar - x0_hat) / sigma at (x_bar, sigma), and x0_hat; one model call at x_t = x_bar / sqrt(sigma^2 + 1)."""
        x = x_bar / (sigma**2 + 1) ** 0.5
        x0_hat = self._x0_hat(model(x, t), x, sigma)
        return (x_bar - x0_hat) / sigma, x0_hat


class Euler(_KarrasSolver):
    """Euler's method on the probability-flow ODE: x_bar' = x_bar + (sigma' - sigma) d.   [Karras Alg. 1, nb 03b]

    As diffusers' EulerDiscreteScheduler (no churn), fractional 'linspace' timesteps included; a final_alpha_bar
    below 1 is its final_sigmas_type="sigma_min". In x_t's variables it is DDIM with eta = 0: notebook 03b shows
    that with numbers.
    """

    name = "euler"
    fractional_timesteps = True
    lands_anywhere = True

    def step(self, model, x, i, *, generator=None):
        t, _ = self._levels(i)
        sigma, sigma_next = self._sigmas(x)[i: i + 2]
        x_bar = x * (sigma**2 + 1) ** 0.5
        d, x0_hat = self._derivative(model, x_bar, sigma, t)
        return Step((x_bar + (sigma_next - sigma) * d) / (sigma_next**2 + 1) ** 0.5, x0_hat)


class Heun(_KarrasSolver):
    """Heun's method (Euler, then the trapezoid corrector) on the probability-flow ODE.   [Karras Alg. 1, nb 03b]

    x_tilde = x_bar + h d(x_bar, sigma);  x_bar' = x_bar + h (d(x_bar, sigma) + d(x_tilde, sigma')) / 2,
    h = sigma' - sigma. Two model calls per step, one on the last (to sigma = 0, where d is undefined:
    an Euler step). N steps cost 2N - 1 evaluations, as diffusers' HeunDiscreteScheduler, whose
    fractional 'linspace' timesteps it visits too (the corrector calls the model at the next, fractional, t).
    """

    name = "heun"
    order = 2
    fractional_timesteps = True

    def evaluations(self, num_steps):
        return 2 * self.check_steps(num_steps) - 1

    def steps_for(self, evaluations):
        evaluations = check_int(evaluations, "evaluations", minimum=1)
        if evaluations % 2 == 0:
            raise CourseInputError(
                f"heun spends 2 evaluations per step and 1 on its last (an Euler step to sigma = 0): 2N - 1, always odd. "
                f"{evaluations} evaluations cannot be spent exactly; use {evaluations - 1} or {evaluations + 1}.")
        return (evaluations + 1) // 2

    def step(self, model, x, i, *, generator=None):
        t, t_next = self._levels(i)
        sigma, sigma_next = self._sigmas(x)[i: i + 2]
        x_bar = x * (sigma**2 + 1) ** 0.5
        d, x0_hat = self._derivative(model, x_bar, sigma, t)
        x_tilde = x_bar + (sigma_next - sigma) * d  # Euler's predictor
        if sigma_next == 0:
            return Step(x_tilde, x0_hat)
        d_next, _ = self._derivative(model, x_tilde, sigma_next, t_next)  # the corrector's second slope
        x_bar_next = x_bar + (sigma_next - sigma) * (d + d_next) / 2
        return Step(x_bar_next / (sigma_next**2 + 1) ** 0.5, x0_hat)


class DPMSolverPP2M(_KarrasSolver):
    """DPM-Solver++(2M): second-order multistep in log-SNR, on the model's x0 predictions.   [Lu et al. 2022, nb 03b]

    With alpha = 1 / sqrt(sigma^2 + 1), s = sigma alpha (x_t = alpha x0 + s eps), lambda = log(alpha / s)
    and h = lambda' - lambda:
        first order (= DDIM):  x' = (s'/s) x - alpha' (e^-h - 1) x0_hat
        second order:          ... - alpha' (e^-h - 1) D1 / 2,  D1 = (x0_hat - x0_hat_prev) h / h_prev
    The first step has no history and the last is first order (to sigma = 0, where x' = x0_hat; to a
    final_alpha_bar below 1, when there are fewer than 15 steps), as in diffusers' DPMSolverMultistepScheduler
    (algorithm_type="dpmsolver++", solver_order=2, midpoint, lower_order_final). So it needs at least 3 steps
    to differ from DDIM.
    """

    name = "dpmpp_2m"
    order = 2
    min_steps = 3
    lands_anywhere = True
    LOWER_ORDER_FINAL_BELOW = 15  # diffusers' lower_order_final: a first-order last step for fewer steps

    def _too_few_steps(self, num_steps):
        return (f"dpmpp_2m with {num_steps} step{'s' if num_steps > 1 else ''} never takes its second-order step "
                f"(the first step has no history and the last is first order): it would be DDIM. "
                f"Use at least 3 steps, or sampler='ddim'.")

    def timesteps(self, num_train_steps, num_steps, spacing="trailing", offset=0):
        """DPMSolverMultistepScheduler's timesteps: 'leading' and 'linspace' divide into num_steps + 1 (unlike DDIM)."""
        check_choice(spacing, SPACINGS, "spacing")
        num_train_steps = check_int(num_train_steps, "num_train_steps", minimum=1)
        num_steps = self.check_steps(num_steps)
        offset = check_int(offset, "offset", hint="diffusers' steps_offset, added to 'leading' spacing only")
        if spacing == "trailing":
            return inference_timesteps(num_train_steps, num_steps, spacing, offset)
        if num_steps >= num_train_steps:
            raise CourseInputError(f"num_steps must be below num_train_steps={num_train_steps} for '{spacing}' spacing "
                                   f"(it divides into num_steps + 1), got {num_steps}.")
        if spacing == "leading":
            ts = np.arange(num_steps + 1)[::-1][:-1] * (num_train_steps // (num_steps + 1)) + offset
        else:
            ts = np.round(np.linspace(0, num_train_steps - 1, num_steps + 1))[::-1][:-1]
        if ts.max() >= num_train_steps or ts.min() < 0:
            raise CourseInputError(f"offset={offset} pushes the timesteps out of 0..{num_train_steps - 1}.")
        return torch.from_numpy(ts.astype(np.int64).copy())

    def begin(self, timesteps, alpha_bars, final_alpha_bar=1.0):
        super().begin(timesteps, alpha_bars, final_alpha_bar)
        self._previous = None  # (x0_hat, lambda) of the step before: the solver's history

    @staticmethod
    def _alpha_s(sigma: float) -> tuple[float, float]:
        alpha = 1.0 / (sigma**2 + 1) ** 0.5
        return alpha, sigma * alpha

    def step(self, model, x, i, *, generator=None):
        t, _ = self._levels(i)
        sigma, sigma_next = self._sigmas(x)[i: i + 2]
        x0_hat = self._x0_hat(model(x, t), x, sigma)
        alpha, s = self._alpha_s(sigma)
        lam = math.log(alpha) - math.log(s)
        previous, self._previous = self._previous, (x0_hat, lam)
        if sigma_next == 0:  # the last step to clean data: s' = 0 and e^-h = 0, so x' = x0_hat
            return Step(x0_hat, x0_hat)
        alpha_next, s_next = self._alpha_s(sigma_next)
        h = math.log(alpha_next) - math.log(s_next) - lam
        x_next = (s_next / s) * x - alpha_next * math.expm1(-h) * x0_hat
        last = i == len(self._timesteps) - 1
        if previous is not None and not (last and len(self._timesteps) < self.LOWER_ORDER_FINAL_BELOW):
            r = (lam - previous[1]) / h
            x_next = x_next - 0.5 * alpha_next * math.expm1(-h) * (x0_hat - previous[0]) / r
        return Step(x_next, x0_hat)
