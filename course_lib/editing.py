"""Locked-image editing: SDEdit, DDIM inversion, prompt-to-prompt and mask locking.   [notebooks 07-08]

Given an image x, its caption (the source prompt) and a target prompt that differs in a few words,
change what the words change and keep everything else. Four methods, each a step closer to a lock:

1. SDEdit (Meng et al. 2022, "img2img"): encode x to z0, noise it to a strength s in one jump,
   z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps, and denoise under the target prompt with CFG. Small s
   keeps the image and ignores the prompt; large s follows the prompt and forgets the image.
   `sdedit` equals diffusers' StableDiffusionImg2ImgPipeline step for step (tests/test_editing.py).
2. DDIM inversion (Song et al. 2021, sec. 4.3; Mokady et al. 2023): run deterministic DDIM backwards
   from z0 to noise under the source prompt, then forward under the target prompt. With g = 1 the
   round trip reconstructs z0 up to an error that shrinks with the step size. With CFG (g > 1) it
   does not: inversion follows eps(z, c) while sampling follows eps_u + g (eps_c - eps_u), another
   vector field, and its errors are amplified by g. Remedy here: negative-prompt inversion (Miyake
   et al. 2023): sample with the SOURCE prompt's embedding in place of the unconditional "", so
   that for the source prompt eps_c + g (eps_c - eps_c) = eps_c, the g = 1 field the inversion used.
   Cost: nothing beyond the inversion's k UNet calls (null-text inversion adds k x 10 optimisation
   steps, each a forward and a backward pass through the UNet).
3. Prompt-to-prompt (Hertz et al. 2023): source and target are generated side by side from the same
   z_T; inside an edit window of the steps, the target's cross-attention maps are replaced by the
   source's (word swap), so the layout stays and only the swapped word's content changes; or one
   word's maps are scaled (re-weighting). Controllers are diffusers attention processors installed
   by layer name (attention.record_attention, which restores the originals on exit); the sampling
   loop tells the controller the step (set_step), nothing counts calls.
4. Mask locking (DiffEdit, Couairon et al. 2023, and latent blending, Avrahami et al. 2023): a mask
   where the noise predictions for the two prompts differ (or a user mask); at every step, outside
   the mask the latents are replaced by the inverted source's latents at that step, so that outside
   the mask the final latent IS the source latent and the pixels differ only by the VAE's error.

Conventions shared with text2image.generate_latents and StableDiffusionPipeline with the course's
DDIMScheduler (pipeline.SCHEDULER_CONFIG: SD 1.5's "leading" spacing, steps_offset = 1,
set_alpha_to_one = False, clip_sample = False): timesteps k*(T//N) + 1, DDIM with eta = 0 on the
scheduler's float32 alphas_cumprod (pipeline.alpha_bars()), the last step lands on alphas_cumprod[0];
the CFG batch sent to the UNet is [unconditional rows; conditional rows], and for g <= 1 the
pipeline turns CFG off (conditional rows alone), as here.

Batch layout of prompt-to-prompt (explicit, CFG_LAYOUT): the latents hold rows [source; target]
(B each), the UNet gets them twice, so its 4B rows are

    [uncond_src (B), uncond_tgt (B), cond_src (B), cond_tgt (B)]

and an attention probability tensor (4B, heads, N, L) views as (2 [uncond, cond], 2 [src, tgt],
B, heads, N, L). Controllers edit the conditional target rows only, as the original code does.

Every method has one signature, so a benchmark can call them alike (METHODS):

    method(parts, image, source_prompt, target_prompt, *, <method options>, generator=None)
        image (3, H, W) or (B, 3, H, W) in [-1, 1] -> edited image(s), same shape, in [-1, 1]
"""

from __future__ import annotations

import difflib
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from course_lib import attention, models, pipeline, samplers, schedules, text, text2image
from course_lib import vae as vae_lib
from course_lib.guidance import cfg_combine
from course_lib.validation import CourseInputError, check_float_tensor, check_positive_int

SPACING = pipeline.SCHEDULER_CONFIG["timestep_spacing"]  # "leading", as Stable Diffusion 1.5
STEPS_OFFSET = pipeline.SCHEDULER_CONFIG["steps_offset"]  # 1
CFG_LAYOUT = ("uncond_src", "uncond_tgt", "cond_src", "cond_tgt")  # rows of the prompt-to-prompt UNet batch


# ----------------------------------------------------------------------------------------------
# Checks, schedule and the pieces every method shares
# ----------------------------------------------------------------------------------------------

def check_strength(strength) -> float:
    """Return strength as a float if it lies in [0, 1] (0 keeps the image, 1 starts from pure noise), else raise."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= float(strength) <= 1:
        raise CourseInputError(f"strength must be a number in [0, 1] (the share of the denoising steps to redo: "
                               f"0 keeps the image, 1 starts from noise), got {strength!r}.")
    return float(strength)


def check_window(window, name: str = "window") -> tuple[float, float]:
    """Return (start, end), fractions of the sampling steps with 0 <= start <= end <= 1, else raise."""
    try:
        start, end = (float(v) for v in window)
    except (TypeError, ValueError):
        raise CourseInputError(f"{name} must be a pair (start, end) of fractions of the steps, e.g. (0.0, 0.8); "
                               f"got {window!r}.") from None
    if not 0 <= start <= end <= 1:
        raise CourseInputError(f"{name} must satisfy 0 <= start <= end <= 1 (fractions of the steps), got {window!r}.")
    return start, end


def _images(image, vae) -> tuple[torch.Tensor, bool]:
    """Return (images (B, C, H, W), was_single) after checking shape, range and size against the VAE."""
    check_float_tensor(image, "image")
    single = image.ndim == 3
    images = image[None] if single else image
    if images.ndim != 4 or images.shape[0] == 0:
        raise CourseInputError(f"image must be (3, H, W) or (B, 3, H, W), got shape {tuple(image.shape)}.")
    return vae_lib.check_images(images, vae), single


def _prompts(prompts, batch: int, name: str) -> list[str]:
    prompts = text._as_prompts(prompts)
    if len(prompts) == 1:
        return prompts * batch
    if len(prompts) != batch:
        raise CourseInputError(f"{name}: give one prompt, or one per image ({batch}); got {len(prompts)}.")
    return prompts


def edit_timesteps(num_steps: int, strength: float = 1.0, num_train_steps: int | None = None) -> torch.Tensor:
    """Return the timesteps an edit of `strength` runs: the last int(N * strength) of the N sampling steps.   [nb 07]

    As StableDiffusionImg2ImgPipeline.get_timesteps: strength 1 runs all N steps from noise,
    strength 0.5 the last half (starting at about t = T/2); strength 0 none.
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    strength = check_strength(strength)
    num_train_steps = text2image.SCHEDULE.num_steps if num_train_steps is None else num_train_steps
    timesteps = samplers.inference_timesteps(num_train_steps, num_steps, SPACING, offset=STEPS_OFFSET)
    kept = min(int(num_steps * strength), num_steps)
    return timesteps[num_steps - kept:]


def embed(parts: text2image.Parts, prompts) -> torch.Tensor:
    """Return the prompt embeddings (B, L, D) the UNet cross-attends to (text.encode_prompt, as the SD pipeline)."""
    return text.encode_prompt(prompts, parts.tokenizer, parts.text_encoder, device=parts.device).to(parts.unet.dtype)


@torch.no_grad()
def encode_image(parts: text2image.Parts, images: torch.Tensor, *, generator=None,
                 sample_mode: str = "argmax") -> torch.Tensor:
    """Return scaled latents (float32) of images (B, 3, H, W): the posterior mean ('argmax') or a draw ('sample', as img2img)."""
    vae = parts.vae
    z = vae_lib.encode(vae, images.to(parts.device, next(vae.parameters()).dtype), generator=generator,
                       sample_mode=sample_mode)
    return z.float()


@torch.no_grad()
def decode_latents(parts: text2image.Parts, latents: torch.Tensor) -> torch.Tensor:
    """Return images decoder(latents / scaling_factor) clamped to [-1, 1], float32 on the CPU."""
    vae = parts.vae
    return vae_lib.decode(vae, latents.to(next(vae.parameters()).dtype)).float().clamp(-1, 1).cpu()


def _alpha_bars(parts) -> torch.Tensor:
    """The scheduler's float32 alphas_cumprod, as text2image.generate_latents and the pipelines use."""
    return pipeline.alpha_bars().to(parts.device)


def _guided_denoiser(parts, uncond: torch.Tensor, cond: torch.Tensor, guidance_scale: float, *,
                     timesteps=None, controller=None):
    """Return model(x, t) -> eps_u + g (eps_c - eps_u) for latents x (R rows), prompts cond/uncond (R rows each).

    The UNet gets [x; x] with context [uncond; cond] (SD's layout). With g <= 1 and no controller only
    the conditional rows run (the pipeline turns CFG off there). A controller is told the step index of t
    (controller.set_step) before each UNet call. Latents stay float32; the UNet runs in its own dtype.
    """
    g = text2image.check_guidance_scale(guidance_scale)
    unet = parts.unet
    index = {} if timesteps is None else {int(t): i for i, t in enumerate(timesteps)}
    num_steps = len(index)
    do_cfg = g > 1.0
    run_both = controller is not None or do_cfg
    context = torch.cat([uncond, cond]) if run_both else cond

    def denoiser(x: torch.Tensor, t: int) -> torch.Tensor:
        if controller is not None:
            controller.set_step(index[int(t)], num_steps)
        x_in = (torch.cat([x, x]) if run_both else x).to(unet.dtype)
        t_batch = torch.full((x_in.shape[0],), int(t), dtype=torch.long, device=x.device)
        eps = models.model_output(unet, x_in, t_batch, encoder_hidden_states=context).to(x.dtype)
        if not run_both:
            return eps
        eps_u, eps_c = eps.chunk(2)
        return cfg_combine(eps_u, eps_c, g) if do_cfg else eps_c

    return denoiser


def _ddim(parts, x_T, timesteps, denoiser, *, step_wrapper=None) -> torch.Tensor:
    """Run DDIM (eta 0, final alpha_bar = alpha_bars[0]) through `timesteps` with samplers.sample; return z_0."""
    ab = _alpha_bars(parts)
    step = functools.partial(samplers.ddim_step, alpha_bars=ab, eta=0.0, final_alpha_bar=float(ab[0]))
    if step_wrapper is not None:
        step = step_wrapper(step)
    if len(timesteps) == 0:
        return x_T
    return samplers.sample(denoiser, x_T.float(), timesteps, step).x0


def _output(images: torch.Tensor, single: bool) -> torch.Tensor:
    return images[0] if single else images


def _randn(shape, generator, like: torch.Tensor) -> torch.Tensor:
    """Draw N(0, I) on the generator's device (the CPU without one), as diffusers' randn_tensor, then move it."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


# ----------------------------------------------------------------------------------------------
# 1. SDEdit / img2img
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def sdedit(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *, strength: float = 0.6,
           guidance_scale: float = 4.0, num_steps: int = 25, negative_prompt: str = "",
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Edit by noising to a strength and denoising under the target prompt: z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps.   [SDEdit, nb 07]

    As StableDiffusionImg2ImgPipeline (same numbers for the same seed): z0 is drawn from the VAE's
    posterior with `generator`, then eps with `generator`, t = the first of edit_timesteps(num_steps,
    strength), then DDIM + CFG over the remaining steps. The source prompt is not used (SDEdit does
    not know what the image shows); it is there so every method has one signature. strength 0 gives
    the VAE reconstruction (the pipeline fails there).
    """
    images, single = _images(image, parts.vae)
    timesteps = edit_timesteps(num_steps, strength)
    g = text2image.check_guidance_scale(guidance_scale)
    b = len(images)
    cond = embed(parts, _prompts(target_prompt, b, "target_prompt"))
    uncond = embed(parts, [negative_prompt] * b)
    z0 = encode_image(parts, images, generator=generator, sample_mode="sample")
    if len(timesteps) == 0:
        return _output(decode_latents(parts, z0), single)
    noise = _randn(z0.shape, generator, z0)
    z_t = schedules.q_sample(z0, int(timesteps[0]), _alpha_bars(parts), noise)
    z = _ddim(parts, z_t, timesteps, _guided_denoiser(parts, uncond, cond, g))
    return _output(decode_latents(parts, z), single)


# ----------------------------------------------------------------------------------------------
# 2. DDIM inversion
# ----------------------------------------------------------------------------------------------

def ddim_inverse_step(eps: torch.Tensor, z: torch.Tensor, ab_from: torch.Tensor, ab_to: torch.Tensor) -> torch.Tensor:
    """Take one DDIM step toward noise: z' = sqrt(ab_to) x0_hat + sqrt(1 - ab_to) eps.   [DDIM eq. 12 reversed, nb 07]

    x0_hat = (z - sqrt(1 - ab_from) eps) / sqrt(ab_from): z sits at alpha_bar ab_from, z' at ab_to < ab_from.
    The same formula as a sampling step with the two noise levels exchanged; eps is evaluated at
    the current z and the NEXT (noisier) timestep, the approximation eps(z_t, t) ~ eps(z_{t_prev}, t)
    that makes inversion inexact (its error shrinks with the step size).
    """
    x0_hat = (z - torch.sqrt(1 - ab_from) * eps) / torch.sqrt(ab_from)
    return torch.sqrt(ab_to) * x0_hat + torch.sqrt(1 - ab_to) * eps


@torch.no_grad()
def ddim_invert(parts: text2image.Parts, latents: torch.Tensor, prompt, *, num_steps: int = 25,
                guidance_scale: float = 1.0, strength: float = 1.0, negative_prompt: str = "") -> list[torch.Tensor]:
    """Return [z_0, z_{t_1}, ..., z_{t_k}]: DDIM run backwards from clean latents toward noise under `prompt`.   [DDIM sec. 4.3, nb 07]

    t_1 < ... < t_k are edit_timesteps(num_steps, strength) in reverse (SD's schedule), z_0 sits at
    alpha_bars[0] (where sampling ends). Sampling from z_{t_k} through the same timesteps under the
    same prompt and g = 1 comes back to z_0 up to the inversion's error. guidance_scale > 1 inverts
    under CFG (an inexact inversion; see the module docstring). As diffusers' DDIMInverseScheduler.
    Shapes: latents (B, C, h, w) -> k + 1 tensors (B, C, h, w).
    """
    check_float_tensor(latents, "latents")
    if latents.ndim != 4 or latents.shape[1] != parts.unet.config.in_channels:
        raise CourseInputError(f"latents must be (B, {parts.unet.config.in_channels}, h, w) (encode_image gives them), "
                               f"got {tuple(latents.shape)}.")
    timesteps = edit_timesteps(num_steps, strength).flip(0)  # ascending: toward noise
    b = len(latents)
    cond = embed(parts, _prompts(prompt, b, "prompt"))
    uncond = embed(parts, [negative_prompt] * b)
    denoiser = _guided_denoiser(parts, uncond, cond, guidance_scale)
    ab = _alpha_bars(parts)
    z = latents.to(parts.device, torch.float32)
    out, ab_from = [z], ab[0]
    for t in timesteps.tolist():
        z = ddim_inverse_step(denoiser(z, t), z, ab_from, ab[t])
        out.append(z)
        ab_from = ab[t]
    return out


def _negative(parts, source_prompts: list[str], negative_prompt_inversion: bool) -> torch.Tensor:
    """The embedding CFG's 'unconditional' rows get: the source prompt's (negative-prompt inversion) or ''."""
    return embed(parts, source_prompts if negative_prompt_inversion else [""] * len(source_prompts))


@torch.no_grad()
def regenerate(parts: text2image.Parts, inverted: list[torch.Tensor], target_prompt, *, num_steps: int = 25,
               strength: float = 1.0, guidance_scale: float = 1.0, negative_embeddings: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """Return z_0 sampled under the target prompt from the inverted noise inverted[-1] (DDIM, CFG).   [nb 07-08]

    negative_embeddings: the 'unconditional' CFG rows (default: ''; the source prompt's embedding
    for negative-prompt inversion). mask (B, 1, h, w) bool at latent size: where False, the latents
    are replaced after every step by the inverted source's at that step (latent blending, nb 08).
    """
    timesteps = edit_timesteps(num_steps, strength)
    if len(inverted) != len(timesteps) + 1:
        raise CourseInputError(f"inverted holds {len(inverted)} latents but num_steps={num_steps} and "
                               f"strength={strength} make {len(timesteps)} steps; invert and regenerate with the "
                               f"same num_steps and strength.")
    b = len(inverted[0])
    want = (b, 1, *inverted[0].shape[2:])
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != want):
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise CourseInputError(f"mask must be a bool tensor at latent size (B, 1, h, w) = {want}, got {got}; "
                               f"latent_mask(check_mask(mask, images), latent_size) makes one from an image-size mask.")
    cond = embed(parts, _prompts(target_prompt, b, "target_prompt"))
    uncond = embed(parts, [""] * b) if negative_embeddings is None else negative_embeddings
    denoiser = _guided_denoiser(parts, uncond, cond, guidance_scale)
    wrapper = (None if mask is None
               else functools.partial(_locking_step, timesteps=timesteps, inverted=inverted, mask=mask))
    return _ddim(parts, inverted[-1], timesteps, denoiser, step_wrapper=wrapper)


@torch.no_grad()
def ddim_edit(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *, num_steps: int = 25,
              guidance_scale: float = 4.0, strength: float = 1.0, negative_prompt_inversion: bool = True,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Edit by DDIM inversion under the source prompt (g = 1), then DDIM + CFG under the target prompt.   [nb 07]

    z0 is the VAE posterior mean (deterministic; generator unused). negative_prompt_inversion=True
    puts the source prompt's embedding in CFG's unconditional rows (Miyake et al. 2023), so that the
    source prompt reconstructs as with g = 1; False uses '' and CFG breaks the reconstruction.
    """
    images, single = _images(image, parts.vae)
    b = len(images)
    sources = _prompts(source_prompt, b, "source_prompt")
    targets = _prompts(target_prompt, b, "target_prompt")
    inverted = ddim_invert(parts, encode_image(parts, images), sources, num_steps=num_steps, strength=strength)
    z = regenerate(parts, inverted, targets, num_steps=num_steps, strength=strength, guidance_scale=guidance_scale,
                   negative_embeddings=_negative(parts, sources, negative_prompt_inversion))
    return _output(decode_latents(parts, z), single)


class _UNetCallCounter:
    """Count the UNet's forward calls with a forward pre-hook (a public torch API), removed on exit."""

    def __init__(self, unet):
        self.unet, self.calls = unet, 0

    def __enter__(self):
        self.handle = self.unet.register_forward_pre_hook(lambda *_: setattr(self, "calls", self.calls + 1))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@torch.no_grad()
def reconstruction_error(parts: text2image.Parts, image: torch.Tensor, prompt, *, steps=(10, 25, 50),
                         guidance_scale: float = 1.0, negative_prompt_inversion: bool = False) -> list[dict]:
    """Return, per number of steps, how well inversion then regeneration under the SAME prompt comes back.   [nb 07]

    Each row: num_steps, latent_rmse (||z0_hat - z0|| RMS), psnr_db (decoded z0_hat against the
    VAE's own reconstruction decode(z0), so the VAE's error is left out), unet_calls (forward passes,
    inversion + sampling) and seconds. guidance_scale > 1 samples under CFG (inversion stays at
    g = 1): with negative_prompt_inversion=False the error no longer vanishes as steps grow.
    """
    images, _ = _images(image, parts.vae)
    b = len(images)
    prompts = _prompts(prompt, b, "prompt")
    z0 = encode_image(parts, images)
    reference = decode_latents(parts, z0)
    rows = []
    for n in steps:
        start = time.perf_counter()
        with _UNetCallCounter(parts.unet) as counter:
            inverted = ddim_invert(parts, z0, prompts, num_steps=n)
            z = regenerate(parts, inverted, prompts, num_steps=n, guidance_scale=guidance_scale,
                           negative_embeddings=_negative(parts, prompts, negative_prompt_inversion))
        seconds = time.perf_counter() - start
        rmse = float((z.float() - z0.float()).pow(2).mean().sqrt())
        mse = float((decode_latents(parts, z) - reference).pow(2).mean())
        psnr = float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()
        rows.append({"num_steps": int(n), "latent_rmse": rmse, "psnr_db": psnr, "unet_calls": counter.calls,
                     "seconds": seconds})
    return rows


# ----------------------------------------------------------------------------------------------
# 3. Prompt-to-prompt: attention controllers (policy) and the processor that calls them (mechanism)
# ----------------------------------------------------------------------------------------------

@dataclass
class AttentionController(attention.AttentionStore):
    """An attention processor factory whose edit(name, probs, is_cross) may change attention probabilities.   [P2P, nb 08]

    Install with attention.record_attention(unet, controller) (it restores the originals on exit).
    The sampling loop calls set_step(i, num_steps) before each UNet call; `active(window)` says if
    step i lies in a window of fractions [start, end) of the steps (as P2P: int(start N) <= i < int(end N)).
    probs arrive as (R, heads, N, L) with R = 4B rows in the CFG_LAYOUT order. With record=True the
    probabilities AFTER the edit are kept in self.probs, as AttentionStore does (cross-attention
    only unless self_attention=True). The base class edits nothing.
    """

    record: bool = False
    step: int = 0
    num_steps: int = 1

    def processor(self, name: str):
        return _ControlProcessor(self, name)

    def set_step(self, step: int, num_steps: int) -> None:
        self.step, self.num_steps = int(step), int(num_steps)

    def active(self, window: tuple[float, float]) -> bool:
        start, end = window
        return int(start * self.num_steps) <= self.step < int(end * self.num_steps)

    def edit(self, name: str, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        return probs

    def _layout(self, probs: torch.Tensor) -> torch.Tensor:
        return _layout(probs)


def _layout(probs: torch.Tensor) -> torch.Tensor:
    """View (4B, ...) as (2 [uncond, cond], 2 [src, tgt], B, ...) (CFG_LAYOUT)."""
    rows = probs.shape[0]
    if rows % 4:
        raise CourseInputError(f"prompt-to-prompt expects the UNet batch {CFG_LAYOUT} (4B rows), got {rows} rows.")
    return probs.view(2, 2, rows // 4, *probs.shape[1:])


def layout_rows(probs: torch.Tensor, row: str) -> torch.Tensor:
    """Return the B rows of one CFG_LAYOUT branch, e.g. 'cond_tgt', of recorded probabilities (4B, heads, N, L)."""
    if row not in CFG_LAYOUT:
        raise CourseInputError(f"row must be one of {CFG_LAYOUT}, got {row!r}.")
    i = CFG_LAYOUT.index(row)
    return _layout(probs)[i // 2, i % 2]


class _ControlProcessor(attention._RecordingProcessor):
    """attention's recording processor whose hook lets the controller edit the probabilities before V."""

    def __init__(self, controller: AttentionController, name: str):
        super().__init__(controller, name)
        self.controller = controller

    def handle(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        probs = self.controller.edit(self.name, probs, is_cross)  # (R, heads, N, L)
        if self.controller.record and (is_cross or self.controller.self_attention):
            self.controller.probs.setdefault(self.name, []).append(probs.detach().float().cpu())
        return probs


@dataclass
class AttentionReplace(AttentionController):
    """Word swap / refinement: in the window, the target's cross-attention maps become the source's.   [P2P sec. 3.2, nb 08]

    mapper (L,): for each target token position the source position whose map it takes, or -1 to
    keep its own (a word swap maps every position to itself). self_window: in it, the target's
    self-attention maps become the source's too (keeps the layout more firmly).
    """

    mapper: torch.Tensor | None = None
    cross_window: tuple[float, float] = (0.0, 0.8)
    self_window: tuple[float, float] = (0.0, 0.0)

    def edit(self, name: str, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        window = self.cross_window if is_cross else self.self_window
        if not self.active(window):
            return probs
        p = self._layout(probs).clone()
        source, target = p[1, 0], p[1, 1]  # conditional rows
        if not is_cross or self.mapper is None:
            p[1, 1] = source
        else:
            mapper = self.mapper.to(probs.device)
            taken = mapper >= 0
            target[..., taken] = source[..., mapper[taken]]
        return p.view_as(probs)


@dataclass
class AttentionReweight(AttentionReplace):
    """Re-weighting: after the replacement, multiply the target's cross-attention to some tokens by a scale.   [P2P sec. 3.2, nb 08]

    scales (L,): a factor per token position (1 for the others); applied in reweight_window.
    With source == target prompts the target's maps are the source's with the chosen words scaled.
    """

    scales: torch.Tensor | None = None
    reweight_window: tuple[float, float] = (0.0, 1.0)

    def edit(self, name: str, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        probs = super().edit(name, probs, is_cross)
        if not is_cross or self.scales is None or not self.active(self.reweight_window):
            return probs
        p = self._layout(probs).clone()
        p[1, 1] = p[1, 1] * self.scales.to(probs.device, probs.dtype)
        return p.view_as(probs)


def _word_ids(tokenizer, prompt: str) -> list[int]:
    return tokenizer(prompt, add_special_tokens=False).input_ids


def _words(tokenizer, ids) -> list[str]:
    return [t.replace("</w>", "") for t in tokenizer.convert_ids_to_tokens(list(ids))]


def token_mapper(tokenizer, source_prompt: str, target_prompt: str, mode: str = "swap") -> torch.Tensor:
    """Return mapper (L,): the source token position each target position takes its attention map from, -1 for none.   [P2P, nb 08]

    Positions are those of the padded sequence (0 = start token, words from 1). mode 'swap': the
    prompts must have the same number of tokens (words swapped one for one), every position maps to
    itself; otherwise CourseInputError names the words without a counterpart. mode 'refine': words
    common to both prompts (difflib alignment) map to their source position; new words keep their own.
    mode 'auto': 'swap' when the prompts have as many tokens, else 'refine'.
    """
    if mode not in ("swap", "refine", "auto"):
        raise CourseInputError(f"mode must be 'swap', 'refine' or 'auto' (swap when the prompts align), got {mode!r}.")
    length = tokenizer.model_max_length
    src, tgt = _word_ids(tokenizer, source_prompt), _word_ids(tokenizer, target_prompt)
    if mode == "auto":
        mode = "swap" if len(src) == len(tgt) else "refine"
    if mode == "swap":
        if len(src) != len(tgt):
            ops = difflib.SequenceMatcher(a=src, b=tgt, autojunk=False).get_opcodes()
            unmatched = []
            for _, i1, i2, j1, j2 in ops:
                a, b = " ".join(_words(tokenizer, src[i1:i2])), " ".join(_words(tokenizer, tgt[j1:j2]))
                if i2 - i1 != j2 - j1:  # an equal-length replacement is a proper swap
                    unmatched.append(f"{b!r} (added)" if not a else f"{a!r} (removed)" if not b else f"{a!r} -> {b!r}")
            raise CourseInputError(
                f"a word swap needs prompts that align token by token, but {source_prompt!r} has {len(src)} tokens "
                f"and {target_prompt!r} has {len(tgt)}; words without a counterpart: {'; '.join(unmatched)}. "
                f"Swap words one for one, or use mode='refine'.")
        return torch.arange(length)
    mapper = torch.full((length,), -1, dtype=torch.long)
    mapper[0] = 0  # start token
    for block in difflib.SequenceMatcher(a=src, b=tgt, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            if block.b + k + 1 < length and block.a + k + 1 < length:
                mapper[block.b + k + 1] = block.a + k + 1
    for j in range(len(tgt) + 1, length):  # end token and padding, aligned from the end token on
        i = j - len(tgt) + len(src)
        if i < length:
            mapper[j] = i
    return mapper


def token_positions(tokenizer, prompt: str, word: str) -> list[int]:
    """Return the positions (in the padded sequence, start token = 0) of `word`'s tokens in `prompt`; raise if absent."""
    ids, wanted = _word_ids(tokenizer, prompt), _word_ids(tokenizer, word)
    if not wanted:
        raise CourseInputError(f"the word {word!r} has no tokens.")
    for i in range(len(ids) - len(wanted) + 1):
        if ids[i: i + len(wanted)] == wanted:
            return [i + 1 + k for k in range(len(wanted))]
    raise CourseInputError(f"the word {word!r} is not in the prompt {prompt!r} (its words: {_words(tokenizer, ids)}).")


@torch.no_grad()
def p2p_latents(parts: text2image.Parts, z_T: torch.Tensor, source_prompt, target_prompt,
                controller: AttentionController, *, num_steps: int = 25, strength: float = 1.0,
                guidance_scale: float = 4.0, negative_embeddings: torch.Tensor | None = None,
                layers=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (z0_source, z0_target): both prompts sampled from the same z_T with the controller installed.   [P2P, nb 08]

    The latents hold rows [source (B); target (B)]; the UNet batch is CFG_LAYOUT. negative_embeddings
    (2B, L, D) fills the unconditional rows (default ''). layers: processor names to control
    (default all; the others keep theirs). The original processors are restored on exit.
    """
    b = len(z_T)
    sources = _prompts(source_prompt, b, "source_prompt")
    targets = _prompts(target_prompt, b, "target_prompt")
    timesteps = edit_timesteps(num_steps, strength)
    cond = embed(parts, sources + targets)
    uncond = embed(parts, [""] * 2 * b) if negative_embeddings is None else negative_embeddings
    denoiser = _guided_denoiser(parts, uncond, cond, guidance_scale, timesteps=timesteps, controller=controller)
    x = torch.cat([z_T, z_T]).to(parts.device)
    with attention.record_attention(parts.unet, controller, layers=layers):
        z = _ddim(parts, x, timesteps, denoiser)
    return z[:b], z[b:]


@torch.no_grad()
def prompt_to_prompt(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *,
                     num_steps: int = 25, guidance_scale: float = 4.0, strength: float = 1.0,
                     cross_window=(0.0, 0.8), self_window=(0.0, 0.2), mode: str = "swap",
                     reweight: dict[str, float] | None = None, negative_prompt_inversion: bool = True,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Edit a real image by prompt-to-prompt: invert under the source prompt, then run source and target side by side.   [P2P, nb 08]

    mode 'swap' (word swap; prompts must align token by token), 'refine' (words added or removed) or
    'auto' (swap when the prompts align, else refine: what METHODS uses, for every edit kind).
    reweight {word of the target prompt: scale} scales that word's cross-attention (e.g. {"red": 2.0}).
    Windows are fractions of the steps. Source rows use negative-prompt inversion (their CFG
    'unconditional' embedding is the source prompt's), so the source branch reconstructs as g = 1.
    """
    images, single = _images(image, parts.vae)
    b = len(images)
    sources = _prompts(source_prompt, b, "source_prompt")
    targets = _prompts(target_prompt, b, "target_prompt")
    cross_window, self_window = check_window(cross_window, "cross_window"), check_window(self_window, "self_window")
    mappers = [token_mapper(parts.tokenizer, s, t, mode) for s, t in zip(sources, targets)]
    if any(not torch.equal(m, mappers[0]) for m in mappers):
        raise CourseInputError("prompt_to_prompt runs one controller per batch: give prompt pairs that align alike "
                               "(or edit the images one at a time).")
    kwargs = dict(mapper=mappers[0], cross_window=cross_window, self_window=self_window)
    if reweight:
        scales = torch.ones(parts.tokenizer.model_max_length)
        for word, scale in reweight.items():
            for pos in token_positions(parts.tokenizer, targets[0], word):
                scales[pos] = float(scale)
        controller = AttentionReweight(**kwargs, scales=scales)
    else:
        controller = AttentionReplace(**kwargs)
    inverted = ddim_invert(parts, encode_image(parts, images), sources, num_steps=num_steps, strength=strength)
    negative = _negative(parts, sources, negative_prompt_inversion)
    _, z = p2p_latents(parts, inverted[-1], sources, targets, controller, num_steps=num_steps, strength=strength,
                       guidance_scale=guidance_scale, negative_embeddings=torch.cat([negative, negative]))
    return _output(decode_latents(parts, z), single)


# ----------------------------------------------------------------------------------------------
# 4. Mask locking: the DiffEdit mask and latent blending
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def difference_map(parts: text2image.Parts, latents: torch.Tensor, source_prompt, target_prompt, *,
                   num_draws: int = 4, strength: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return where the prompts disagree: mean |eps(z_t, tgt) - eps(z_t, src)| over draws and channels, in [0, 1].   [DiffEdit, nb 08]

    z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps_k at t = strength * (T - 1), one eps_k per draw. Under CFG
    the difference is g times the conditional one (the unconditional parts cancel), and the
    normalisation removes g, so the conditional predictions suffice. Each image's map is divided
    by its maximum. Shapes: latents (B, C, h, w) -> (B, 1, h, w).
    """
    num_draws = check_positive_int(num_draws, "num_draws")
    strength = check_strength(strength)
    b = len(latents)
    cond = embed(parts, _prompts(source_prompt, b, "source_prompt") + _prompts(target_prompt, b, "target_prompt"))
    ab = _alpha_bars(parts)
    t = round(strength * (len(ab) - 1))
    z0 = latents.to(parts.device, torch.float32)
    total = torch.zeros(b, 1, *z0.shape[2:], device=z0.device)
    for _ in range(num_draws):
        noise = _randn(z0.shape, generator, z0)
        z_t = schedules.q_sample(z0, t, ab, noise)
        t_batch = torch.full((2 * b,), t, dtype=torch.long, device=z0.device)
        eps = models.model_output(parts.unet, torch.cat([z_t, z_t]).to(parts.unet.dtype), t_batch,
                                  encoder_hidden_states=cond)
        eps_src, eps_tgt = eps.chunk(2)
        total += (eps_tgt - eps_src).abs().float().mean(1, keepdim=True)
    return total / total.flatten(1).amax(1).clamp_min(1e-12).view(b, 1, 1, 1)


@torch.no_grad()
def diffedit_mask(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *,
                  num_draws: int = 4, strength: float = 0.5, threshold: float = 0.5,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Return the automatic edit mask (B, 1, H, W) bool at image size: difference_map > threshold, upsampled.   [DiffEdit, nb 08]"""
    images, _ = _images(image, parts.vae)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1:
        raise CourseInputError(f"threshold must be a number in [0, 1), got {threshold!r}.")
    latents = encode_image(parts, images)
    diff = difference_map(parts, latents, source_prompt, target_prompt, num_draws=num_draws, strength=strength,
                          generator=generator)
    return F.interpolate((diff > threshold).float(), size=images.shape[-2:], mode="nearest").bool().cpu()


def check_mask(mask, images: torch.Tensor) -> torch.Tensor:
    """Return mask as (B, 1, H, W) bool for images (B, 3, H, W); accept (H, W), (1|B, H, W), (1|B, 1, H, W), bool or [0, 1]."""
    if not isinstance(mask, torch.Tensor):
        raise CourseInputError(f"mask must be a torch.Tensor (True where the edit may change the image), "
                               f"got {type(mask).__name__}.")
    b, _, h, w = images.shape
    m = mask
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, b):
        raise CourseInputError(f"mask must have the image's size {h}x{w}: shape (H, W), (B, H, W) or (B, 1, H, W) "
                               f"with B = 1 or {b}; got {tuple(mask.shape)}.")
    if not m.dtype == torch.bool:
        if not m.is_floating_point() or m.min() < 0 or m.max() > 1:
            raise CourseInputError("mask must be bool or hold values in [0, 1] (1 = may change).")
        m = m > 0.5
    return m.expand(b, 1, h, w)


def latent_mask(mask: torch.Tensor, latent_size) -> torch.Tensor:
    """Return the mask at latent size (B, 1, h, w) bool: a latent cell is in it if any of its pixels is (max-pooling)."""
    h, w = latent_size
    f = mask.shape[-2] // h
    return F.max_pool2d(mask.float(), kernel_size=f, stride=f)[..., :h, :w] > 0.5


def _locking_step(step, *, timesteps, inverted, mask):
    """Wrap a step: outside the mask, x_prev is replaced by the inverted source latent at t_prev (latent blending)."""
    position = {int(t): i for i, t in enumerate(timesteps)}
    k = len(timesteps)

    def locked(model_output, xt, t, t_prev, generator=None):
        result = step(model_output, xt, t, t_prev, generator=generator)
        source = inverted[k - 1 - position[int(t)]].to(result.x_prev)  # the inverted latent at t_prev
        m = mask.to(result.x_prev.device)
        return samplers.Step(torch.where(m, result.x_prev, source), result.x0_hat)

    return locked


@torch.no_grad()
def mask_locking(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *, mask=None,
                 num_steps: int = 25, guidance_scale: float = 4.0, strength: float = 1.0,
                 negative_prompt_inversion: bool = False, mask_draws: int = 4, mask_strength: float = 0.5,
                 mask_threshold: float = 0.5, composite: bool = False, start: str = "noise",
                 return_mask: bool = False, generator: torch.Generator | None = None):
    """Edit inside a mask only: DDIM inversion, then regeneration with latent blending outside the mask.   [DiffEdit, nb 08]

    mask: True where the edit may change the image, at image size (check_mask's shapes); None
    computes it (diffedit_mask, with `generator`). Outside the mask the final latent equals the
    source's latent z0 exactly, so those pixels differ from the source by the VAE's reconstruction
    error (plus the decoder's reach across the mask's border). composite=True then pastes the
    source pixels outside the mask (a perfect lock; the seam is the price). return_mask: also return it.

    start: what the masked latents start from. "noise" (default): fresh N(0, I) from `generator`, as
    in inpainting (Blended Latent Diffusion); "inverted": the source's DDIM-inverted noise, which
    still carries the source's colour and shape into the masked region. The mask already keeps the
    source outside it, so negative-prompt inversion is off by default; on ShapesEdit (user masks)
    both choices raised edit success (benchmarks/bench_shapesedit.py, nb 08).
    """
    images, single = _images(image, parts.vae)
    b = len(images)
    sources = _prompts(source_prompt, b, "source_prompt")
    targets = _prompts(target_prompt, b, "target_prompt")
    edit_timesteps(num_steps, strength)  # check steps and strength before any work
    if start not in ("noise", "inverted"):
        raise CourseInputError(f"start must be 'noise' (fresh noise in the mask) or 'inverted' (the source's "
                               f"inverted noise), got {start!r}.")
    if mask is None:
        mask = diffedit_mask(parts, images, sources, targets, num_draws=mask_draws, strength=mask_strength,
                             threshold=mask_threshold, generator=generator)
    mask = check_mask(mask, images)
    z0 = encode_image(parts, images)
    inverted = ddim_invert(parts, z0, sources, num_steps=num_steps, strength=strength)
    small = latent_mask(mask, z0.shape[-2:]).to(parts.device)
    if start == "noise":  # inside the mask, start from fresh noise: nothing of the source's content survives there
        draw_device = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(inverted[-1].shape, generator=generator, device=draw_device,
                            dtype=inverted[-1].dtype).to(parts.device)
        inverted = [*inverted[:-1], torch.where(small, noise, inverted[-1])]
    z = regenerate(parts, inverted, targets, num_steps=num_steps, strength=strength, guidance_scale=guidance_scale,
                   negative_embeddings=_negative(parts, sources, negative_prompt_inversion), mask=small)
    out = decode_latents(parts, z)
    if composite:
        out = torch.where(mask.cpu(), out, images.float().cpu())
    out = _output(out, single)
    return (out, _output(mask.cpu(), single)) if return_mask else out


# ----------------------------------------------------------------------------------------------
# One signature for the benchmark
# ----------------------------------------------------------------------------------------------

EditMethod = Callable[..., torch.Tensor]  # (parts, image, source_prompt, target_prompt, *, generator, **options)

METHODS: dict[str, EditMethod] = {
    "sdedit": sdedit,
    "ddim_inversion": ddim_edit,
    "prompt_to_prompt": functools.partial(prompt_to_prompt, mode="auto"),  # swap, or refine for added/removed words
    "mask_locking": mask_locking,
}


def run_case(method: str | EditMethod, parts: text2image.Parts, case, *, generator: torch.Generator | None = None,
             **options) -> torch.Tensor:
    """Run one edit method on a shapes.EditResult-like case (source_image, source_caption, target_caption).   [nb 08]

    method: a METHODS name or a callable with the common signature. The case's ground-truth mask is
    NOT passed (give mask=case.mask in options for a user-mask run).
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise CourseInputError(f"unknown edit method {method!r}; use one of {sorted(METHODS)}.")
        method = METHODS[method]
    return method(parts, case.source_image, case.source_caption, case.target_caption, generator=generator, **options)
