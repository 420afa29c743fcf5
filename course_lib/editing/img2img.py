"""SDEdit (Meng et al. 2022, "img2img"): noise the image's latent to a strength in one jump, denoise under the target.   [nb 07]"""

from __future__ import annotations

import torch

from course_lib import guidance, latent, noise, samplers, schedules
from course_lib.editing.checks import (check_edit_window, check_parts, check_strength, image_batch, prompt_batch,
                                       single_or_batch)
from course_lib.editing.primitives import (alpha_bars, guided_denoiser, image_latents, latent_images,
                                           prompt_embeddings, strength_timesteps)
from course_lib.validation import check_positive_int


@torch.no_grad()
def sdedit(parts: latent.UNetSystem, image: torch.Tensor, source_prompt, target_prompt, *, strength: float = 0.6,
           guidance_scale: float = 4.0, num_steps: int = 25, negative_prompt: str = "",
           generator: torch.Generator | int | None = None, sampler="ddim") -> torch.Tensor:
    """Edit by noising to a strength and denoising under the target prompt: z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps.   [SDEdit, nb 07]

    As StableDiffusionImg2ImgPipeline (same numbers for the same seed): z0 is drawn from the VAE's
    posterior with `generator`, then eps with `generator`, t = the first of edit_timesteps(num_steps,
    strength), then the sampler (DDIM by default; any of samplers.SAMPLERS) + CFG over the remaining
    steps. The source prompt is not used (SDEdit does not know what the image shows); it is there so
    every method has one signature. strength 0 gives the VAE reconstruction (the pipeline fails there);
    a strength > 0 whose window holds no step (int(num_steps * strength) = 0) is refused.
    Shapes: image (3, H, W) or (B, 3, H, W) in [-1, 1] -> the same shape.
    """
    images, single = image_batch(image, check_parts(parts).vae)
    b = len(images)
    sampler = samplers.get_sampler(sampler)
    num_steps = check_positive_int(num_steps, "num_steps")
    strength = check_strength(strength)
    if strength > 0:  # strength 0 is the VAE reconstruction, on purpose
        check_edit_window(num_steps, strength)
    g = guidance.check_guidance_scale(guidance_scale)
    prompt_batch(parts.tokenizer, source_prompt, b, "source_prompt")
    targets = prompt_batch(parts.tokenizer, target_prompt, b, "target_prompt")
    negatives = prompt_batch(parts.tokenizer, negative_prompt, b, "negative_prompt")
    generator = noise.as_generator(generator)

    timesteps = strength_timesteps(num_steps, strength, sampler)
    cond, uncond = prompt_embeddings(parts, targets), prompt_embeddings(parts, negatives)
    z = image_latents(parts, images, generator=generator, sample_mode="sample")
    if len(timesteps):
        ab = alpha_bars(parts)
        z = schedules.q_sample(z, int(timesteps[0]), ab, noise.randn_like(z, generator))
        ending = {"final_alpha_bar": parts.final_alpha_bar} if isinstance(sampler, samplers.DDIM) else {}  # only DDIM reads it
        z = samplers.sample(guided_denoiser(parts, g, uncond, cond), z, timesteps, sampler, alpha_bars=ab,
                            generator=generator, **ending).x0
    return single_or_batch(latent_images(parts, z), single)
