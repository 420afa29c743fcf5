"""The editing loop: the target prompt sampled from an inversion, alone or beside the source branch; and the round trip.   [nb 07-08]

edit_latents runs DDIM + CFG from an inversion's noisiest latent under the target prompt, alone or
beside the source branch (one UNet batch, CFG_LAYOUT), with an attention controller (prompt-to-prompt)
told the step before each UNet call and a blend (a latent mask, or local blending) applied after
every step. reconstruction measures how well each inversion comes back under the source prompt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

from course_lib import attention, guidance, latent, metrics, noise
from course_lib.editing.checks import check_parts, image_batch, latent_batch, prompt_batch
from course_lib.editing.controllers import AttentionController
from course_lib.editing.inversions import Inversion, InversionSettings, run_inversion
from course_lib.editing.primitives import (ddim_step, guided_eps, image_latents, latent_images, levels,
                                           prompt_embeddings)
from course_lib.validation import CourseInputError

Blend = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]  # (step i, k, source after step, target) -> target


def sample_edit(parts: latent.UNetSystem, inversion: Inversion, cond_tgt: torch.Tensor, g: float, *,
                source_branch: bool = False, controller: AttentionController | None = None,
                blend: Blend | None = None, start: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Return (z0 of the source branch or None, z0 of the target), as edit_latents describes; inputs already checked."""
    steps = levels(parts, inversion.timesteps)
    k = len(steps)
    z_tgt = (inversion.start() if start is None else start).to(parts.device, torch.float32)
    z_src = inversion.start().to(parts.device, torch.float32) if source_branch else None
    two_rows = controller is not None or g > 1.0 or source_branch
    for i, level in enumerate(steps):
        if controller is not None:
            controller.set_step(i, k)
        uncond = inversion.uncond[i]
        if source_branch:  # [uncond; cond] of [source; target] rows: CFG_LAYOUT
            x, unc, cond = torch.cat([z_src, z_tgt]), torch.cat([uncond, uncond]), \
                torch.cat([inversion.source_embeddings, cond_tgt])
        else:
            x, unc, cond = z_tgt, uncond, cond_tgt
        eps = guided_eps(parts, x, level.t, unc, cond, g, both_rows=two_rows)
        step_noise = inversion.noise_maps[i] if inversion.noise_maps is not None else None
        if source_branch:
            eps_src, eps_tgt = eps.chunk(2)
            z_src = ddim_step(parts, level, eps_src, z_src, step_noise)
            if inversion.corrections is not None:
                z_src = z_src + inversion.corrections[i]
        else:
            eps_tgt = eps
        z_tgt = ddim_step(parts, level, eps_tgt, z_tgt, step_noise)
        if inversion.corrections is not None and not source_branch:
            z_tgt = z_tgt + inversion.corrections[i]
        if blend is not None:
            z_tgt = blend(i, k, z_src if source_branch else inversion.source_at(i).to(z_tgt), z_tgt)
    return z_src, z_tgt


def _loop_door(parts, inversion, target_prompt, guidance_scale, blend, start):
    """The door of edit_latents and p2p_latents: check everything; return (target embeddings, g, start)."""
    check_parts(parts)
    g = guidance.check_guidance_scale(guidance_scale)
    if not isinstance(inversion, Inversion):
        raise CourseInputError(f"inversion must be an editing.Inversion (from editing.invert), got {type(inversion).__name__}.")
    first = latent_batch(inversion.start(), parts.unet.config.in_channels, "inversion.start()")
    if len(inversion.uncond) != inversion.num_steps:
        raise CourseInputError(f"inversion.uncond holds {len(inversion.uncond)} embeddings for {inversion.num_steps} "
                               f"timesteps: one per sampling step.")
    if blend is not None and not callable(blend):
        raise CourseInputError("blend must be a callable blend(i, k, source, target) -> target, or None.")
    if start is not None:
        start = latent_batch(start, first.shape[1], "start")
        if start.shape != first.shape:
            raise CourseInputError(f"start must have the inversion's latent shape {tuple(first.shape)}, "
                                   f"got {tuple(start.shape)}.")
    targets = prompt_batch(parts.tokenizer, target_prompt, len(first), "target_prompt")
    return prompt_embeddings(parts, targets), g, start


@torch.no_grad()
def edit_latents(parts: latent.UNetSystem, inversion: Inversion, target_prompt, *, guidance_scale: float = 4.0,
                 source_branch: bool = False, controller: AttentionController | None = None,
                 blend: Blend | None = None, start: torch.Tensor | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Return (z0 of the source branch or None, z0 of the target): DDIM + CFG from the inversion's noisiest latent.   [nb 07-08]

    Each step, the UNet gets one batch: [uncond; cond] rows of the target, or with source_branch the
    four CFG_LAYOUT rows of source and target (prompt-to-prompt's layout), the unconditional rows
    taking inversion.uncond[i]. Edit-friendly inversions step with eta = 1 and their noise maps (both
    branches), the others with DDIM's eta = 0. Direct inversion adds its correction to the source
    branch, or to the target when there is no source branch (so the same prompt reconstructs).
    controller (installed by the caller, e.g. with attention.record_attention) is told the step
    before each UNet call. blend(i, k, source, target) runs after each step; source is the source
    branch, or the inversion's path without one. start: the target's first latent (default the
    inversion's; mask locking starts masked cells from fresh noise).
    """
    cond_tgt, g, start = _loop_door(parts, inversion, target_prompt, guidance_scale, blend, start)
    if controller is not None and not hasattr(controller, "set_step"):
        raise CourseInputError("controller must be an editing.AttentionController (it is told the step), or None.")
    return sample_edit(parts, inversion, cond_tgt, g, source_branch=bool(source_branch), controller=controller,
                       blend=blend, start=start)


def sample_with_controller(parts: latent.UNetSystem, inversion: Inversion, cond_tgt: torch.Tensor,
                           controller: AttentionController, g: float, *, layers=None,
                           blend: Blend | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return sample_edit's (z0_source, z0_target) with the controller installed on `layers`; inputs already checked."""
    with attention.record_attention(parts.unet, controller, layers=layers):
        return sample_edit(parts, inversion, cond_tgt, g, source_branch=True, controller=controller, blend=blend)


@torch.no_grad()
def p2p_latents(parts: latent.UNetSystem, inversion: Inversion, target_prompt, controller: AttentionController, *,
                guidance_scale: float = 4.0, layers=None, blend: Blend | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (z0_source, z0_target): both prompts sampled side by side from the inversion, the controller installed.   [P2P, nb 08]

    The UNet batch is CFG_LAYOUT; layers: processor names to control (default all; the others keep
    theirs). The original processors are restored on exit, also when sampling raises.
    """
    cond_tgt, g, _ = _loop_door(parts, inversion, target_prompt, guidance_scale, blend, None)
    if not isinstance(controller, AttentionController):
        raise CourseInputError(f"controller must be an editing.AttentionController (AttentionReplace, "
                               f"AttentionReweight, ...), got {type(controller).__name__}.")
    return sample_with_controller(parts, inversion, cond_tgt, controller, g, layers=layers, blend=blend)


def noisy_start(first: torch.Tensor, mask: torch.Tensor | None, generator: torch.Generator | None) -> torch.Tensor:
    """Return first with fresh N(0, I) noise inside the latent mask (all of it kept when mask is None); inputs checked."""
    return first if mask is None else torch.where(mask.to(first.device), noise.randn_like(first, generator), first)


def start_latents(inversion: Inversion, mask: torch.Tensor | None = None, generator=None) -> torch.Tensor:
    """Return the target's first latent: the inversion's, with fresh N(0, I) noise inside `mask` (latent size) if given."""
    if not isinstance(inversion, Inversion):
        raise CourseInputError(f"inversion must be an editing.Inversion (from editing.invert), got {type(inversion).__name__}.")
    first = inversion.start()
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                             or torch.broadcast_shapes(mask.shape, first.shape) != first.shape):
        raise CourseInputError(f"mask must be a bool tensor at latent size, broadcastable to {tuple(first.shape)} "
                               f"(True where fresh noise starts).")
    return noisy_start(first, mask, noise.as_generator(generator))


class CallCounter:
    """Count a model's forward calls (the UNet's, the transformer's) with a forward pre-hook (a public torch API), removed on exit."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.calls = model, 0

    def __enter__(self):
        self.handle = self.model.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@torch.no_grad()
def reconstruction(parts: latent.UNetSystem, image: torch.Tensor, prompt, inversions: Sequence[InversionSettings], *,
                   generator: torch.Generator | int | None = None) -> list[dict]:
    """Return, per InversionSettings, how well invert-then-sample under the SAME prompt comes back.   [nb 07]

    Each row: inversion, num_steps, guidance_scale, psnr_db (metrics.psnr of the decoded round trip
    against the VAE's own reconstruction decode(z0), so the VAE's error is left out; images in
    [-1, 1]), latent_rmse, unet_calls (forward calls, inversion and sampling; null-text's backward
    passes come on top, as many as its optimisation steps), seconds. A perfect round trip has
    psnr_db = inf. The rows run in the order given, drawing from one generator (edit_friendly's noise).
    e.g. inversions=[InversionSettings(m, n) for m in INVERSIONS for n in (10, 25, 50)].
    """
    images, _ = image_batch(image, check_parts(parts).vae)
    prompts = prompt_batch(parts.tokenizer, prompt, len(images), "prompt")
    inversions = list(inversions) if isinstance(inversions, (list, tuple)) else None
    if not inversions or not all(isinstance(s, InversionSettings) for s in inversions):
        raise CourseInputError("inversions must be a non-empty list of editing.InversionSettings, e.g. "
                               "[InversionSettings(m, 25) for m in editing.INVERSIONS].")
    generator = noise.as_generator(generator)
    z0 = image_latents(parts, images)
    reference = latent_images(parts, z0)
    cond = prompt_embeddings(parts, prompts)
    rows = []
    for settings in inversions:
        begin = time.perf_counter()
        with CallCounter(parts.unet) as counter:
            inv = run_inversion(parts, z0, prompts, settings, generator)
            _, z = sample_edit(parts, inv, cond, settings.guidance_scale)
        rows.append({"inversion": settings.method, "num_steps": settings.num_steps,
                     "guidance_scale": settings.guidance_scale,
                     "psnr_db": metrics.psnr(latent_images(parts, z), reference),
                     "latent_rmse": float((z - z0).pow(2).mean().sqrt()), "unet_calls": counter.calls,
                     "seconds": time.perf_counter() - begin})
    return rows
