"""What every sampler is: the timesteps it visits, and one step from a timestep to the next.   [nb 02, nb 03b]"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch

from course_lib import posterior
from course_lib.samplers.timesteps import inference_timesteps, timestep_list
from course_lib.validation import (CourseInputError, check_alpha_bars, check_bool, check_choice, check_number,
                                   check_positive_int)


@dataclass
class Step:
    """What one reverse step returns: the new sample and the model's estimate of the clean data."""

    x_prev: torch.Tensor
    x0_hat: torch.Tensor


def check_clipping(clip_sample, clip_sample_range) -> tuple[bool, float]:
    """Return (clip_sample, clip_sample_range) after checking them: a switch, and a bound > 0 for |x0_hat|."""
    return check_bool(clip_sample, "clip_sample"), check_number(
        clip_sample_range, "clip_sample_range", low=0, low_open=True, hint="x0_hat is clamped to [-range, range]")


class Sampler:
    """A reverse-process solver: the timesteps it visits and one step from a timestep to the next.   [nb 02, nb 03b]

    Every generator of the course takes one (or its name, see get_sampler). `sample` calls
    begin(timesteps, alpha_bars, final_alpha_bar) once, then step(model, x, i) for i = 0 .. len(timesteps) - 1;
    step i goes from timesteps[i] to timesteps[i + 1] (after the last, to alpha_bar = final_alpha_bar: 1.0 is
    clean data) and may call model(x, t) more than once (Heun) or use what earlier steps saw (DPM-Solver++): a
    sampler object keeps its own history, and begin clears it. x is always x_t, the variable the model sees (unit
    variance at t = T-1); solvers that work in other variables convert inside the step, in x's dtype.
    begin checks once what the steps then trust.
    """

    name = ""
    order = 1  # order of accuracy as an ODE solver (DDPM, a stochastic sampler, is listed as 1)
    min_steps = 1
    stochastic = False
    fractional_timesteps = False  # Euler and Heun visit diffusers' fractional 'linspace' timesteps
    lands_anywhere = False  # whether the last step may land on final_alpha_bar < 1 (DDIM, Euler, DPM-Solver++)

    def __init__(self, *, prediction_type: str = "epsilon", **unknown):
        if unknown:
            raise CourseInputError(self._unknown_options(unknown))
        check_choice(prediction_type, posterior.PREDICTION_TYPES, "prediction_type")
        self.prediction_type = prediction_type
        self._timesteps: list | None = None

    def _unknown_options(self, unknown: dict) -> str:
        known = [p for p in inspect.signature(type(self).__init__).parameters if p not in ("self", "unknown")]
        message = f"{self.name} takes the options {known}, got {sorted(unknown)}."
        if "use_karras_sigmas" in unknown:
            message += (" Karras sigmas are not one of the course's samplers: they visit the schedule's own noise levels, "
                        "as diffusers' default use_karras_sigmas=False.")
        return message

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
        """Return the num_steps timesteps this sampler visits, in descending order: diffusers' choice for its class."""
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
        check_alpha_bars(alpha_bars, "alpha_bars")
        final_alpha_bar = posterior.check_final_alpha_bar(final_alpha_bar)
        if final_alpha_bar != 1.0 and not self.lands_anywhere:
            raise CourseInputError(
                f"{self.name} always lands on clean data after its last step (final_alpha_bar = 1): diffusers' "
                f"{'HeunDiscreteScheduler' if self.name == 'heun' else 'DDPMScheduler'} has no other ending. "
                f"final_alpha_bar={final_alpha_bar:g} applies to ddim (set_alpha_to_one=False), euler and dpmpp_2m "
                f"(final_sigmas_type='sigma_min').")
        ts = timestep_list(timesteps, len(alpha_bars), fractional=self.fractional_timesteps, who=self.name)
        self.check_steps(len(ts))
        last = float(alpha_bars[math.floor(ts[-1])])  # alpha_bar at (or just above, for a fractional t) the last timestep
        if final_alpha_bar < last:
            raise CourseInputError(
                f"final_alpha_bar={final_alpha_bar:g} is below alpha_bar at the last timestep {ts[-1]} ({last:.6g}): the "
                f"last step would go back towards noise. Use 1.0 (clean data) or alpha_bars[0] (set_alpha_to_one=False).")
        self._timesteps, self._alpha_bars, self._final_alpha_bar = ts, alpha_bars, final_alpha_bar
        self._tables: dict = {}

    def visited(self) -> list:
        """Return the timesteps of the run begin started (ints, or floats where fractional)."""
        self._check_begun()
        return list(self._timesteps)

    def _check_begun(self) -> None:
        if self._timesteps is None:
            raise CourseInputError(f"call {type(self).__name__}.begin(timesteps, alpha_bars) before step (sample does it).")

    def _levels(self, i: int) -> tuple:
        """Return (t, t_next) of step i; t_next = -1 after the last timestep."""
        self._check_begun()
        ts = self._timesteps
        return ts[i], ts[i + 1] if i + 1 < len(ts) else -1

    def _table(self, like: torch.Tensor) -> torch.Tensor:
        """Return alpha_bars with final_alpha_bar appended (index -1), on like's device and in its dtype (cached)."""
        key = (like.device, like.dtype)
        if key not in self._tables:
            ab = self._alpha_bars.to(device=like.device, dtype=like.dtype)
            self._tables[key] = torch.cat([ab, ab.new_tensor([self._final_alpha_bar])])
        return self._tables[key]

    def step(self, model, x: torch.Tensor, i: int, *, generator=None) -> Step:
        raise NotImplementedError
