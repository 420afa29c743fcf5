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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from course_lib import noise as noise_lib
from course_lib import posterior
from course_lib.validation import (CourseInputError, check_choice, check_float_tensor, check_positive_int,
                                   check_schedule_table)

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
    return Step(mean + torch.sqrt(variance) * noise_lib.given_or_drawn(noise, xt, generator), x0_hat)


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
        x_prev = x_prev + sigma * noise_lib.given_or_drawn(noise, xt, generator)
    return Step(x_prev, x0_hat)


@dataclass
class SampleOutput:
    """The final sample, and (when kept) every x_t visited and every x0_hat, first to last."""

    x0: torch.Tensor
    trajectory: list[torch.Tensor] = field(default_factory=list)
    x0_hats: list[torch.Tensor] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# One sampler interface: DDPM, DDIM and the ODE solvers of notebook 03b, by name or as objects
# ----------------------------------------------------------------------------------------------

def karras_sigma(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Return sigma = sqrt((1 - ab) / ab): the noise level of x_bar = x_t / sqrt(ab) = x0 + sigma eps.   [Karras eq. 4, nb 03b]

    In these variables the probability-flow ODE of the forward process is dx_bar / dsigma = eps*(x_t, t)
    (notebook 03b derives it), and x_t = x_bar / sqrt(sigma^2 + 1). Computed in float32 as diffusers'
    EulerDiscreteScheduler computes its sigmas.
    """
    check_float_tensor(alpha_bar, "alpha_bar")
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


class Sampler:
    """A reverse-process solver: the timesteps it visits and one step from a timestep to the next.   [nb 02, nb 03b]

    Every generator of the course takes one (or its name, see get_sampler). `sample` calls
    begin(timesteps, alpha_bars) once, then step(model, x, i) for i = 0 .. len(timesteps) - 1; step i
    goes from timesteps[i] to timesteps[i + 1] (to clean data after the last) and may call model(x, t)
    more than once (Heun) or use what earlier steps saw (DPM-Solver++): a sampler object keeps its
    own history, and begin clears it. x is always x_t, the variable the model sees (unit variance at
    t = T-1); solvers that work in other variables convert inside the step.
    """

    name = ""
    order = 1  # order of accuracy as an ODE solver (DDPM, a stochastic sampler, is listed as 1)
    min_steps = 1
    stochastic = False

    def __init__(self, *, prediction_type: str = "epsilon"):
        check_choice(prediction_type, posterior.PREDICTION_TYPES, "prediction_type")
        self.prediction_type = prediction_type
        self._timesteps: list[int] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # -- the steps it takes ---------------------------------------------------------------------
    def check_steps(self, num_steps) -> int:
        """Return num_steps if this sampler can take that many steps, else raise saying what it can take."""
        num_steps = check_positive_int(num_steps, "num_steps")
        if num_steps < self.min_steps:
            raise CourseInputError(self._too_few_steps(num_steps))
        return num_steps

    def _too_few_steps(self, num_steps: int) -> str:
        return f"{self.name} needs at least {self.min_steps} steps, got {num_steps}."

    def timesteps(self, num_train_steps: int, num_steps: int, spacing: str = "trailing", offset: int = 0) -> torch.Tensor:
        """Return the num_steps timesteps this sampler visits, in descending order (diffusers' choice for its class)."""
        return inference_timesteps(num_train_steps, self.check_steps(num_steps), spacing, offset)

    def evaluations(self, num_steps: int) -> int:
        """Return how many model evaluations num_steps steps cost."""
        return self.check_steps(num_steps)

    def steps_for(self, evaluations: int) -> int:
        """Return the number of steps that spends exactly `evaluations` model calls, else raise."""
        evaluations = check_positive_int(evaluations, "evaluations")
        return self.check_steps(evaluations)

    # -- one run ----------------------------------------------------------------------------------
    def begin(self, timesteps, alpha_bars: torch.Tensor, final_alpha_bar: float = 1.0) -> None:
        """Start a run through `timesteps` on the schedule `alpha_bars`; clears any history of an earlier run."""
        check_schedule_table(alpha_bars, "alpha_bars")
        ts = [int(t) for t in timesteps]
        if not ts:
            raise CourseInputError("timesteps is empty: there is no step to take.")
        if any(a <= b for a, b in zip(ts, ts[1:])):
            raise CourseInputError("timesteps must be strictly decreasing; use sampler.timesteps(...).")
        if ts[0] >= len(alpha_bars) or ts[-1] < 0:
            raise CourseInputError(f"timesteps must lie in 0..{len(alpha_bars) - 1}, got {ts[0]}..{ts[-1]}.")
        self.check_steps(len(ts))
        self._timesteps, self._alpha_bars, self._final_alpha_bar = ts, alpha_bars, float(final_alpha_bar)

    def _levels(self, i: int) -> tuple[int, int]:
        if self._timesteps is None:
            raise CourseInputError(f"call {type(self).__name__}.begin(timesteps, alpha_bars) before step (sample does it).")
        ts = self._timesteps
        return ts[i], ts[i + 1] if i + 1 < len(ts) else -1

    def _x0_eps(self, model_output, x, t) -> tuple[torch.Tensor, torch.Tensor]:
        check_float_tensor(model_output, "model_output")
        ab_t = self._alpha_bars[t].to(x.device)
        return posterior.predict_x0_eps(model_output, x, ab_t, self.prediction_type)

    def step(self, model, x: torch.Tensor, i: int, *, generator=None) -> Step:
        raise NotImplementedError


class DDPM(Sampler):
    """DDPM's ancestral sampler (ddpm_step), variance 'fixed_small' or 'fixed_large'.   [DDPM Alg. 2, nb 02]"""

    name = "ddpm"
    stochastic = True

    def __init__(self, *, prediction_type: str = "epsilon", variance_type: str = "fixed_small",
                 clip_sample: bool = False, clip_sample_range: float = 1.0):
        super().__init__(prediction_type=prediction_type)
        check_choice(variance_type, VARIANCE_TYPES, "variance_type")
        self.variance_type, self.clip_sample, self.clip_sample_range = variance_type, clip_sample, clip_sample_range

    def step(self, model, x, i, *, generator=None):
        t, t_prev = self._levels(i)
        return ddpm_step(model(x, t), x, t, t_prev, self._alpha_bars.to(x.device), prediction_type=self.prediction_type,
                         variance_type=self.variance_type, clip_sample=self.clip_sample,
                         clip_sample_range=self.clip_sample_range, generator=generator)


class DDIM(Sampler):
    """DDIM (ddim_step): deterministic at eta = 0, DDPM-like at eta = 1.   [DDIM eq. 12, nb 02]"""

    name = "ddim"

    def __init__(self, *, eta: float = 0.0, prediction_type: str = "epsilon", clip_sample: bool = False,
                 clip_sample_range: float = 1.0, use_clipped_model_output: bool = False):
        super().__init__(prediction_type=prediction_type)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or eta < 0:
            raise CourseInputError(f"eta must be a number >= 0 (0 is deterministic DDIM, 1 is DDPM-like), got {eta!r}.")
        self.eta, self.stochastic = float(eta), eta > 0
        self.clip_sample, self.clip_sample_range = clip_sample, clip_sample_range
        self.use_clipped_model_output = use_clipped_model_output

    def step(self, model, x, i, *, generator=None):
        t, t_prev = self._levels(i)
        return ddim_step(model(x, t), x, t, t_prev, self._alpha_bars.to(x.device), eta=self.eta,
                         prediction_type=self.prediction_type, clip_sample=self.clip_sample,
                         clip_sample_range=self.clip_sample_range,
                         use_clipped_model_output=self.use_clipped_model_output,
                         final_alpha_bar=self._final_alpha_bar, generator=generator)


class _KarrasSolver(Sampler):
    """Solvers of the probability-flow ODE dx_bar/dsigma = eps (Karras et al. 2022), landing on sigma = 0."""

    def begin(self, timesteps, alpha_bars, final_alpha_bar=1.0):
        super().begin(timesteps, alpha_bars, final_alpha_bar)
        # sigma at each visited timestep, then 0 (clean data): diffusers' final_sigmas_type="zero"
        sig = karras_sigma(alpha_bars[torch.tensor(self._timesteps)].float())
        self._sigmas = torch.cat([sig, torch.zeros(1)])

    def _derivative(self, model, x_bar, sigma, t):
        """dx_bar/dsigma = (x_bar - x0_hat) / sigma at (x_bar, sigma), and x0_hat; one model call at x_t = x_bar / sqrt(sigma^2 + 1)."""
        x = x_bar / (sigma**2 + 1) ** 0.5
        x0_hat, _ = self._x0_eps(model(x, t), x, t)
        return (x_bar - x0_hat) / sigma, x0_hat


class Euler(_KarrasSolver):
    """Euler's method on the probability-flow ODE: x_bar' = x_bar + (sigma' - sigma) d.   [Karras Alg. 1, nb 03b]

    As diffusers' EulerDiscreteScheduler (no churn). In x_t's variables it is DDIM with eta = 0 and a
    last step to clean data: notebook 03b shows that with numbers.
    """

    name = "euler"

    def step(self, model, x, i, *, generator=None):
        t, _ = self._levels(i)
        sigma, sigma_next = (float(s) for s in self._sigmas[i: i + 2])
        x_bar = x * (sigma**2 + 1) ** 0.5
        d, x0_hat = self._derivative(model, x_bar, sigma, t)
        return Step((x_bar + (sigma_next - sigma) * d) / (sigma_next**2 + 1) ** 0.5, x0_hat)


class Heun(_KarrasSolver):
    """Heun's method (Euler, then the trapezoid corrector) on the probability-flow ODE.   [Karras Alg. 1, nb 03b]

    x_tilde = x_bar + h d(x_bar, sigma);  x_bar' = x_bar + h (d(x_bar, sigma) + d(x_tilde, sigma')) / 2,
    h = sigma' - sigma. Two model calls per step, one on the last (to sigma = 0, where d is undefined:
    an Euler step). N steps cost 2N - 1 evaluations, as diffusers' HeunDiscreteScheduler.
    """

    name = "heun"
    order = 2

    def evaluations(self, num_steps):
        return 2 * self.check_steps(num_steps) - 1

    def steps_for(self, evaluations):
        evaluations = check_positive_int(evaluations, "evaluations")
        if evaluations % 2 == 0:
            raise CourseInputError(
                f"heun spends 2 evaluations per step and 1 on its last (an Euler step to sigma = 0): 2N - 1, always odd. "
                f"{evaluations} evaluations cannot be spent exactly; use {evaluations - 1} or {evaluations + 1}.")
        return (evaluations + 1) // 2

    def step(self, model, x, i, *, generator=None):
        t, t_next = self._levels(i)
        sigma, sigma_next = (float(s) for s in self._sigmas[i: i + 2])
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
    The first step has no history and the last (to sigma = 0, where x' = x0_hat) is first order, as in
    diffusers' DPMSolverMultistepScheduler (algorithm_type="dpmsolver++", solver_order=2, midpoint).
    So it needs at least 3 steps to differ from DDIM.
    """

    name = "dpmpp_2m"
    order = 2
    min_steps = 3

    def _too_few_steps(self, num_steps):
        return (f"dpmpp_2m with {num_steps} step{'s' if num_steps > 1 else ''} never takes its second-order step "
                f"(the first step has no history and the last is first order): it would be DDIM. "
                f"Use at least 3 steps, or sampler='ddim'.")

    def timesteps(self, num_train_steps, num_steps, spacing="trailing", offset=0):
        """DPMSolverMultistepScheduler's timesteps: 'leading' and 'linspace' divide into num_steps + 1 (unlike DDIM)."""
        check_choice(spacing, SPACINGS, "spacing")
        num_train_steps = check_positive_int(num_train_steps, "num_train_steps")
        num_steps = self.check_steps(num_steps)
        if spacing == "trailing":
            return inference_timesteps(num_train_steps, num_steps, spacing, offset)
        if num_steps >= num_train_steps:
            raise CourseInputError(f"num_steps must be below num_train_steps={num_train_steps} for '{spacing}' spacing "
                                   f"(it divides into num_steps + 1), got {num_steps}.")
        if spacing == "leading":
            ts = np.arange(num_steps + 1)[::-1][:-1] * (num_train_steps // (num_steps + 1)) + offset
        else:
            ts = np.round(np.linspace(0, num_train_steps - 1, num_steps + 1))[::-1][:-1]
        if ts.max() >= num_train_steps:
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
        sigma, sigma_next = (float(s) for s in self._sigmas[i: i + 2])
        x0_hat, _ = self._x0_eps(model(x, t), x, t)
        alpha, s = self._alpha_s(sigma)
        lam = math.log(alpha) - math.log(s)
        previous, self._previous = self._previous, (x0_hat, lam)
        if sigma_next == 0:  # the last step: s' = 0 and e^-h = 0, so x' = x0_hat
            return Step(x0_hat, x0_hat)
        alpha_next, s_next = self._alpha_s(sigma_next)
        h = math.log(alpha_next) - math.log(s_next) - lam
        x_next = (s_next / s) * x - alpha_next * math.expm1(-h) * x0_hat
        if previous is not None:
            r = (lam - previous[1]) / h
            x_next = x_next - 0.5 * alpha_next * math.expm1(-h) * (x0_hat - previous[0]) / r
        return Step(x_next, x0_hat)


SAMPLERS = {cls.name: cls for cls in (DDPM, DDIM, Euler, Heun, DPMSolverPP2M)}


def get_sampler(sampler="ddim", **options) -> Sampler:
    """Return a Sampler from its name ('ddpm', 'ddim', 'euler', 'heun', 'dpmpp_2m') and options, or the object given.   [nb 03b]

    >>> get_sampler("ddim", eta=0.5).eta
    0.5
    """
    if isinstance(sampler, Sampler):
        if options:
            raise CourseInputError(f"options {sorted(options)} go to the sampler's constructor; "
                                   f"{sampler!r} is already built (pass its name instead, or build it with them).")
        return sampler
    if not isinstance(sampler, str) or sampler.lower() not in SAMPLERS:
        raise CourseInputError(f"unknown sampler {sampler!r}; the course has {', '.join(SAMPLERS)} "
                               f"(by name, or a samplers.Sampler object).")
    cls = SAMPLERS[sampler.lower()]
    try:
        return cls(**options)
    except TypeError:
        import inspect

        known = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise CourseInputError(f"{cls.name} takes the options {known}, got {sorted(options)}.") from None


@torch.no_grad()
def sample(model: Callable[[torch.Tensor, int], torch.Tensor], x_T: torch.Tensor, timesteps: Sequence[int],
           step, *, alpha_bars: torch.Tensor | None = None, final_alpha_bar: float = 1.0, generator=None,
           keep_trajectory: bool = False, callback: Callable[[int, int, Step], None] | None = None,
           progress: bool = False) -> SampleOutput:
    """Run the reverse process from x_T through `timesteps` with any sampler or step function.   [DDPM Alg. 2 / DDIM, nb 02]

    model(xt, t) returns the model output at step t. `step` is a Sampler (or its name, with
    alpha_bars given: get_sampler), or a step function such as
    functools.partial(samplers.ddim_step, alpha_bars=alpha_bars, eta=0.0), called as
    step(model(x, t), x, t, t_prev); the step after t is looked up in `timesteps`, and after the
    last one it is -1 (clean data). Shapes: x_T (B, ...); returns SampleOutput with x0 (B, ...).
    """
    check_float_tensor(x_T, "x_T")
    timesteps = [int(t) for t in timesteps]
    if any(a <= b for a, b in zip(timesteps, timesteps[1:])):
        raise CourseInputError("timesteps must be strictly decreasing; use samplers.inference_timesteps(...).")
    if isinstance(step, (str, Sampler)):
        solver = get_sampler(step)
        if alpha_bars is None:
            raise CourseInputError(f"sampling with {solver!r} needs alpha_bars (the schedule's table).")
        solver.begin(timesteps, alpha_bars, final_alpha_bar)

        def advance(i, t, t_prev, x):
            return solver.step(model, x, i, generator=generator)
    else:
        def advance(i, t, t_prev, x):
            return step(model(x, t), x, t, t_prev, generator=generator)
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
        result = advance(i, t, t_prev, x)
        x = result.x_prev
        if keep_trajectory:
            out.trajectory.append(x)
            out.x0_hats.append(result.x0_hat)
        if callback is not None:
            callback(i, t, result)
    out.x0 = x
    return out
