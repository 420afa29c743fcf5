"""Inversion of the flow ODE: an image's latent carried up to noise and back, with Euler, RF-Solver or FireFlow.   [nb 10]

A flow model's sampler integrates dx/dsigma = v(x, sigma, c) (eq. 10.1) from sigma = 1 down to 0. Run the
same ODE up the same grid, from the image's latent z0 at sigma = 0 to sigma = 1, and the end point is a
noise z1 that the sampler carries back to z0: exactly in the limit of small steps (the flow is a
bijection), up to each solver's error on a real grid. One leg of Euler is order 1 (halving h halves its
error), of RF-Solver's Taylor step and FireFlow's reused midpoint order 2 (a quarter). The round trip on
ONE grid does better for the second-order steps: a step and the same step reversed cancel their leading
(h^3) local errors, so invert-then-sample is order 3 (an eighth), Euler's stays order 1 (measured on the
exact velocity of Gaussian-mixture data, tests/test_flow_editing.py). Editing by inversion (Song et al.
2021's recipe, in flows): invert under the source prompt, then sample the target prompt from z1 with
classifier-free guidance.

    flow_invert          z0 -> FlowInversion (the path z(sigma_N = 0) ... z(sigma_0 = 1), and its cost)
    flow_sample          z1 -> z0 under a prompt, CFG at g (the pipeline's Euler loop with solver="euler")
    flow_inversion_edit  invert under the source prompt, sample the target (METHODS["flow_inversion"])
    flow_reconstruction  invert then sample under the SAME prompt: PSNR, NFE and seconds per solver and N
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
import torch

from course_lib import latent, metrics, noise
from course_lib.editing.checks import image_batch, single_or_batch
from course_lib.editing.flow_steps import (AfterStep, GuidedVelocity, Trajectory, branch, check_flow_system,
                                           check_latents, check_scale, check_settings, check_shift, check_solver,
                                           check_steps, edit_door, flow_prompts, flow_sigmas, image_latents, solve)
from course_lib.editing.loop import CallCounter
from course_lib.editing.methods import EditOutput
from course_lib.validation import CourseInputError, check_int


@dataclass(frozen=True)
class FlowInversionSettings:
    """A flow inversion's settings: the solver, the grid (steps, shift) and the CFG scales of both directions.   [nb 10]

    solver: one of SOLVERS ("euler", "rf_solver", "fireflow"), used both ways. num_steps: N of the
    scheduler's grid (at most its num_train_timesteps, checked against the system). shift: the grid's
    timestep shift, None for the scheduler's own. inversion_guidance: the source prompt's CFG scale while
    inverting (1 = its conditional velocity alone; the inverse ODE is the sampler's only at the SAME g).
    guidance_scale: the CFG scale the edit samples the target with: 2, chosen on the 50 development cases
    (shapesedit.DEV_SEED) with the shipped model (flow_inversion: 100 % edited at 30.5 dB locked, against
    26.7 dB at g = 4 and 92 % at g = 6; KV-Edit: 34.5 dB against 33.1). The default solver is FireFlow:
    order 2 at about one transformer call per step, so 16 + 16 steps fit the course's budget of a second
    per edit on one core.
    Checked once, here.
    """

    solver: str = "fireflow"
    num_steps: int = 16
    guidance_scale: float = 2.0
    inversion_guidance: float = 1.0
    shift: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "solver", check_solver(self.solver))
        object.__setattr__(self, "num_steps", check_int(self.num_steps, "num_steps", minimum=1,
                                                        hint="the sigma grid's steps"))
        object.__setattr__(self, "guidance_scale", check_scale(self.guidance_scale, "guidance_scale"))
        object.__setattr__(self, "inversion_guidance", check_scale(self.inversion_guidance, "inversion_guidance"))
        object.__setattr__(self, "shift", check_shift(self.shift))


@dataclass(frozen=True)
class FlowInversion:
    """An inverted latent's path in SAMPLING order: path[i] is z at sigmas[i]; path[0] (sigma 1) starts the edit, path[-1] = z0.

    nfe: transformer evaluations the inversion took (solver_nfe); seconds: its wall time.
    """

    path: list[torch.Tensor]
    sigmas: torch.Tensor
    settings: FlowInversionSettings
    nfe: int
    seconds: float

    def start(self) -> torch.Tensor:
        """The noise z1 = z(sigma_0 = 1) the edit samples from."""
        return self.path[0]


def run_flow_inversion(system: latent.FlowSystem, z0: torch.Tensor, sources: list[str],
                       settings: FlowInversionSettings, *, controller=None) -> FlowInversion:
    """Return the FlowInversion of checked latents under checked prompts: solve eq. 10.1 up the grid (0 -> 1).

    The grid is the sampler's, reversed, so inversion step k covers sampling step N - 1 - k's interval; a
    controller is told that sampling step (KV-Edit's cache pairs the two passes by interval).
    """
    begin = time.perf_counter()
    n = settings.num_steps
    sigmas = flow_sigmas(system, n, settings.shift)
    velocity = GuidedVelocity(system, [branch(system, "source", sources, settings.inversion_guidance)],
                              controller=controller, num_steps=n, step_of=lambda k: n - 1 - k)
    up = solve(velocity, z0.to(system.device, torch.float32), sigmas.flip(0), settings.solver)
    return FlowInversion(up.path[::-1], sigmas, settings, up.nfe, time.perf_counter() - begin)


def sample_latents(system: latent.FlowSystem, start: torch.Tensor, targets: list[str], sigmas: torch.Tensor,
                   settings: FlowInversionSettings, *, after_step: AfterStep | None = None,
                   controller=None) -> Trajectory:
    """Return the Trajectory of checked start latents down the grid under the targets at settings.guidance_scale."""
    velocity = GuidedVelocity(system, [branch(system, "target", targets, settings.guidance_scale)],
                              controller=controller, num_steps=len(sigmas) - 1)
    return solve(velocity, start.to(system.device, torch.float32), sigmas, settings.solver, after_step=after_step)


def _inversion_door(system, latents, prompt, settings, name):
    z0 = check_latents(check_flow_system(system), latents, name)
    check_settings(settings, FlowInversionSettings)
    check_steps(system, settings.num_steps)
    return z0, flow_prompts(system, prompt, len(z0), "prompt")


@torch.no_grad()
def flow_invert(system: latent.FlowSystem, latents: torch.Tensor, prompt,
                settings: FlowInversionSettings = FlowInversionSettings()) -> FlowInversion:
    """Return the FlowInversion of clean latents under the prompt: eq. 10.1 solved from sigma = 0 up to 1.   [nb 10]

    Each step of settings.solver on the sampler's grid reversed, the velocity under the prompt at
    settings.inversion_guidance. Shapes: latents (B, C, h, w); prompt: one, or one per row.
    """
    z0, prompts = _inversion_door(system, latents, prompt, settings, "latents")
    return run_flow_inversion(system, z0, prompts, settings)


@torch.no_grad()
def flow_sample(system: latent.FlowSystem, latents: torch.Tensor, prompt,
                settings: FlowInversionSettings = FlowInversionSettings()) -> torch.Tensor:
    """Return z0 (B, C, h, w): eq. 10.1 solved from the given z1 (sigma = 1) down to 0 under the prompt with CFG.   [nb 10]

    With solver="euler" and shift None this is StableDiffusion3Pipeline's loop for latents=z1 (its
    output_type="latent"); the other solvers take their steps on the same grid.
    """
    z1, prompts = _inversion_door(system, latents, prompt, settings, "latents")
    return sample_latents(system, z1, prompts, flow_sigmas(system, settings.num_steps, settings.shift), settings).end


@torch.no_grad()
def flow_inversion_edit(system: latent.FlowSystem, image: torch.Tensor, source_prompt, target_prompt, *,
                        inversion: FlowInversionSettings = FlowInversionSettings(),
                        generator: torch.Generator | int | None = None) -> EditOutput:
    """Edit by inverting the flow ODE under the source prompt, then sampling the target from its noise.   [nb 10]

    z1 = flow_invert(z0, source) at inversion.inversion_guidance; the target is sampled from z1 at
    inversion.guidance_scale with the same solver and grid. Deterministic (generator is accepted for the
    common signature and unused). Returns EditOutput(image, None): no mask confines the edit.
    Shapes: image (3, H, W) or (B, 3, H, W) in [-1, 1] -> the same shape.
    """
    images, single, sources, targets, _ = edit_door(system, image, source_prompt, target_prompt, generator)
    check_settings(inversion, FlowInversionSettings, "inversion")
    check_steps(system, inversion.num_steps)
    inv = run_flow_inversion(system, image_latents(system, images), sources, inversion)
    z = sample_latents(system, inv.start(), targets, inv.sigmas, inversion).end
    return EditOutput(single_or_batch(system.decode_latents(z), single))


@torch.no_grad()
def flow_reconstruction(system: latent.FlowSystem, image: torch.Tensor, prompt,
                        inversions: Sequence[FlowInversionSettings], *,
                        generator: torch.Generator | int | None = None) -> list[dict]:
    """Return, per FlowInversionSettings, how well invert-then-sample under the SAME prompt comes back.   [nb 10]

    Each row: solver, num_steps, inversion_guidance, guidance_scale, psnr_db (metrics.psnr of the decoded
    round trip against the VAE's own reconstruction decode(z0), images in [-1, 1]; inf when exact),
    latent_rmse, nfe (transformer forward calls, counted by a hook: inversion and sampling), seconds.
    The round trip is exact only in the limit of small steps and at guidance_scale = inversion_guidance.
    e.g. inversions=[FlowInversionSettings(s, n, guidance_scale=1.0) for s in SOLVERS for n in (4, 8, 16)].
    generator: accepted for the common signature (the round trip draws nothing).
    """
    images, _ = image_batch(image, check_flow_system(system).vae)
    noise.as_generator(generator)
    prompts = flow_prompts(system, prompt, len(images), "prompt")
    inversions = list(inversions) if isinstance(inversions, (list, tuple)) else None
    if not inversions or not all(isinstance(s, FlowInversionSettings) for s in inversions):
        raise CourseInputError("inversions must be a non-empty list of editing.FlowInversionSettings, e.g. "
                               "[FlowInversionSettings(s, 16) for s in editing.SOLVERS].")
    for settings in inversions:
        check_steps(system, settings.num_steps)
    z0 = image_latents(system, images)
    reference = system.decode_latents(z0)
    rows = []
    for settings in inversions:
        begin = time.perf_counter()
        with CallCounter(system.transformer) as counter:
            inv = run_flow_inversion(system, z0, prompts, settings)
            z = sample_latents(system, inv.start(), prompts, inv.sigmas, settings).end
        rows.append({"solver": settings.solver, "num_steps": settings.num_steps,
                     "inversion_guidance": settings.inversion_guidance, "guidance_scale": settings.guidance_scale,
                     "psnr_db": metrics.psnr(system.decode_latents(z), reference),
                     "latent_rmse": float((z - z0).pow(2).mean().sqrt()), "nfe": counter.calls,
                     "seconds": time.perf_counter() - begin})
    return rows
