"""The course's one sampling loop: any Sampler, or any step function, from x_T to x_0.   [notebooks 02, 03b]"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from course_lib import noise as noise_lib
from course_lib import posterior
from course_lib.samplers.ancestral import DDIM, DDPM
from course_lib.samplers.base import Sampler, Step
from course_lib.samplers.ode import DPMSolverPP2M, Euler, Heun
from course_lib.samplers.timesteps import timestep_list
from course_lib.validation import CourseInputError, check_finite, check_float_tensor

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
    return SAMPLERS[sampler.lower()](**options)


@dataclass
class SampleOutput:
    """The final sample, and (when kept) every x_t visited and every x0_hat, first to last."""

    x0: torch.Tensor
    trajectory: list[torch.Tensor] = field(default_factory=list)
    x0_hats: list[torch.Tensor] = field(default_factory=list)


@torch.no_grad()
def sample(model: Callable[[torch.Tensor, int], torch.Tensor], x_T: torch.Tensor, timesteps: Sequence[int],
           step, *, alpha_bars: torch.Tensor | None = None, final_alpha_bar: float = 1.0, generator=None,
           keep_trajectory: bool = False, callback: Callable[[int, int, Step], None] | None = None,
           progress: bool = False) -> SampleOutput:
    """Run the reverse process from x_T through `timesteps` with any sampler or step function.   [DDPM Alg. 2 / DDIM, nb 02]

    model(xt, t) returns the model output at step t. `step` is a Sampler (or its name), with the schedule's
    alpha_bars and final_alpha_bar, where its last step lands (1.0: clean data; see Sampler.begin); or a step
    function such as functools.partial(samplers.ddim_step, alpha_bars=alpha_bars, eta=0.0), called as
    step(model(x, t), x, t, t_prev) and given its table itself; the step after t is looked up in `timesteps`,
    and after the last one it is -1. generator: a torch.Generator or an int seed. Shapes: x_T (B, ...); returns
    SampleOutput with x0 (B, ...).
    """
    check_float_tensor(x_T, "x_T")
    check_finite(x_T, "x_T")
    if not callable(model):
        raise CourseInputError(f"model must be a callable model(x_t, t) -> output, got {type(model).__name__}. "
                               f"For a trained network, pass models.as_denoiser(model).")
    if posterior.model_prediction_type(model) == "flow":
        raise CourseInputError("this model predicts a flow-matching velocity (config.prediction_type='flow'), not eps: "
                               "the diffusion samplers would read it wrongly. Sample it with course_lib.flow.generate.")
    generator = noise_lib.as_generator(generator)
    if callback is not None and not callable(callback):
        raise CourseInputError(f"callback must be a function callback(i, t, step_output), got {type(callback).__name__}.")
    if isinstance(step, (str, Sampler)):
        solver = get_sampler(step)
        if alpha_bars is None:
            raise CourseInputError(f"sampling with {solver!r} needs alpha_bars (the schedule's table).")
        solver.begin(timesteps, alpha_bars, final_alpha_bar)
        visited = solver.visited()

        def advance(i, t, t_prev, x):
            return solver.step(model, x, i, generator=generator)
    elif callable(step):
        if alpha_bars is not None or final_alpha_bar != 1.0:
            raise CourseInputError("alpha_bars and final_alpha_bar are for a Sampler (or its name); a step function takes "
                                   "its own, e.g. functools.partial(samplers.ddim_step, alpha_bars=alpha_bars, "
                                   "final_alpha_bar=...).")
        visited = timestep_list(timesteps)

        def advance(i, t, t_prev, x):
            return step(model(x, t), x, t, t_prev, generator=generator)
    else:
        raise CourseInputError(f"step must be a samplers.Sampler, a sampler's name ({', '.join(SAMPLERS)}) or a step "
                               f"function such as samplers.ddim_step, got {type(step).__name__}.")
    out = SampleOutput(x0=x_T)
    x = x_T
    if keep_trajectory:
        out.trajectory.append(x)
    steps = enumerate(visited)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, total=len(visited), desc="sampling")
    for i, t in steps:
        t_prev = visited[i + 1] if i + 1 < len(visited) else -1
        result = advance(i, t, t_prev, x)
        x = result.x_prev
        if keep_trajectory:
            out.trajectory.append(x)
            out.x0_hats.append(result.x0_hat)
        if callback is not None:
            callback(i, t, result)
    out.x0 = x
    return out
