"""The latent system's steps that editing composes: timesteps, the prompt and image encoders, the UNet, a DDIM step.   [nb 06-08]

Stable Diffusion's pipeline names these steps encode_prompt, prepare_latents (an image encoded by
the VAE), the UNet call, scheduler.step and decode_latents; the latent system (course_lib.latent)
holds each of them once, with the scheduler's noise table built at construction. Editing runs the
model parts only through this module (the controllers install attention processors on the UNet,
nothing more), and this module only through the system's steps:

    edit_timesteps / strength_timesteps   the scheduler's timesteps, the last int(N * strength)
    start_timestep                        the first of them in closed form, eq. (7.2)
    embed / prompt_embeddings             encode_prompt: prompts -> (B, L, D)
    encode_image / image_latents          the VAE encoder, scaled: images -> (B, C, h, w)
    decode_latents / latent_images        the VAE decoder: latents -> images in [-1, 1]
    alpha_bars                            the scheduler's float32 alphas_cumprod (parts.alpha_bars, read once)
    unet_eps / guided_denoiser / guided_eps   the UNet's eps, alone or under classifier-free guidance
    Level, levels, ddim_step              one DDIM step between two of the scheduler's noise levels

The doors (edit_timesteps, embed, encode_image, decode_latents) check their inputs; the other
functions take what the editing functions have already checked.

Conventions (the system's scheduler: latent.SCHEDULER_CONFIG, as StableDiffusionPipeline with the course's DDIMScheduler):
SD 1.5's "leading" spacing with steps_offset = 1, so timesteps k*(T//N) + 1; DDIM with eta = 0 on the
scheduler's float32 alphas_cumprod; the last step lands on alphas_cumprod[0] (set_alpha_to_one =
False); the CFG batch is [unconditional rows; conditional rows], and for g <= 1 the pipeline turns
CFG off (conditional rows alone), as here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib import guidance, latent, noise, samplers
from course_lib.editing.checks import (check_edit_window, check_parts, check_strength, image_batch, latent_batch,
                                       prompt_batch)
from course_lib.validation import check_choice, check_int, check_positive_int

SPACING = latent.SCHEDULER_CONFIG["timestep_spacing"]  # "leading", as Stable Diffusion 1.5
STEPS_OFFSET = latent.SCHEDULER_CONFIG["steps_offset"]  # 1


# ----------------------------------------------------------------------------------------------
# The scheduler: timesteps and its noise table
# ----------------------------------------------------------------------------------------------

def strength_timesteps(num_steps: int, strength: float, sampler: samplers.Sampler | None = None,
                       num_train_steps: int | None = None) -> torch.Tensor:
    """Return the last int(N * strength) of the sampler's (default DDIM's) N timesteps, descending; inputs already checked."""
    sampler = samplers.DDIM() if sampler is None else sampler
    num_train_steps = latent.SCHEDULE.num_steps if num_train_steps is None else num_train_steps
    timesteps = sampler.timesteps(num_train_steps, num_steps, SPACING, offset=STEPS_OFFSET)
    kept = min(int(num_steps * strength), num_steps)
    return timesteps[num_steps - kept:]


def edit_timesteps(num_steps: int, strength: float = 1.0, num_train_steps: int | None = None,
                   sampler="ddim") -> torch.Tensor:
    """Return the timesteps an edit of `strength` runs: the last int(N * strength) of the sampler's N steps.   [nb 07]

    As StableDiffusionImg2ImgPipeline.get_timesteps: strength 1 runs all N steps from noise,
    strength 0.5 the last half (starting at about t = T/2); strength 0 none (an empty tensor).
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    strength = check_strength(strength)
    if num_train_steps is not None:
        num_train_steps = check_int(num_train_steps, "num_train_steps", minimum=num_steps)
    return strength_timesteps(num_steps, strength, samplers.get_sampler(sampler), num_train_steps)


def start_timestep(num_steps: int, strength: float, num_train_steps: int | None = None) -> int:
    """Return an edit's first timestep t0 = (int(N s) - 1) * (T // N) + 1, SD's leading spacing with offset 1.   [eq. 7.2, nb 07]

    Closed form of edit_timesteps(num_steps, strength)[0] (StableDiffusionImg2ImgPipeline.get_timesteps):
    when N s is a whole number and N divides T, t0 = s T - T / N + 1, one step's width below s T.
    A strength whose window holds no step (int(N s) = 0) is refused.
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    strength = check_strength(strength)
    check_edit_window(num_steps, strength)
    num_train_steps = (latent.SCHEDULE.num_steps if num_train_steps is None
                       else check_int(num_train_steps, "num_train_steps", minimum=num_steps))
    kept = min(int(num_steps * strength), num_steps)  # int(), as the pipeline: floor for a positive product
    return (kept - 1) * (num_train_steps // num_steps) + STEPS_OFFSET


def alpha_bars(parts: latent.UNetSystem) -> torch.Tensor:
    """Return the scheduler's float32 alphas_cumprod on the parts' device: the system's table, read once (parts.alpha_bars)."""
    return parts.alpha_bars


# ----------------------------------------------------------------------------------------------
# Encoders and decoder: the system's own steps
# ----------------------------------------------------------------------------------------------

def prompt_embeddings(parts: latent.UNetSystem, prompts: list[str]) -> torch.Tensor:
    """Return the embeddings (B, L, D) the UNet cross-attends to, of checked prompts (parts.encode_prompt)."""
    return parts.encode_prompt(prompts)["encoder_hidden_states"].to(parts.dtype)


def embed(parts: latent.UNetSystem, prompts) -> torch.Tensor:
    """Return the prompt embeddings (B, L, D) the UNet cross-attends to (parts.encode_prompt, as the SD pipeline)."""
    return prompt_embeddings(check_parts(parts), prompt_batch(parts.tokenizer, prompts, None, "prompts"))


def image_latents(parts: latent.UNetSystem, images: torch.Tensor, *, generator=None,
                  sample_mode: str = "argmax") -> torch.Tensor:
    """Return scaled latents (float32) of checked images (B, 3, H, W): the posterior mean ('argmax') or a draw ('sample')."""
    return parts.encode_image(images, generator=generator, sample_mode=sample_mode)


def encode_image(parts: latent.UNetSystem, images: torch.Tensor, *, generator=None,
                 sample_mode: str = "argmax") -> torch.Tensor:
    """Return scaled latents (float32) of images (B, 3, H, W): the posterior mean ('argmax') or a draw ('sample', as img2img)."""
    images, _ = image_batch(images, check_parts(parts).vae)
    check_choice(sample_mode, ("sample", "argmax"), "sample_mode")
    return image_latents(parts, images, generator=noise.as_generator(generator), sample_mode=sample_mode)


def latent_images(parts: latent.UNetSystem, latents: torch.Tensor) -> torch.Tensor:
    """Return images decoder(latents / scaling_factor) clamped to [-1, 1], float32 on the CPU (parts.decode_latents)."""
    return parts.decode_latents(latents)


def decode_latents(parts: latent.UNetSystem, latents: torch.Tensor) -> torch.Tensor:
    """Return images decoder(latents / scaling_factor) clamped to [-1, 1], float32 on the CPU."""
    return latent_images(parts, latent_batch(latents, check_parts(parts).vae.config.latent_channels))


# ----------------------------------------------------------------------------------------------
# The UNet and one DDIM step
# ----------------------------------------------------------------------------------------------

def unet_eps(parts: latent.UNetSystem, x: torch.Tensor, t: int, context: torch.Tensor) -> torch.Tensor:
    """Return eps(x, t, context) for every row, float32, the UNet run in its own dtype (parts.predict)."""
    return parts.predict(x, int(t), {"encoder_hidden_states": context})


def guided_denoiser(parts: latent.UNetSystem, g: float, uncond: torch.Tensor, cond: torch.Tensor, *,
                    both_rows: bool = False):
    """Return denoiser(x, t) -> eps_u + g (eps_c - eps_u) on [x; x] (guidance.cfg_denoiser, SD's layout); eps_c alone when g <= 1."""
    return guidance.cfg_denoiser(parts, g, {"encoder_hidden_states": cond}, {"encoder_hidden_states": uncond},
                                 pipeline_convention=True, both_rows=both_rows)


def guided_eps(parts: latent.UNetSystem, x: torch.Tensor, t: int, uncond: torch.Tensor, cond: torch.Tensor, g: float,
               both_rows: bool = False) -> torch.Tensor:
    """Return guided_denoiser's eps at step t for the rows of x (float32)."""
    return guided_denoiser(parts, g, uncond, cond, both_rows=both_rows)(x.float(), t)


@dataclass(frozen=True)
class Level:
    """One sampling step: t, the step it lands on (-1 after the last) and their alpha_bars."""

    t: int
    t_prev: int
    ab_t: torch.Tensor
    ab_prev: torch.Tensor


def levels(parts: latent.UNetSystem, timesteps: torch.Tensor) -> list[Level]:
    """Return the Level of each sampling step through `timesteps` (descending); the last lands on the final alpha_bar."""
    ab = parts.alpha_bars
    final = torch.tensor(parts.final_alpha_bar, dtype=ab.dtype, device=ab.device)
    ts = [int(t) for t in timesteps]
    out = []
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out.append(Level(t, t_prev, ab[t], ab[t_prev] if t_prev >= 0 else final))
    return out


def ddim_step(parts: latent.UNetSystem, level: Level, eps: torch.Tensor, z: torch.Tensor,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """Take one DDIM step (samplers.ddim_step, the system's final alpha_bar): eta = 0, or eta = 1 with the given noise."""
    eta = 0.0 if noise is None else 1.0
    return samplers.ddim_step(eps, z, level.t, level.t_prev, parts.alpha_bars, eta=eta,
                              final_alpha_bar=parts.final_alpha_bar, noise=noise).x_prev
