"""The latent system's steps that editing composes: timesteps, the prompt and image encoders, the UNet, a DDIM step.   [nb 06-08]

Stable Diffusion's pipeline names these steps encode_prompt, prepare_latents (an image encoded by
the VAE), the UNet call, scheduler.step and decode_latents. Editing runs the model parts only
through this module (the controllers install attention processors on the UNet, nothing more), so
that all of it can be routed to the latent system in one place:

    edit_timesteps / strength_timesteps   the scheduler's timesteps, the last int(N * strength)
    embed / prompt_embeddings             encode_prompt: prompts -> (B, L, D)
    encode_image / image_latents          the VAE encoder, scaled: images -> (B, C, h, w)
    decode_latents / latent_images        the VAE decoder: latents -> images in [-1, 1]
    alpha_bars                            the scheduler's float32 alphas_cumprod, built ONCE per device
    unet_eps / guided_denoiser / guided_eps   the UNet's eps, alone or under classifier-free guidance
    Level, levels, ddim_step              one DDIM step between two of the scheduler's noise levels

The doors (edit_timesteps, embed, encode_image, decode_latents) check their inputs; the other
functions take what the editing functions have already checked.

Conventions (text2image.SCHEDULER_CONFIG, as StableDiffusionPipeline with the course's DDIMScheduler):
SD 1.5's "leading" spacing with steps_offset = 1, so timesteps k*(T//N) + 1; DDIM with eta = 0 on the
scheduler's float32 alphas_cumprod; the last step lands on alphas_cumprod[0] (set_alpha_to_one =
False); the CFG batch is [unconditional rows; conditional rows], and for g <= 1 the pipeline turns
CFG off (conditional rows alone), as here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from course_lib import guidance, models, noise, samplers, text, text2image
from course_lib import vae as vae_lib
from course_lib.editing.checks import check_parts, check_strength, image_batch, latent_batch, prompt_batch
from course_lib.validation import check_choice, check_int, check_positive_int

SPACING = text2image.SCHEDULER_CONFIG["timestep_spacing"]  # "leading", as Stable Diffusion 1.5
STEPS_OFFSET = text2image.SCHEDULER_CONFIG["steps_offset"]  # 1


# ----------------------------------------------------------------------------------------------
# The scheduler: timesteps and its noise table
# ----------------------------------------------------------------------------------------------

def strength_timesteps(num_steps: int, strength: float, sampler: samplers.Sampler | None = None,
                       num_train_steps: int | None = None) -> torch.Tensor:
    """Return the last int(N * strength) of the sampler's (default DDIM's) N timesteps, descending; inputs already checked."""
    sampler = samplers.DDIM() if sampler is None else sampler
    num_train_steps = text2image.SCHEDULE.num_steps if num_train_steps is None else num_train_steps
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


@functools.cache
def _noise_table(device: str) -> torch.Tensor:
    return text2image.scheduler_alpha_bars().to(device)


def alpha_bars(parts: text2image.Parts) -> torch.Tensor:
    """Return the scheduler's float32 alphas_cumprod on the parts' device, built once per device (do not modify it)."""
    return _noise_table(str(parts.device))


# ----------------------------------------------------------------------------------------------
# Encoders and decoder
# ----------------------------------------------------------------------------------------------

def prompt_embeddings(parts: text2image.Parts, prompts: list[str]) -> torch.Tensor:
    """Return the embeddings (B, L, D) the UNet cross-attends to, of checked prompts (text.encode_prompt)."""
    return text.encode_prompt(prompts, parts.tokenizer, parts.text_encoder, device=parts.device).to(parts.unet.dtype)


def embed(parts: text2image.Parts, prompts) -> torch.Tensor:
    """Return the prompt embeddings (B, L, D) the UNet cross-attends to (text.encode_prompt, as the SD pipeline)."""
    return prompt_embeddings(check_parts(parts), prompt_batch(parts.tokenizer, prompts, None, "prompts"))


@torch.no_grad()
def image_latents(parts: text2image.Parts, images: torch.Tensor, *, generator=None,
                  sample_mode: str = "argmax") -> torch.Tensor:
    """Return scaled latents (float32) of checked images (B, 3, H, W): the posterior mean ('argmax') or a draw ('sample')."""
    vae = parts.vae
    return vae_lib.encode(vae, images.to(parts.device, next(vae.parameters()).dtype), generator=generator,
                          sample_mode=sample_mode).float()


def encode_image(parts: text2image.Parts, images: torch.Tensor, *, generator=None,
                 sample_mode: str = "argmax") -> torch.Tensor:
    """Return scaled latents (float32) of images (B, 3, H, W): the posterior mean ('argmax') or a draw ('sample', as img2img)."""
    images, _ = image_batch(images, check_parts(parts).vae)
    check_choice(sample_mode, ("sample", "argmax"), "sample_mode")
    return image_latents(parts, images, generator=noise.as_generator(generator), sample_mode=sample_mode)


@torch.no_grad()
def latent_images(parts: text2image.Parts, latents: torch.Tensor) -> torch.Tensor:
    """Return images decoder(latents / scaling_factor) clamped to [-1, 1], float32 on the CPU, of checked latents."""
    vae = parts.vae
    return vae_lib.decode(vae, latents.to(next(vae.parameters()).dtype)).float().clamp(-1, 1).cpu()


def decode_latents(parts: text2image.Parts, latents: torch.Tensor) -> torch.Tensor:
    """Return images decoder(latents / scaling_factor) clamped to [-1, 1], float32 on the CPU."""
    return latent_images(parts, latent_batch(latents, check_parts(parts).vae.config.latent_channels))


# ----------------------------------------------------------------------------------------------
# The UNet and one DDIM step
# ----------------------------------------------------------------------------------------------

def unet_eps(parts: text2image.Parts, x: torch.Tensor, t: int, context: torch.Tensor) -> torch.Tensor:
    """Return eps(x, t, context) for every row, float32, the UNet run in its own dtype."""
    t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    return models.model_output(parts.unet, x.to(parts.unet.dtype), t_batch,
                               encoder_hidden_states=context.to(parts.unet.dtype)).float()


def guided_denoiser(parts: text2image.Parts, g: float, uncond: torch.Tensor, cond: torch.Tensor, *,
                    both_rows: bool = False):
    """Return denoiser(x, t) -> eps_u + g (eps_c - eps_u) on [x; x] (guidance.cfg_denoiser, SD's layout); eps_c alone when g <= 1."""
    return guidance.cfg_denoiser(parts.unet, g, {"encoder_hidden_states": cond}, {"encoder_hidden_states": uncond},
                                 pipeline_convention=True, both_rows=both_rows)


def guided_eps(parts: text2image.Parts, x: torch.Tensor, t: int, uncond: torch.Tensor, cond: torch.Tensor, g: float,
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


def levels(parts: text2image.Parts, timesteps: torch.Tensor) -> list[Level]:
    """Return the Level of each sampling step through `timesteps` (descending); the last lands on alpha_bars[0]."""
    ab = alpha_bars(parts)
    ts = [int(t) for t in timesteps]
    out = []
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out.append(Level(t, t_prev, ab[t], ab[t_prev] if t_prev >= 0 else ab[0]))
    return out


def ddim_step(parts: text2image.Parts, level: Level, eps: torch.Tensor, z: torch.Tensor,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """Take one DDIM step (samplers.ddim_step, SD's final alpha_bar): eta = 0, or eta = 1 with the given noise."""
    ab = alpha_bars(parts)
    eta = 0.0 if noise is None else 1.0
    return samplers.ddim_step(eps, z, level.t, level.t_prev, ab, eta=eta, final_alpha_bar=float(ab[0]),
                              noise=noise).x_prev

