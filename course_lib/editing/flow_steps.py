"""The flow family's steps that flow editing composes: doors, the sigma grid, batched guided velocities, ODE solvers.   [SD3, nb 10]

A latent.FlowSystem (Stable Diffusion 3's family) predicts the velocity v = eps - x0 of the straight path
x_sigma = (1 - sigma) x0 + sigma eps, so an image is the end of the ODE

    dx/dsigma = v(x, sigma, c)                                                            (10.1)

integrated from sigma = 1 (noise) down to 0 on the scheduler's grid sigma_0 = 1 > ... > sigma_N = 0
(system.schedule). The pipeline takes Euler steps x' = x + (sigma' - sigma) v. The same ODE integrated
UP the same grid (0 -> 1) inverts an image; flow inversion is the choice of the solver:

    "euler"      x' = x + h v(x, s)                                        1 NFE per step, order 1
    "rf_solver"  x' = x + h v + h^2 / 2 v',                                2 NFE per step, order 2
                 v' = (v(x + h/2 v, s + h/2) - v) / (h / 2)   (RF-Solver, Wang et al. 2024: the second-order
                 Taylor expansion of (10.1) with the derivative by a finite difference; algebraically the
                 explicit midpoint rule x' = x + h v_mid)
    "fireflow"   x' = x + h v_mid with v_mid = v(x + h/2 v~, s + h/2), v~ the PREVIOUS step's v_mid
                 (FireFlow, Deng et al. 2024: a midpoint step whose first velocity is reused)   N + 1 NFE, order 2
with h = sigma' - sigma (negative when sampling, positive when inverting). The orders are one leg's; a
second-order step undone by the same step reversed cancels its h^3 local error, so their invert-then-sample
round trip is order 3 (flow_inversion's docstring).

GuidedVelocity evaluates v for several branches (source and target latents, each with its own prompt and
CFG scale) in ONE transformer call per step: rows [uncond; cond] per branch, branches in order, the
unconditional rows only where g > 1 (StableDiffusion3Pipeline's convention: g <= 1 runs the conditional
velocity alone). The flow methods (flow_inversion, flow_edits, flow_attention) build on these.

Legend: sigma, s (noise level, 1 = noise), h (a step in sigma), x, z (latents), v (velocity eps - x0),
g (CFG scale, diffusers' convention), N (steps), NFE (transformer calls).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_lib import guidance, latent, noise
from course_lib.editing.checks import UNET_METHODS, image_batch, latent_batch, prompt_batch
from course_lib.editing.tokens import check_edit_prompts
from course_lib.validation import CourseInputError, check_choice, check_float_tensor, check_int, check_number

SOLVERS = ("euler", "rf_solver", "fireflow")

Velocity = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (x, sigma, step) -> v = dx/dsigma
AfterStep = Callable[[int, torch.Tensor], torch.Tensor]  # (step, x after it) -> x


# ----------------------------------------------------------------------------------------------
# Doors: the system, its scheduler's grid, prompts, scales
# ----------------------------------------------------------------------------------------------

def check_flow_system(system, name: str = "system") -> latent.FlowSystem:
    """Return system if it is a latent.FlowSystem whose scheduler gives plain Euler sigmas, else raise saying what to use."""
    if isinstance(system, latent.UNetSystem):
        raise CourseInputError(
            f"{name} is a latent.UNetSystem: an eps-predicting UNet (Stable Diffusion 1.x's family). The flow editing "
            f"methods integrate a velocity v = eps - x0 and need a latent.FlowSystem (SD3's family: an "
            f"SD3Transformer2DModel with a FlowMatchEulerDiscreteScheduler). For a UNetSystem use the UNet methods: "
            f"editing.METHODS {', '.join(UNET_METHODS)}.")
    if not isinstance(system, latent.FlowSystem):
        raise CourseInputError(f"{name} must be a latent.FlowSystem(transformer, vae, tokenizer, text_encoder, tokenizer_2, "
                               f"text_encoder_2, scheduler), got {type(system).__name__}.")
    config = system.scheduler.config
    if config.get("use_dynamic_shifting", False):
        raise CourseInputError("the system's scheduler uses dynamic shifting (use_dynamic_shifting=True, FLUX's): its "
                               "sigmas depend on the image's token count (mu) and no grid can be set from a step count "
                               "alone. Build FlowMatchEulerDiscreteScheduler(shift=...) without it.")
    if config.get("stochastic_sampling", False):
        raise CourseInputError("the system's scheduler samples stochastically (stochastic_sampling=True): flow editing "
                               "integrates the ODE dx/dsigma = v. Build the scheduler with stochastic_sampling=False.")
    return system


def check_steps(system: latent.FlowSystem, num_steps) -> int:
    """Return num_steps as an int if the scheduler can take it (1 .. num_train_timesteps), else raise."""
    return check_int(num_steps, "num_steps", minimum=1, maximum=system.num_train_timesteps,
                     hint="the sigma grid's steps, at most the scheduler's num_train_timesteps")


def check_shift(shift) -> float | None:
    """Return the grid's timestep shift (None = the scheduler's own) if it is a finite number > 0, else raise."""
    if shift is None:
        return None
    return check_number(shift, "shift", low=0, low_open=True,
                        hint="sigma' = shift sigma / (1 + (shift - 1) sigma): 1 = the plain grid, SD3 uses 3.0")


def check_scale(value, name: str = "guidance_scale") -> float:
    """Return a CFG scale g >= 1 (1 = the conditional velocity alone, as the pipeline runs every g <= 1), else raise."""
    guidance.check_guidance_scale(value, name)
    return check_number(value, name, low=1, hint="1 = the conditional velocity alone (no CFG), SD3 samples at 7")


def flow_sigmas(system: latent.FlowSystem, num_steps: int, shift: float | None = None) -> torch.Tensor:
    """Return the N-step grid sigma_0 = 1 > ... > sigma_N = 0 (N + 1,) float32: system.schedule's, or with another shift.

    The scheduler's own rule (FlowMatchEulerDiscreteScheduler.set_timesteps), with `shift` put in its config
    when given; inputs already checked.
    """
    if shift is None or shift == system.shift:
        return system.schedule(num_steps)[1]
    scheduler = type(system.scheduler).from_config(system.scheduler.config, shift=shift)
    scheduler.set_timesteps(num_steps, device="cpu")
    return scheduler.sigmas.float().to(system.device)


def flow_prompts(system: latent.FlowSystem, prompts, batch: int | None, name: str) -> list[str]:
    """Return one prompt per image after checking that each fits both tokenizers (the transformer's text length)."""
    out = prompt_batch(system.tokenizer, prompts, batch, name)
    if system.tokenizer_2 is not system.tokenizer:
        prompt_batch(system.tokenizer_2, out, None, name)
    return out


def edit_door(system, image, source_prompt, target_prompt, generator):
    """The checks every flow edit shares: (images (B, 3, H, W), was_single, sources, targets, generator)."""
    images, single = image_batch(image, check_flow_system(system).vae)
    sources = flow_prompts(system, source_prompt, len(images), "source_prompt")
    targets = flow_prompts(system, target_prompt, len(images), "target_prompt")
    check_edit_prompts(system.tokenizer, sources, targets)
    return images, single, sources, targets, noise.as_generator(generator)


def check_settings(value, cls: type, name: str = "settings"):
    """Return value if it is a `cls` (a frozen settings dataclass), else raise naming it."""
    if not isinstance(value, cls):
        raise CourseInputError(f"{name} must be an editing.{cls.__name__}, got {type(value).__name__}.")
    return value


# ----------------------------------------------------------------------------------------------
# Velocities of several branches in one transformer call
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Branch:
    """One branch of the batched call: its name, its condition (system.encode_prompt rows), and CFG (uncond, g)."""

    name: str
    cond: dict
    uncond: dict | None = None
    scale: float = 1.0

    @property
    def guided(self) -> bool:
        return self.scale > 1.0


class GuidedVelocity:
    """v(x, sigma) of the stacked branches [x_1; x_2; ...] (B rows each) with ONE transformer call.   [CFG eq. 6.4, nb 10]

    The batch is [uncond; cond] per guided branch, [cond] per unguided one, branches in order; `blocks`
    names its B-row blocks ("source.cond", "target.uncond", ...), which attention controllers read.
    Each branch's velocity is guidance.cfg_combine(v_u, v_c, g). controller (a joint-attention control,
    installed by the caller) is told the step before each call: controller.set_step(step_of(i), N).
    repeat: each branch holds `repeat` draws of its B latents, tiled ([all B of draw 1; all B of draw 2;
    ...]), and its conditions are tiled alike. calls counts the transformer calls. Inputs already checked.
    """

    def __init__(self, system: latent.FlowSystem, branches: list[Branch], *, controller=None,
                 num_steps: int = 1, step_of: Callable[[int], int] | None = None, repeat: int = 1):
        self.system, self.branches, self.controller = system, list(branches), controller
        self.num_steps, self.step_of, self.calls = num_steps, step_of or (lambda i: i), 0
        blocks, rows = [], []
        for branch in self.branches:
            for kind, condition in (("uncond", branch.uncond), ("cond", branch.cond)):
                if kind == "cond" or branch.guided:
                    blocks.append(f"{branch.name}.{kind}")
                    rows.append({k: torch.cat([v] * repeat) for k, v in condition.items()})  # tiled, as x's draws
        self.blocks = tuple(blocks)
        self.condition = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}

    def __call__(self, x: torch.Tensor, sigma, step: int = 0) -> torch.Tensor:
        if self.controller is not None:
            self.controller.set_step(self.step_of(step), self.num_steps)
            self.controller.blocks = self.blocks
        parts = x.chunk(len(self.branches))
        inputs = [p for p, b in zip(parts, self.branches) for _ in range(2 if b.guided else 1)]
        out = self.system.predict(torch.cat(inputs), self.system.timestep(sigma), self.condition).float()
        self.calls += 1
        chunks, velocities = list(out.chunk(len(inputs))), []
        for branch in self.branches:
            if branch.guided:
                v_u, v_c = chunks.pop(0), chunks.pop(0)
                velocities.append(guidance.cfg_combine(v_u, v_c, branch.scale))
            else:
                velocities.append(chunks.pop(0))
        return torch.cat(velocities)


def branch(system: latent.FlowSystem, name: str, prompts: list[str], scale: float) -> Branch:
    """Return the Branch of checked prompts at CFG scale g (the unconditional rows encode "", as the pipeline)."""
    cond = system.encode_prompt(prompts)
    return Branch(name, cond, system.encode_prompt([""] * len(prompts)) if scale > 1.0 else None, scale)


# ----------------------------------------------------------------------------------------------
# The ODE solvers
# ----------------------------------------------------------------------------------------------

@dataclass
class Trajectory:
    """A solved ODE: path[i] is x at sigmas[i] (path[0] the start), nfe the velocity evaluations it took."""

    path: list[torch.Tensor]
    sigmas: torch.Tensor
    nfe: int

    @property
    def end(self) -> torch.Tensor:
        return self.path[-1]


def check_solver(solver) -> str:
    """Return solver if it is one of SOLVERS, else raise naming them."""
    return check_choice(solver, SOLVERS, "solver")


def solve(velocity: Velocity, x: torch.Tensor, sigmas: torch.Tensor, solver: str = "euler", *,
          after_step: AfterStep | None = None) -> Trajectory:
    """Integrate dx/dsigma = velocity(x, sigma, i) along the grid `sigmas` (either direction).   [eq. 10.1; RF-Solver; FireFlow]

    Step i goes from sigmas[i] to sigmas[i + 1], h = sigmas[i + 1] - sigmas[i]; the solvers as the module
    docstring writes them; every evaluation inside step i is told i. after_step(i, x) may change x after
    each step (reset rows to a path, lock cells). Inputs already checked (solve_ode is the door).
    """
    path, nfe, reused = [x], 0, None
    for i in range(len(sigmas) - 1):
        s, h = sigmas[i], sigmas[i + 1] - sigmas[i]
        if solver == "fireflow" and reused is not None:
            v = reused  # FireFlow: the previous step's midpoint velocity stands for v(x, s)
        else:
            v = velocity(x, s, i)
            nfe += 1
        if solver == "euler":
            x = x + h * v
        else:
            v_mid = velocity(x + h / 2 * v, s + h / 2, i)
            nfe += 1
            if solver == "rf_solver":
                dv = (v_mid - v) / (h / 2)  # dv/dsigma by a finite difference
                x = x + h * v + h**2 / 2 * dv
            else:
                x = x + h * v_mid
            reused = v_mid
        if after_step is not None:
            x = after_step(i, x)
        path.append(x)
    return Trajectory(path, sigmas, nfe)


def solve_ode(velocity: Velocity, x: torch.Tensor, sigmas, solver: str = "euler") -> Trajectory:
    """Integrate dx/dsigma = velocity(x, sigma, step) along a monotone grid with one of SOLVERS; return the Trajectory.   [eq. 10.1]

    velocity: any callable (a trained system's GuidedVelocity, or an exact field for a check). sigmas: a
    1-D increasing (inversion) or decreasing (sampling) grid of at least 2 values in [0, 1].
    """
    check_float_tensor(x, "x")
    if not isinstance(sigmas, torch.Tensor):
        sigmas = torch.as_tensor(sigmas, dtype=x.dtype)
    check_float_tensor(sigmas, "sigmas")
    if sigmas.ndim != 1 or len(sigmas) < 2 or not torch.isfinite(sigmas).all() or sigmas.min() < 0 or sigmas.max() > 1:
        raise CourseInputError(f"sigmas must be a 1-D grid of at least 2 noise levels in [0, 1], got shape "
                               f"{tuple(sigmas.shape)}.")
    steps = sigmas[1:] - sigmas[:-1]
    if not ((steps > 0).all() or (steps < 0).all()):
        raise CourseInputError("sigmas must be strictly increasing (inversion) or strictly decreasing (sampling).")
    if not callable(velocity):
        raise CourseInputError("velocity must be a callable velocity(x, sigma, step) -> dx/dsigma.")
    return solve(velocity, x, sigmas, check_solver(solver))


def solver_nfe(solver: str, num_steps: int) -> int:
    """Return the velocity evaluations `solver` takes for num_steps steps: N (euler), 2N (rf_solver), N + 1 (fireflow)."""
    return {"euler": num_steps, "rf_solver": 2 * num_steps, "fireflow": num_steps + 1}[check_solver(solver)]


def image_latents(system: latent.FlowSystem, images: torch.Tensor) -> torch.Tensor:
    """Return the scaled latents (B, C, h, w) float32 of checked images: the VAE posterior mean (system.encode_image)."""
    return system.encode_image(images)


def check_latents(system: latent.FlowSystem, latents, name: str = "latents") -> torch.Tensor:
    """Return latents if they are a finite (B, C, h, w) batch with the transformer's channels, else raise."""
    return latent_batch(latents, system.transformer.config.in_channels, name)
