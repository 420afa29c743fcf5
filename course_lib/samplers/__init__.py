"""Sampling: the inference timesteps, one DDPM or DDIM step, the ODE solvers, and one loop that runs any of them.   [notebooks 02, 03b]

Legend, code name -> symbol:
    model_output   what the network predicts: eps_hat, x0_hat or v_hat (prediction_type)
    xt, x_prev     x_t and x_{t_prev}
    t, t_prev      the current step and the one the step lands on; t_prev = -1 is the end of sampling
                   (alpha_bar = final_alpha_bar: 1.0, clean data, unless diffusers' set_alpha_to_one=False)
    eta            DDIM's eta: 0 deterministic, 1 the DDPM-like ancestral variance
    noise          the z ~ N(0, I) a stochastic step adds; drawn from `generator` when not given
    sigma          in the ODE solvers, Karras' sigma = sqrt((1 - ab) / ab) (karras_sigma)

A step function has the signature step(model_output, xt, t, t_prev, ..., generator=None) -> Step,
and `sample` runs any of them, or any Sampler; the previous step is looked up from the timestep array,
never computed by stride arithmetic (which is wrong for "linspace" and for trailing spacings that do
not divide the number of training steps).

The sections, one file each:
    timesteps   inference_timesteps (diffusers' three spacings), previous_timestep
    base        Step and the Sampler interface (begin checks a run once; its steps trust it)
    ancestral   ddpm_step, ddim_step, ddim_sigma, and the DDPM and DDIM samplers   [nb 02]
    ode         Euler, Heun, DPM-Solver++(2M) (their sigma, karras_sigma, lives in schedules)   [nb 03b]
    loop        get_sampler, SAMPLERS, SampleOutput and sample, the one sampling loop
"""

from course_lib.samplers.ancestral import VARIANCE_TYPES, DDIM, DDPM, ddim_sigma, ddim_step, ddpm_step
from course_lib.samplers.base import Sampler, Step
from course_lib.samplers.loop import SAMPLERS, SampleOutput, get_sampler, sample
from course_lib.samplers.ode import DPMSolverPP2M, Euler, Heun
from course_lib.schedules import karras_sigma  # Karras' sigma of a schedule; the ODE solvers' variable
from course_lib.samplers.timesteps import SPACINGS, fractional_linspace, inference_timesteps, previous_timestep
from course_lib.validation import CourseInputError

__all__ = ["CourseInputError", "DDIM", "DDPM", "SAMPLERS", "SPACINGS", "VARIANCE_TYPES", "DPMSolverPP2M", "Euler", "Heun", "SampleOutput",
           "Sampler", "Step", "ddim_sigma", "ddim_step", "ddpm_step", "fractional_linspace", "get_sampler",
           "inference_timesteps", "karras_sigma", "previous_timestep", "sample"]
