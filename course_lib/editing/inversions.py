"""Inversions: a source latent's path to noise, and what the sampler needs to come back along it under guidance.   [nb 07]

    "ddim"             deterministic DDIM run backwards under the source prompt (Song et al. 2021,
                       sec. 4.3; = diffusers' DDIMInverseScheduler). Exact only at g = 1 and small
                       steps: guided sampling follows eps_u + g (eps_c - eps_u), another field.
    "negative_prompt"  the same path; sampling puts the source prompt's embedding where CFG wants the
                       unconditional one (Miyake et al. 2023), so the source comes back as at g = 1.
    "null_text"        the same path; the unconditional embedding is optimised at every step so that
                       guided DDIM lands on the path's next latent (Mokady et al. 2023): k x N extra
                       forward and backward passes.
    "direct"           the same path; after each guided step the source branch is moved back onto it
                       by the step's own error, recorded once (Ju et al. 2024, "PnP Inversion").
    "edit_friendly"    DDPM noise maps: independent forward noisings x_t, then the per-step noises z_t
                       that make the stochastic (eta = 1) sampler retrace them exactly under guidance
                       (Huberman-Spiegelglas et al. 2024).

InversionSettings holds an inversion's choices (which one, steps, strength, guidance, null-text's
knobs), checked once when it is built; invert() makes an Inversion from clean latents.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from course_lib import guidance, latent, noise, samplers, schedules
from course_lib.editing.checks import (check_edit_window, check_parts, check_strength, latent_batch, prompt_batch)
from course_lib.editing.primitives import (Level, alpha_bars, ddim_step, guided_eps, levels, prompt_embeddings,
                                           strength_timesteps, unet_eps)
from course_lib.validation import CourseInputError, check_choice, check_int, check_number, check_positive_int

INVERSIONS = ("ddim", "negative_prompt", "null_text", "direct", "edit_friendly")


def check_inversion_method(method) -> str:
    """Return method if it is one of INVERSIONS, else raise naming them."""
    return check_choice(method, INVERSIONS, "inversion")


@dataclass(frozen=True)
class InversionSettings:
    """An inversion's settings: which inversion, its steps, strength and guidance, and null-text's knobs.   [nb 07]

    method: one of INVERSIONS. num_steps: the scheduler's N. strength: the share of the N steps the
    edit redoes (the path climbs to the noise level of step int(N * strength); 1 = pure noise); a
    window of no step is refused. guidance_scale: the g the edit samples with (null_text, direct and
    edit_friendly depend on it). null_text_steps, null_text_lr, null_text_tolerance: null-text
    inversion's Adam steps per sampling step, learning rate and early-stop threshold (Mokady et al.
    2023). sampler: 'ddim' (eta = 0) only: editing retraces the inversion's path with the sampler
    that made it (edit_friendly's noise maps are its eta = 1 variant); editing.sdedit takes any.
    Checked once, here; the editing functions take it on trust.
    """

    method: str = "ddim"
    num_steps: int = 25
    strength: float = 1.0
    guidance_scale: float = 4.0
    null_text_steps: int = 10
    null_text_lr: float = 1e-2
    null_text_tolerance: float = 1e-5
    sampler: str | samplers.Sampler = "ddim"

    OPTION_NAMES: ClassVar[dict[str, str]] = {"inversion": "method"}  # the methods registry's flat names

    def __post_init__(self):
        def keep(name, value):
            object.__setattr__(self, name, value)

        keep("method", check_inversion_method(self.method))
        keep("num_steps", check_positive_int(self.num_steps, "num_steps"))
        keep("strength", check_strength(self.strength))
        check_edit_window(self.num_steps, self.strength)
        keep("guidance_scale", guidance.check_guidance_scale(self.guidance_scale))
        keep("null_text_steps", check_int(self.null_text_steps, "null_text_steps", minimum=1,
                                          hint="null-text inversion's Adam steps per sampling step"))
        keep("null_text_lr", check_number(self.null_text_lr, "null_text_lr", low=0, low_open=True,
                                          hint="null-text inversion's Adam learning rate"))
        keep("null_text_tolerance", check_number(self.null_text_tolerance, "null_text_tolerance", low=0, low_open=True,
                                                 hint="null-text inversion's early-stop threshold"))
        chosen = samplers.get_sampler(self.sampler)
        if not isinstance(chosen, samplers.DDIM) or chosen.eta != 0:
            raise CourseInputError(f"inversions run DDIM (eta = 0) backwards and editing retraces that path, so sampler "
                                   f"must be 'ddim'; {chosen!r} would take another path and not come back to the image. "
                                   f"editing.sdedit takes any sampler.")

    @property
    def timesteps(self) -> torch.Tensor:
        """The k = int(num_steps * strength) sampling timesteps of the edit, descending."""
        return strength_timesteps(self.num_steps, self.strength)


def ddim_inverse_step(eps: torch.Tensor, z: torch.Tensor, ab_from: torch.Tensor, ab_to: torch.Tensor) -> torch.Tensor:
    """Take one DDIM step toward noise: z' = sqrt(ab_to) x0_hat + sqrt(1 - ab_to) eps.   [DDIM eq. 12 reversed, nb 07]

    x0_hat = (z - sqrt(1 - ab_from) eps) / sqrt(ab_from): z sits at alpha_bar ab_from, z' at ab_to < ab_from.
    The same formula as a sampling step with the two noise levels exchanged; eps is evaluated at
    the current z and the NEXT (noisier) timestep, the approximation eps(z_t, t) ~ eps(z_{t_prev}, t)
    that makes inversion inexact (its error shrinks with the step size).
    """
    x0_hat = (z - torch.sqrt(1 - ab_from) * eps) / torch.sqrt(ab_from)
    return torch.sqrt(ab_to) * x0_hat + torch.sqrt(1 - ab_to) * eps


def ddim_path(parts: latent.UNetSystem, z0: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor, g: float,
              timesteps: torch.Tensor) -> list[torch.Tensor]:
    """Return [z_0, z_{t_1}, ..., z_{t_k}]: DDIM backwards through `timesteps` (descending, as sampling visits them)."""
    ab = alpha_bars(parts)
    z = z0.to(parts.device, torch.float32)
    out, ab_from = [z], ab[0]
    for t in timesteps.flip(0).tolist():  # ascending: toward noise
        z = ddim_inverse_step(guided_eps(parts, z, t, uncond, cond, g), z, ab_from, ab[t])
        out.append(z)
        ab_from = ab[t]
    return out


@torch.no_grad()
def ddim_invert(parts: latent.UNetSystem, latents: torch.Tensor, prompt, *, num_steps: int = 25,
                guidance_scale: float = 1.0, strength: float = 1.0, negative_prompt: str = "") -> list[torch.Tensor]:
    """Return [z_0, z_{t_1}, ..., z_{t_k}]: DDIM run backwards from clean latents toward noise under `prompt`.   [DDIM sec. 4.3, nb 07]

    t_1 < ... < t_k are edit_timesteps(num_steps, strength) in reverse (SD's schedule), z_0 sits at
    alpha_bars[0] (where sampling ends). Sampling from z_{t_k} through the same timesteps under the
    same prompt and g = 1 comes back to z_0 up to the inversion's error. guidance_scale > 1 inverts
    under CFG (an inexact inversion; see the module docstring). As diffusers' DDIMInverseScheduler.
    Shapes: latents (B, C, h, w) -> k + 1 tensors (B, C, h, w).
    """
    z0 = latent_batch(latents, check_parts(parts).unet.config.in_channels)
    num_steps = check_positive_int(num_steps, "num_steps")
    strength = check_strength(strength)
    check_edit_window(num_steps, strength)
    g = guidance.check_guidance_scale(guidance_scale)
    b = len(z0)
    cond = prompt_embeddings(parts, prompt_batch(parts.tokenizer, prompt, b, "prompt"))
    uncond = prompt_embeddings(parts, prompt_batch(parts.tokenizer, negative_prompt, b, "negative_prompt"))
    return ddim_path(parts, z0, cond, uncond, g, strength_timesteps(num_steps, strength))


@dataclass
class Inversion:
    """A source latent's path to noise, and what the sampler needs to retrace it under guidance.   [nb 07]

    latents: [z_0, z_{t_1}, ..., z_{t_k}], clean to noisiest (B, C, h, w) each. timesteps: the k
    sampling timesteps, descending (t_k first). Per sampling step i (in sampling order, i = 0 at t_k):
    uncond[i] the embedding CFG's unconditional rows get (B, L, D); corrections[i] (direct inversion)
    what is added to the source branch after the step; noise_maps[i] (edit-friendly) the z of the
    stochastic step. guidance_scale: the g it was made for. unet_calls and seconds: its cost.
    """

    method: str
    latents: list[torch.Tensor]
    timesteps: torch.Tensor
    source_embeddings: torch.Tensor
    uncond: list[torch.Tensor]
    guidance_scale: float
    corrections: list[torch.Tensor] | None = None
    noise_maps: list[torch.Tensor] | None = None
    unet_calls: int = 0
    seconds: float = 0.0

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def start(self) -> torch.Tensor:
        """The latent sampling starts from: the path's noisiest point."""
        return self.latents[-1]

    def source_at(self, i: int) -> torch.Tensor:
        """The source latent after sampling step i (where the path says the source is at t_prev)."""
        return self.latents[self.num_steps - 1 - i]


def _null_text_steps(parts, path, steps: list[Level], cond, empty, settings: InversionSettings, counter):
    """Null-text inversion's inner loop (Mokady et al. 2023, Alg. 1): per step, Adam on the unconditional embedding.

    The gradient is taken for the embedding alone (torch.autograd.grad): the UNet's weights get none, so a
    Stable Diffusion UNet (860 M parameters) neither spends half its backward pass on them nor keeps their
    .grad (3.4 GB in float32) after the inversion. The embedding and Adam's moments are float32 whatever the
    UNet's dtype (call_model casts it for the UNet): float16 cannot hold Adam's eps = 1e-8.
    """
    g, k = settings.guidance_scale, len(steps)
    uncond, null = [], empty.float()
    z = path[-1]
    for i, level in enumerate(steps):
        target = path[k - 1 - i]
        eps_c = unet_eps(parts, z, level.t, cond)
        null = null.detach().clone()
        null.requires_grad_(True)
        optimiser = torch.optim.Adam([null], lr=settings.null_text_lr * (1.0 - i / 100.0))  # the paper's schedule, 50 steps
        for _ in range(settings.null_text_steps):
            with torch.enable_grad():
                eps_u = unet_eps(parts, z, level.t, null)
                reached = ddim_step(parts, level, guidance.cfg_combine(eps_u, eps_c, g), z)
                loss = F.mse_loss(reached, target)
                (null.grad,) = torch.autograd.grad(loss, [null])
                optimiser.step()
            counter[0] += 2  # one forward and one backward pass
            if loss.item() < settings.null_text_tolerance * (1 + 2 * i):  # the paper's early stop, looser later on
                break
        null = null.detach()
        uncond.append(null.to(empty.dtype))
        z = ddim_step(parts, level, guidance.cfg_combine(unet_eps(parts, z, level.t, null), eps_c, g), z)
        counter[0] += 2
    return uncond


def run_inversion(parts: latent.UNetSystem, z0: torch.Tensor, prompts: list[str], settings: InversionSettings,
                  generator: torch.Generator | None) -> Inversion:
    """Return the Inversion of checked latents (B, C, h, w) under checked prompts (one per row), as invert() describes."""
    start = time.perf_counter()
    timesteps = settings.timesteps
    steps = levels(parts, timesteps)
    b, k, g = len(z0), len(steps), settings.guidance_scale
    cond, empty = prompt_embeddings(parts, prompts), prompt_embeddings(parts, [""] * b)
    z0 = z0.to(parts.device, torch.float32)
    counter = [0]
    corrections = noise_maps = None
    if settings.method == "edit_friendly":
        ab = alpha_bars(parts)
        noisy = {lv.t: schedules.q_sample(z0, lv.t, ab, noise.randn_like(z0, generator)) for lv in steps}
        path = [z0] + [noisy[lv.t] for lv in reversed(steps)]
        noise_maps = []
        for i, level in enumerate(steps):
            x_t, x_prev = path[k - i], path[k - 1 - i]
            eps = guided_eps(parts, x_t, level.t, empty, cond, g)
            counter[0] += 1
            mean = ddim_step(parts, level, eps, x_t, noise=torch.zeros_like(x_t))
            sigma = samplers.ddim_sigma(level.ab_t, level.ab_prev, 1.0)
            noise_maps.append((x_prev - mean) / sigma)
        uncond = [empty] * k
    else:
        path = ddim_path(parts, z0, cond, empty, 1.0, timesteps)
        counter[0] += k
        if settings.method == "negative_prompt":
            uncond = [cond] * k
        elif settings.method == "null_text":
            uncond = _null_text_steps(parts, path, steps, cond, empty, settings, counter)
        else:
            uncond = [empty] * k
        if settings.method == "direct":
            corrections = []
            for i, level in enumerate(steps):
                z_t = path[k - i]
                reached = ddim_step(parts, level, guided_eps(parts, z_t, level.t, empty, cond, g), z_t)
                corrections.append(path[k - 1 - i] - reached)
                counter[0] += 1
    return Inversion(settings.method, path, timesteps, cond, uncond, g, corrections, noise_maps, counter[0],
                     time.perf_counter() - start)


@torch.no_grad()
def invert(parts: latent.UNetSystem, latents: torch.Tensor, prompt, settings: InversionSettings = InversionSettings(),
           *, generator: torch.Generator | int | None = None) -> Inversion:
    """Return an Inversion of clean latents under the source prompt, by settings.method (one of INVERSIONS).   [nb 07]

    ddim / negative_prompt / null_text / direct share the DDIM path of ddim_invert (g = 1); they
    differ in what sampling at settings.guidance_scale needs to come back along it:
      ddim             uncond = ""                    (the plain path; guidance drifts off it)
      negative_prompt  uncond = the source prompt     (Miyake et al. 2023; no extra cost)
      null_text        uncond optimised per step: null_text_steps Adam steps at null_text_lr until the
                       step's error is below null_text_tolerance (Mokady et al. 2023)
      direct           uncond = "", and corrections[i] = path[t_prev] - guided step from path[t]: what
                       puts the source branch back on the path (Ju et al. 2024; k extra CFG calls)
      edit_friendly    x_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps_t with independent eps_t (from
                       `generator`, a torch.Generator or an int seed), and noise_maps
                       z_i = (x_{t_prev} - mu(x_t)) / sigma_t of the eta = 1 sampler under guidance
                       (Huberman-Spiegelglas et al. 2024)
    Shapes: latents (B, C, h, w); prompt: one, or one per row.
    """
    z0 = latent_batch(latents, check_parts(parts).unet.config.in_channels)
    if not isinstance(settings, InversionSettings):
        raise CourseInputError(f"settings must be an editing.InversionSettings (e.g. InversionSettings('direct', "
                               f"num_steps=25)), got {type(settings).__name__}.")
    prompts = prompt_batch(parts.tokenizer, prompt, len(z0), "prompt")
    return run_inversion(parts, z0, prompts, settings, noise.as_generator(generator))
