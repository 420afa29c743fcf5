"""Locked-image editing: SDEdit, inversions that survive guidance, prompt-to-prompt with local blending, and mask locking.   [notebooks 07-08]

Given an image x, its caption (the source prompt) and a target prompt that differs in a few words,
change what the words change and keep everything else. The pieces, each a step closer to a lock:

1. SDEdit (Meng et al. 2022, "img2img"): encode x to z0, noise it to a strength s in one jump,
   z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps, and denoise under the target prompt with CFG. Small s
   keeps the image and ignores the prompt; large s follows the prompt and forgets the image.
   `sdedit` equals diffusers' StableDiffusionImg2ImgPipeline step for step (tests/test_editing.py).
2. Inversions (`invert`, INVERSIONS): the source latent's path to noise, and what the sampler needs
   to come back along it under classifier-free guidance.
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
   `reconstruction` measures each: PSNR of the round trip at the editing guidance scale, UNet calls, seconds.
3. The editing loop (`edit_latents`): the target prompt sampled from an inversion, alone or beside
   the source branch (one UNet batch, CFG_LAYOUT), with an attention controller (prompt-to-prompt)
   and a blend (a latent mask, or local blending) applied after every step. `inversion_edit` is
   the loop alone: invert under the source prompt, sample under the target.
4. Prompt-to-prompt (Hertz et al. 2023): source and target generated side by side from the same
   start; inside an edit window of the steps the target's cross-attention maps are replaced by the
   source's (word swap, refinement) or one word's maps are scaled (re-weighting). Controllers are
   diffusers attention processors installed by layer name (attention.record_attention, which
   restores the originals on exit); the sampling loop tells the controller the step (set_step),
   nothing counts calls. Local blending (`LocalBlend`, the original paper's sec. 3.3 and code):
   after every step the target keeps its own latents only where the edited words are attended,
   and takes the source branch's everywhere else.
5. Masks and mask locking: where to edit, from where the two prompts' noise predictions disagree
   (DiffEdit, Couairon et al. 2023, `difference_map`) or from the edited words' cross-attention
   (`attention_map`); `mask_from_map` thresholds, grows and fills a map. `mask_locking` samples
   the target with latent blending (Avrahami et al. 2023): outside the mask the latents are the
   inverted source's at every step, so there the final latent IS the source latent.

Conventions shared with text2image.generate_latents and StableDiffusionPipeline with the course's
DDIMScheduler (text2image.SCHEDULER_CONFIG: SD 1.5's "leading" spacing, steps_offset = 1,
set_alpha_to_one = False, clip_sample = False): timesteps k*(T//N) + 1, DDIM with eta = 0 on the
scheduler's float32 alphas_cumprod (text2image.scheduler_alpha_bars()), the last step lands on alphas_cumprod[0];
the CFG batch sent to the UNet is [unconditional rows; conditional rows], and for g <= 1 the
pipeline turns CFG off (conditional rows alone), as here.

Batch layout of the two-branch loop (explicit, CFG_LAYOUT): the latents hold rows [source; target]
(B each), the UNet gets them twice, so its 4B rows are

    [uncond_src (B), uncond_tgt (B), cond_src (B), cond_tgt (B)]

and an attention probability tensor (4B, heads, N, L) views as (2 [uncond, cond], 2 [src, tgt],
B, heads, N, L). Controllers edit the conditional target rows only, as the original code does.

Every method has one signature, so a benchmark can call them alike (METHODS):

    method(parts, image, source_prompt, target_prompt, *, <method options>, generator=None)
        image (3, H, W) or (B, 3, H, W) in [-1, 1] -> edited image(s), same shape, in [-1, 1]

Each method's defaults come from the ShapesEdit table run on the development cases (shapesedit.DEV_SEED,
100 cases; never the benchmark's): the row with the highest edit success, ties broken by locked PSNR.
inversion_edit: "ddim" (92 % against direct's and edit-friendly's 90 %); prompt_to_prompt:
"edit_friendly" (88 %, direct 82 %); mask_locking: "ddim" (90 %, 32.0 dB; edit-friendly 90 %, 31.8 dB).
The benchmark's own table is data/shapesedit_results.json (benchmarks/bench_shapesedit.py).
"""

from __future__ import annotations

import difflib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from course_lib import attention, guidance, models, samplers, schedules, text, text2image
from course_lib import noise as noise_lib
from course_lib import vae as vae_lib
from course_lib.guidance import cfg_combine
from course_lib.validation import CourseInputError, check_choice, check_float_tensor, check_positive_int

SPACING = text2image.SCHEDULER_CONFIG["timestep_spacing"]  # "leading", as Stable Diffusion 1.5
STEPS_OFFSET = text2image.SCHEDULER_CONFIG["steps_offset"]  # 1
CFG_LAYOUT = ("uncond_src", "uncond_tgt", "cond_src", "cond_tgt")  # rows of the two-branch UNet batch
INVERSIONS = ("ddim", "negative_prompt", "null_text", "direct", "edit_friendly")


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


def _check_fraction(value, name: str, *, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (0 < value < 1 if low_open else 0 <= value < 1)
    if not ok:
        raise CourseInputError(f"{name} must be a number in {'(0, 1)' if low_open else '[0, 1)'}, got {value!r}.")
    return float(value)


def _images(image, vae) -> tuple[torch.Tensor, bool]:
    """Return (images (B, C, H, W), was_single) after checking shape, range, finiteness and size against the VAE."""
    check_float_tensor(image, "image")
    single = image.ndim == 3
    images = image[None] if single else image
    if images.ndim != 4 or images.shape[0] == 0:
        raise CourseInputError(f"image must be (3, H, W) or (B, 3, H, W), got shape {tuple(image.shape)}.")
    return vae_lib.check_images(images, vae), single


def _prompts(prompts, batch: int, name: str) -> list[str]:
    prompts = text.as_prompts(prompts)
    if len(prompts) == 1:
        return prompts * batch
    if len(prompts) != batch:
        raise CourseInputError(f"{name}: give one prompt, or one per image ({batch}); got {len(prompts)}.")
    return prompts


def check_edit_prompts(tokenizer, source_prompts: list[str], target_prompts: list[str]) -> None:
    """Raise if a target prompt asks for no change the tokenizer can see (the same tokens as its source prompt)."""
    for source, target in zip(source_prompts, target_prompts):
        if source == target:
            raise CourseInputError(f"the target prompt is the source prompt ({source!r}): there is nothing to edit. "
                                   f"Change the words that should change, e.g. a colour or a shape.")
        if _word_ids(tokenizer, source) == _word_ids(tokenizer, target):
            raise CourseInputError(f"{source!r} and {target!r} differ only in what the tokenizer drops or cannot "
                                   f"read (case, spacing, unknown words): they encode the same. Use words the model "
                                   f"knows (text.known_words(tokenizer)).")


def edit_timesteps(num_steps: int, strength: float = 1.0, num_train_steps: int | None = None,
                   sampler="ddim") -> torch.Tensor:
    """Return the timesteps an edit of `strength` runs: the last int(N * strength) of the sampler's N steps.   [nb 07]

    As StableDiffusionImg2ImgPipeline.get_timesteps: strength 1 runs all N steps from noise,
    strength 0.5 the last half (starting at about t = T/2); strength 0 none.
    """
    num_steps = check_positive_int(num_steps, "num_steps")
    strength = check_strength(strength)
    num_train_steps = text2image.SCHEDULE.num_steps if num_train_steps is None else num_train_steps
    timesteps = samplers.get_sampler(sampler).timesteps(num_train_steps, num_steps, SPACING, offset=STEPS_OFFSET)
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
    return text2image.scheduler_alpha_bars().to(parts.device)


def _unet(parts, x: torch.Tensor, t: int, context: torch.Tensor) -> torch.Tensor:
    """eps(x, t, context) for every row, float32 out, the UNet in its own dtype."""
    t_batch = torch.full((x.shape[0],), int(t), dtype=torch.long, device=x.device)
    return models.model_output(parts.unet, x.to(parts.unet.dtype), t_batch,
                               encoder_hidden_states=context.to(parts.unet.dtype)).float()


def _guided_eps(parts, x: torch.Tensor, t: int, uncond: torch.Tensor, cond: torch.Tensor, g: float,
                both_rows: bool = False) -> torch.Tensor:
    """guidance.cfg_denoiser on [x; x] (SD's layout) at step t, the pipeline's convention: eps_c alone when g <= 1."""
    return guidance.cfg_denoiser(parts.unet, g, {"encoder_hidden_states": cond}, {"encoder_hidden_states": uncond},
                                 pipeline_convention=True, both_rows=both_rows)(x.float(), t)


def _output(images: torch.Tensor, single: bool) -> torch.Tensor:
    return images[0] if single else images


@dataclass(frozen=True)
class _Level:
    """One sampling step: t, the step it lands on (-1 after the last) and their alpha_bars."""

    t: int
    t_prev: int
    ab_t: torch.Tensor
    ab_prev: torch.Tensor


def _levels(parts, timesteps: torch.Tensor) -> list[_Level]:
    ab = _alpha_bars(parts)
    ts = [int(t) for t in timesteps]
    out = []
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        out.append(_Level(t, t_prev, ab[t], ab[t_prev] if t_prev >= 0 else ab[0]))
    return out


def _ddim(parts, level: _Level, eps: torch.Tensor, z: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step (samplers.ddim_step, SD's final alpha_bar): eta = 0, or eta = 1 with the given noise."""
    ab = _alpha_bars(parts)
    eta = 0.0 if noise is None else 1.0
    return samplers.ddim_step(eps, z, level.t, level.t_prev, ab, eta=eta, final_alpha_bar=float(ab[0]),
                              noise=noise).x_prev


# ----------------------------------------------------------------------------------------------
# 1. SDEdit / img2img
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def sdedit(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *, strength: float = 0.6,
           guidance_scale: float = 4.0, num_steps: int = 25, negative_prompt: str = "",
           generator: torch.Generator | None = None, sampler="ddim") -> torch.Tensor:
    """Edit by noising to a strength and denoising under the target prompt: z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps.   [SDEdit, nb 07]

    As StableDiffusionImg2ImgPipeline (same numbers for the same seed): z0 is drawn from the VAE's
    posterior with `generator`, then eps with `generator`, t = the first of edit_timesteps(num_steps,
    strength), then the sampler (DDIM by default; any of samplers.SAMPLERS) + CFG over the remaining
    steps. The source prompt is not used (SDEdit does not know what the image shows); it is there so
    every method has one signature. strength 0 gives the VAE reconstruction (the pipeline fails there).
    """
    images, single = _images(image, parts.vae)
    sampler = samplers.get_sampler(sampler)
    timesteps = edit_timesteps(num_steps, strength, sampler=sampler)
    g = text2image.check_guidance_scale(guidance_scale)
    b = len(images)
    cond = embed(parts, _prompts(target_prompt, b, "target_prompt"))
    uncond = embed(parts, [negative_prompt] * b)
    z = encode_image(parts, images, generator=generator, sample_mode="sample")
    if len(timesteps):
        ab = _alpha_bars(parts)
        z = schedules.q_sample(z, int(timesteps[0]), ab, noise_lib.randn_like(z, generator))
        denoiser = guidance.cfg_denoiser(parts.unet, g, {"encoder_hidden_states": cond},
                                         {"encoder_hidden_states": uncond}, pipeline_convention=True)
        z = samplers.sample(denoiser, z, timesteps, sampler, alpha_bars=ab, final_alpha_bar=float(ab[0]),
                            generator=generator).x0
    return _output(decode_latents(parts, z), single)


# ----------------------------------------------------------------------------------------------
# 2. Inversions
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


def _check_latents(parts, latents) -> torch.Tensor:
    check_float_tensor(latents, "latents")
    if latents.ndim != 4 or latents.shape[1] != parts.unet.config.in_channels:
        raise CourseInputError(f"latents must be (B, {parts.unet.config.in_channels}, h, w) (encode_image gives them), "
                               f"got {tuple(latents.shape)}.")
    return latents


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
    _check_latents(parts, latents)
    g = text2image.check_guidance_scale(guidance_scale)
    timesteps = edit_timesteps(num_steps, strength).flip(0)  # ascending: toward noise
    b = len(latents)
    cond = embed(parts, _prompts(prompt, b, "prompt"))
    uncond = embed(parts, [negative_prompt] * b)
    ab = _alpha_bars(parts)
    z = latents.to(parts.device, torch.float32)
    out, ab_from = [z], ab[0]
    for t in timesteps.tolist():
        z = ddim_inverse_step(_guided_eps(parts, z, t, uncond, cond, g), z, ab_from, ab[t])
        out.append(z)
        ab_from = ab[t]
    return out


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


def check_inversion_method(method) -> str:
    """Return method if it is one of INVERSIONS, else raise naming them."""
    return check_choice(method, INVERSIONS, "inversion")


def _null_text_steps(parts, path, levels, cond, empty, g, *, steps, lr, tolerance, counter):
    """Null-text inversion's inner loop (Mokady et al. 2023, Alg. 1): per step, Adam on the unconditional embedding."""
    k = len(levels)
    uncond, null = [], empty.clone()
    z = path[-1]
    for i, level in enumerate(levels):
        target = path[k - 1 - i]
        eps_c = _unet(parts, z, level.t, cond)
        null = null.detach().clone()
        if steps > 0:
            null.requires_grad_(True)
            optimiser = torch.optim.Adam([null], lr=lr * (1.0 - i / 100.0))  # the paper's schedule for 50 steps
            for _ in range(steps):
                with torch.enable_grad():
                    eps_u = _unet(parts, z, level.t, null)
                    reached = _ddim(parts, level, cfg_combine(eps_u, eps_c, g), z)
                    loss = F.mse_loss(reached, target)
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                counter[0] += 2  # one forward and one backward pass
                if loss.item() < tolerance * (1 + 2 * i):  # the paper's early stop, looser at later steps
                    break
            null = null.detach()
        uncond.append(null)
        z = _ddim(parts, level, cfg_combine(_unet(parts, z, level.t, null), eps_c, g), z)
        counter[0] += 2
    return uncond


@torch.no_grad()
def invert(parts: text2image.Parts, latents: torch.Tensor, prompt, *, method: str = "ddim", num_steps: int = 25,
           strength: float = 1.0, guidance_scale: float = 4.0, null_text_steps: int = 10, null_text_lr: float = 1e-2,
           null_text_tolerance: float = 1e-5, generator: torch.Generator | None = None, sampler="ddim") -> Inversion:
    """Return an Inversion of clean latents under the source prompt, by one of INVERSIONS.   [nb 07]

    sampler: editing from an inversion retraces its path with the sampler that made it, so only
    'ddim' (eta = 0; edit_friendly's noise maps are its eta = 1 variant) is accepted here; other
    solvers take other paths and would not come back to the image. sdedit takes any sampler.

    ddim / negative_prompt / null_text / direct share the DDIM path of ddim_invert (g = 1); they
    differ in what sampling at guidance_scale needs to come back along it:
      ddim             uncond = ""                    (the plain path; guidance drifts off it)
      negative_prompt  uncond = the source prompt     (Miyake et al. 2023; no extra cost)
      null_text        uncond optimised per step: null_text_steps Adam steps at null_text_lr until the
                       step's error is below null_text_tolerance (Mokady et al. 2023)
      direct           uncond = "", and corrections[i] = path[t_prev] - guided step from path[t]: what
                       puts the source branch back on the path (Ju et al. 2024; k extra CFG calls)
      edit_friendly    x_t = sqrt(ab_t) z_0 + sqrt(1 - ab_t) eps_t with independent eps_t (from
                       `generator`), and noise_maps z_i = (x_{t_prev} - mu(x_t)) / sigma_t of the eta = 1
                       sampler under guidance (Huberman-Spiegelglas et al. 2024)
    The guidance_scale is the one the edit will sample with (null_text, direct and edit_friendly
    depend on it). Shapes: latents (B, C, h, w).
    """
    start = time.perf_counter()
    _check_latents(parts, latents)
    method = check_inversion_method(method)
    chosen = samplers.get_sampler(sampler)
    if not isinstance(chosen, samplers.DDIM) or chosen.eta != 0:
        raise CourseInputError(f"inversions run DDIM (eta = 0) backwards and editing retraces that path, so sampler must "
                               f"be 'ddim'; {chosen!r} would take another path and not come back to the image. "
                               f"editing.sdedit takes any sampler.")
    g = text2image.check_guidance_scale(guidance_scale)
    null_text_steps = _check_count(null_text_steps, "null_text_steps", minimum=1)
    for value, name in ((null_text_lr, "null_text_lr"), (null_text_tolerance, "null_text_tolerance")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
            raise CourseInputError(f"{name} must be a number > 0 (null-text inversion's Adam "
                                   f"{'learning rate' if name.endswith('lr') else 'early-stop threshold'}), got {value!r}.")
    timesteps = edit_timesteps(num_steps, strength)
    levels = _levels(parts, timesteps)
    b = len(latents)
    prompts = _prompts(prompt, b, "prompt")
    cond, empty = embed(parts, prompts), embed(parts, [""] * b)
    z0 = latents.to(parts.device, torch.float32)
    k = len(levels)
    counter = [0]
    corrections = noise_maps = None
    if method == "edit_friendly":
        noisy = {lv.t: schedules.q_sample(z0, lv.t, _alpha_bars(parts), noise_lib.randn_like(z0, generator))
                 for lv in levels}
        path = [z0] + [noisy[lv.t] for lv in reversed(levels)]
        noise_maps = []
        for i, level in enumerate(levels):
            x_t, x_prev = path[k - i], path[k - 1 - i]
            eps = _guided_eps(parts, x_t, level.t, empty, cond, g)
            counter[0] += 1
            mean = _ddim(parts, level, eps, x_t, noise=torch.zeros_like(x_t))
            sigma = samplers.ddim_sigma(level.ab_t, level.ab_prev, 1.0)
            noise_maps.append((x_prev - mean) / sigma)
        uncond = [empty] * k
    else:
        path = ddim_invert(parts, z0, prompts, num_steps=num_steps, strength=strength)
        counter[0] += k
        if method == "negative_prompt":
            uncond = [cond] * k
        elif method == "null_text":
            uncond = _null_text_steps(parts, path, levels, cond, empty, g, steps=null_text_steps, lr=null_text_lr,
                                      tolerance=null_text_tolerance, counter=counter)
        else:
            uncond = [empty] * k
        if method == "direct":
            corrections = []
            for i, level in enumerate(levels):
                z_t = path[k - i]
                corrections.append(path[k - 1 - i] - _ddim(parts, level, _guided_eps(parts, z_t, level.t, empty, cond, g),
                                                            z_t))
                counter[0] += 1
    return Inversion(method, path, timesteps, cond, uncond, g, corrections, noise_maps, counter[0],
                     time.perf_counter() - start)


def _check_count(value, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CourseInputError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return value


# ----------------------------------------------------------------------------------------------
# 3. The editing loop: the target prompt sampled from an inversion, beside the source branch or alone
# ----------------------------------------------------------------------------------------------

Blend = Callable[[int, int, torch.Tensor, torch.Tensor], torch.Tensor]  # (step i, k, source after step, target) -> target


@torch.no_grad()
def edit_latents(parts: text2image.Parts, inversion: Inversion, target_prompt, *, guidance_scale: float = 4.0,
                 source_branch: bool = False, controller: "AttentionController | None" = None,
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
    g = text2image.check_guidance_scale(guidance_scale)
    if not isinstance(inversion, Inversion):
        raise CourseInputError(f"inversion must be an editing.Inversion (from editing.invert), got {type(inversion).__name__}.")
    b = len(inversion.latents[0])
    cond_tgt = embed(parts, _prompts(target_prompt, b, "target_prompt"))
    levels = _levels(parts, inversion.timesteps)
    k = len(levels)
    z_tgt = (inversion.start() if start is None else start).to(parts.device, torch.float32)
    z_src = inversion.start().to(parts.device, torch.float32) if source_branch else None
    two_rows = controller is not None or g > 1.0 or source_branch
    for i, level in enumerate(levels):
        if controller is not None:
            controller.set_step(i, k)
        uncond = inversion.uncond[i]
        if source_branch:  # [uncond; cond] of [source; target] rows: CFG_LAYOUT
            x, unc, cond = torch.cat([z_src, z_tgt]), torch.cat([uncond, uncond]), \
                torch.cat([inversion.source_embeddings, cond_tgt])
        else:
            x, unc, cond = z_tgt, uncond, cond_tgt
        eps = _guided_eps(parts, x, level.t, unc, cond, g, both_rows=two_rows)
        noise = inversion.noise_maps[i] if inversion.noise_maps is not None else None
        if source_branch:
            eps_src, eps_tgt = eps.chunk(2)
            z_src = _ddim(parts, level, eps_src, z_src, noise)
            if inversion.corrections is not None:
                z_src = z_src + inversion.corrections[i]
        else:
            eps_tgt = eps
        z_tgt = _ddim(parts, level, eps_tgt, z_tgt, noise)
        if inversion.corrections is not None and not source_branch:
            z_tgt = z_tgt + inversion.corrections[i]
        if blend is not None:
            z_tgt = blend(i, k, z_src if source_branch else inversion.source_at(i).to(z_tgt), z_tgt)
    return z_src, z_tgt


def _invert_images(parts, images, sources, *, inversion, num_steps, strength, guidance_scale, generator, **options):
    return invert(parts, encode_image(parts, images), sources, method=inversion, num_steps=num_steps, strength=strength,
                  guidance_scale=guidance_scale, generator=generator, **options)


@torch.no_grad()
def inversion_edit(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *,
                   inversion: str = "ddim", num_steps: int = 25, guidance_scale: float = 4.0, strength: float = 1.0,
                   generator: torch.Generator | None = None, **inversion_options) -> torch.Tensor:
    """Edit by inverting under the source prompt, then sampling the target prompt from there with CFG.   [nb 07]

    inversion: one of INVERSIONS (invert); z0 is the VAE posterior mean. With "ddim" the
    unconditional prompt is "" and guidance moves the path; the other inversions make the source
    prompt come back at guidance_scale, and with it everything the target prompt does not change.
    inversion_options go to invert (null_text_steps, ...); generator draws edit-friendly noise.
    """
    images, single = _images(image, parts.vae)
    b = len(images)
    sources, targets = _prompts(source_prompt, b, "source_prompt"), _prompts(target_prompt, b, "target_prompt")
    inv = _invert_images(parts, images, sources, inversion=inversion, num_steps=num_steps, strength=strength,
                         guidance_scale=guidance_scale, generator=generator, **inversion_options)
    _, z = edit_latents(parts, inv, targets, guidance_scale=guidance_scale)
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


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((a - b).pow(2).mean())  # images in [-1, 1]: data range 2
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


@torch.no_grad()
def reconstruction(parts: text2image.Parts, image: torch.Tensor, prompt, *, inversions=INVERSIONS, steps=(10, 25, 50),
                   guidance_scale: float = 4.0, generator: torch.Generator | None = None,
                   **inversion_options) -> list[dict]:
    """Return, per inversion and number of steps, how well invert-then-sample under the SAME prompt comes back.   [nb 07]

    Each row: inversion, num_steps, guidance_scale, psnr_db (the decoded round trip against the VAE's
    own reconstruction decode(z0), so the VAE's error is left out; images in [-1, 1]), latent_rmse,
    unet_calls (forward calls, inversion and sampling; null-text's backward passes come on top, as
    many as its optimisation steps), seconds. A perfect round trip has psnr_db = inf.
    """
    images, _ = _images(image, parts.vae)
    prompts = _prompts(prompt, len(images), "prompt")
    z0 = encode_image(parts, images)
    reference = decode_latents(parts, z0)
    rows = []
    for method in inversions:
        for n in steps:
            begin = time.perf_counter()
            with _UNetCallCounter(parts.unet) as counter:
                inv = invert(parts, z0, prompts, method=method, num_steps=n, guidance_scale=guidance_scale,
                             generator=generator, **inversion_options)
                _, z = edit_latents(parts, inv, prompts, guidance_scale=guidance_scale)
            rows.append({"inversion": method, "num_steps": int(n), "guidance_scale": float(guidance_scale),
                         "psnr_db": _psnr(decode_latents(parts, z), reference),
                         "latent_rmse": float((z - z0).pow(2).mean().sqrt()), "unet_calls": counter.calls,
                         "seconds": time.perf_counter() - begin})
    return rows


# ----------------------------------------------------------------------------------------------
# 4. Prompt-to-prompt: attention controllers (policy) and the processor that calls them (mechanism)
# ----------------------------------------------------------------------------------------------

@dataclass
class AttentionController(attention.AttentionStore):
    """An attention processor factory whose edit(name, probs, is_cross) may change attention probabilities.   [P2P, nb 08]

    Install with attention.record_attention(unet, controller) (it restores the originals on exit).
    The sampling loop calls set_step(i, num_steps) before each UNet call; `active(window)` says if
    step i lies in a window of fractions [start, end) of the steps (as P2P: int(start N) <= i < int(end N)).
    probs arrive as (R, heads, N, L) with R = 4B rows in the CFG_LAYOUT order. With record=True the
    probabilities AFTER the edit are kept in self.probs, as AttentionStore does (cross-attention
    only unless self_attention=True). local_blend, when given, sees every cross-attention map
    BEFORE the edit (the target's own). The base class edits nothing.
    """

    record: bool = False
    step: int = 0
    num_steps: int = 1
    local_blend: "LocalBlend | None" = None

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


class _ControlProcessor(attention.RecordingProcessor):
    """attention's recording processor whose hook lets the controller edit the probabilities before V."""

    def __init__(self, controller: AttentionController, name: str):
        super().__init__(controller, name)
        self.controller = controller

    def handle(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        if is_cross and self.controller.local_blend is not None:
            self.controller.local_blend.observe(probs, self.controller.step)
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


def changed_positions(tokenizer, source_prompt: str, target_prompt: str) -> tuple[list[int], list[int]]:
    """Return the token positions (padded sequence, start token = 0) of the words that differ: (in source, in target).   [nb 08]

    From difflib's alignment of the two token lists: a swapped word is in both, an added one only in
    the target, a removed one only in the source. These are the words local blending follows.
    """
    src, tgt = _word_ids(tokenizer, source_prompt), _word_ids(tokenizer, target_prompt)
    in_source, in_target = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=src, b=tgt, autojunk=False).get_opcodes():
        if op != "equal":
            in_source += [i + 1 for i in range(i1, i2)]
            in_target += [j + 1 for j in range(j1, j2)]
    return in_source, in_target


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


# ----------------------------------------------------------------------------------------------
# 5. Maps and masks: where the prompts disagree, from noise predictions or from attention
# ----------------------------------------------------------------------------------------------

def normalise_map(diff: torch.Tensor, how: str = "max") -> torch.Tensor:
    """Scale each map (B, 1, h, w) to [0, 1]: by its maximum ("max", DiffEdit's), or from its minimum to its maximum ("minmax")."""
    check_choice(how, ("max", "minmax"), "normalise")
    flat = diff.flatten(1)
    low = flat.amin(1).view(-1, 1, 1, 1) if how == "minmax" else 0.0
    return (diff - low) / (flat.amax(1).view(-1, 1, 1, 1) - low).clamp_min(1e-12)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Return the mask (B, 1, h, w) bool with every region it encloses added (scipy.ndimage.binary_fill_holes).   [nb 08]

    A latent cell that the edit surrounds cannot stay as it was: the VAE decodes each cell with its
    neighbours, so an unchanged island in a changed sea decodes wrong (nb 08 measures it).
    """
    from scipy import ndimage

    filled = [torch.from_numpy(ndimage.binary_fill_holes(m[0].cpu().numpy())) for m in mask]
    return torch.stack(filled)[:, None].to(mask.device)


def grow(mask: torch.Tensor, cells: int = 1) -> torch.Tensor:
    """Return the mask (B, 1, h, w) bool grown by `cells` in every direction (a (2c+1) x (2c+1) max filter)."""
    if cells == 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * cells + 1, 1, cells) > 0.5


def peak_region(mask: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """Return the part of each mask (B, 1, h, w) bool connected (8 neighbours) to the map's maximum.   [nb 08]

    One edit changes one connected region (an object, or the background); the other blobs a map
    shows are where the prompts' difference leaks to other objects through diffuse attention.
    """
    from scipy import ndimage

    out = []
    for m, d in zip(mask, diff):
        labels, _ = ndimage.label(m[0].cpu().numpy(), structure=[[1, 1, 1], [1, 1, 1], [1, 1, 1]])
        peak = labels.flat[int(d[0].flatten().argmax())]
        out.append(torch.from_numpy(labels == peak) if peak else m[0].cpu())
    return torch.stack(out)[:, None].to(mask.device)


def mask_from_map(diff: torch.Tensor, threshold: float = 0.3, *, normalise: str = "max", grow_cells: int = 1,
                  fill: bool = True, peak_only: bool = False) -> torch.Tensor:
    """Return an edit mask (B, 1, h, w) bool from a map: normalise, threshold, keep the peak's region, grow, fill holes.   [nb 08]"""
    threshold = _check_fraction(threshold, "threshold")
    grow_cells = _check_count(grow_cells, "grow_cells")
    mask = normalise_map(diff, normalise) > threshold
    if peak_only:
        mask = peak_region(mask, diff)
    mask = grow(mask, grow_cells)
    return fill_holes(mask) if fill else mask


@torch.no_grad()
def difference_map(parts: text2image.Parts, latents: torch.Tensor, source_prompt, target_prompt, *,
                   num_draws: int = 4, strength: float = 0.7, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return where the prompts disagree: mean |eps(z_t, tgt) - eps(z_t, src)| over draws and channels.   [DiffEdit, nb 08]

    z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps_k at t = strength * (T - 1), one eps_k per draw. Under CFG
    the difference is g times the conditional one (the unconditional parts cancel), so the
    conditional predictions suffice. Unnormalised (normalise_map, mask_from_map do that).
    Shapes: latents (B, C, h, w) -> (B, 1, h, w).
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
        z_t = schedules.q_sample(z0, t, ab, noise_lib.randn_like(z0, generator))
        eps_src, eps_tgt = _unet(parts, torch.cat([z_t, z_t]), t, cond).chunk(2)
        total += (eps_tgt - eps_src).abs().mean(1, keepdim=True)
    return total / num_draws


def _word_maps(probs: torch.Tensor, rows: list[int], positions: list[list[int]], side: int) -> torch.Tensor | None:
    """Sum of the attention (heads averaged) to each row's token positions, as maps (B, 1, side, side); None off-size."""
    if probs.shape[2] != side * side:
        return None
    maps = []
    for row, pos in zip(rows, positions):
        p = probs[row].float().mean(0)  # (N, L)
        maps.append(p[:, pos].sum(-1) if pos else torch.zeros(p.shape[0], device=p.device))
    return torch.stack(maps).view(len(rows), 1, side, side)


@dataclass
class LocalBlend:
    """Prompt-to-prompt's local blending: the target keeps its own latents only where the edited words are attended.   [P2P sec. 3.3, nb 08]

    observe() (called by an AttentionController's processors) adds up, per step, the conditional
    rows' cross-attention at latent size to the changed words: the source's to source_positions and
    the target's to target_positions (changed_positions). After each step, from step int(start * k)
    on, the maps averaged over the steps so far become a mask (mask_from_map: minmax normalisation,
    threshold, grow, fill) and the target becomes where(mask, target, source). The original scales
    each map by its maximum; with this course's diffuse maps ("max" leaves every cell above 0.3)
    minmax is what finds the object (nb 08 measures both).
    """

    source_positions: list[list[int]]
    target_positions: list[list[int]]
    side: int
    threshold: float = 0.5
    start: float = 0.2
    grow_cells: int = 1
    normalise: str = "minmax"
    fill: bool = True
    sums: list[torch.Tensor] = field(default_factory=list)

    def observe(self, probs: torch.Tensor, step: int) -> None:
        b = probs.shape[0] // 4
        rows = [2 * b + i for i in range(b)] + [3 * b + i for i in range(b)]  # cond_src, cond_tgt (CFG_LAYOUT)
        maps = _word_maps(probs, rows, list(self.source_positions) + list(self.target_positions), self.side)
        if maps is None:
            return
        maps = (maps[:b] + maps[b:]).detach().float().cpu()
        while len(self.sums) <= step:
            self.sums.append(torch.zeros_like(maps))
        self.sums[step] += maps

    def mask(self, upto: int | None = None) -> torch.Tensor:
        """The mask (B, 1, side, side) bool from the maps of steps 0..upto (all observed by default)."""
        sums = self.sums if upto is None else self.sums[: upto + 1]
        if not sums:
            raise CourseInputError("LocalBlend has observed no cross-attention at latent size yet.")
        return mask_from_map(torch.stack(sums).mean(0), self.threshold, normalise=self.normalise,
                             grow_cells=self.grow_cells, fill=self.fill)

    def __call__(self, i: int, k: int, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if i < int(self.start * k):
            return target
        return torch.where(self.mask(i).to(target.device), target, source)


@torch.no_grad()
def attention_map(parts: text2image.Parts, latents: torch.Tensor, source_prompt, target_prompt, *,
                  num_draws: int = 4, strength: float = 0.7, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return the changed words' cross-attention at latent size, at one noise level: a mask map like difference_map's.   [nb 08]

    z_t as difference_map draws it; the UNet reads [source; target] prompts once per draw; the map
    is the source rows' attention to the source's changed words plus the target rows' to the
    target's (changed_positions), heads and latent-size layers averaged. Shapes: (B, C, h, w) -> (B, 1, h, w).
    """
    num_draws = check_positive_int(num_draws, "num_draws")
    strength = check_strength(strength)
    b = len(latents)
    sources, targets = _prompts(source_prompt, b, "source_prompt"), _prompts(target_prompt, b, "target_prompt")
    positions = [changed_positions(parts.tokenizer, s, t_) for s, t_ in zip(sources, targets)]
    cond = embed(parts, sources + targets)
    ab = _alpha_bars(parts)
    t = round(strength * (len(ab) - 1))
    z0 = latents.to(parts.device, torch.float32)
    side = z0.shape[-1]
    layers = attention.cross_attention_layers(parts.unet, side)
    total = torch.zeros(b, 1, *z0.shape[2:])
    for _ in range(num_draws):
        z_t = schedules.q_sample(z0, t, ab, noise_lib.randn_like(z0, generator))
        with attention.record_attention(parts.unet, attention.AttentionStore(), layers=layers) as store:
            _unet(parts, torch.cat([z_t, z_t]), t, cond)
        for name in layers:
            probs = store.probs[name][0]
            maps = _word_maps(probs, list(range(2 * b)), [p[0] for p in positions] + [p[1] for p in positions], side)
            total += maps[:b] + maps[b:]
    return total / (num_draws * len(layers))


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


def image_mask(mask: torch.Tensor, image_size) -> torch.Tensor:
    """Return a latent-size mask (B, 1, h, w) at image size (B, 1, H, W) bool (each cell's pixels)."""
    return F.interpolate(mask.float(), size=tuple(image_size), mode="nearest") > 0.5


MASK_SOURCES = ("diffedit", "attention")
MASK_THRESHOLDS = {"diffedit": 0.3, "attention": 0.5}  # chosen on the development cases (shapesedit.DEV_SEED)


@torch.no_grad()
def edit_mask(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *, source: str = "diffedit",
              num_draws: int = 4, strength: float = 0.7, threshold: float | None = None, grow_cells: int = 1,
              normalise: str | None = None, peak_only: bool = False,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Return the automatic edit mask at latent size (B, 1, h, w) bool, from the image and the two prompts alone.   [nb 08]

    source "diffedit": difference_map (normalised by its maximum); "attention": attention_map
    (minmax); then mask_from_map(threshold (default MASK_THRESHOLDS[source]), grow_cells, fill holes;
    peak_only keeps the region of the map's maximum). image_mask() gives it at image size.
    """
    images, _ = _images(image, parts.vae)
    check_choice(source, MASK_SOURCES, "mask source")
    mapper = difference_map if source == "diffedit" else attention_map
    latents = encode_image(parts, images)
    diff = mapper(parts, latents, source_prompt, target_prompt, num_draws=num_draws, strength=strength,
                  generator=generator)
    how = normalise or ("max" if source == "diffedit" else "minmax")
    threshold = MASK_THRESHOLDS[source] if threshold is None else threshold
    return mask_from_map(diff, threshold, normalise=how, grow_cells=grow_cells, peak_only=peak_only).cpu()


def diffedit_mask(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, **options) -> torch.Tensor:
    """Return DiffEdit's automatic mask at image size (B, 1, H, W) bool (edit_mask with source="diffedit").   [DiffEdit, nb 08]"""
    images, _ = _images(image, parts.vae)
    small = edit_mask(parts, images, source_prompt, target_prompt, source="diffedit", **options)
    return image_mask(small, images.shape[-2:])


# ----------------------------------------------------------------------------------------------
# 6. Prompt-to-prompt on a real image, and mask locking
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def p2p_latents(parts: text2image.Parts, inversion: Inversion, target_prompt, controller: AttentionController, *,
                guidance_scale: float = 4.0, layers=None, blend: Blend | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (z0_source, z0_target): both prompts sampled side by side from the inversion, the controller installed.   [P2P, nb 08]

    The UNet batch is CFG_LAYOUT; layers: processor names to control (default all; the others keep
    theirs). The original processors are restored on exit, also when sampling raises.
    """
    with attention.record_attention(parts.unet, controller, layers=layers):
        return edit_latents(parts, inversion, target_prompt, guidance_scale=guidance_scale, source_branch=True,
                            controller=controller, blend=blend)


def start_latents(inversion: Inversion, mask: torch.Tensor | None = None, generator=None) -> torch.Tensor:
    """Return the target's first latent: the inversion's, with fresh N(0, I) noise inside `mask` (latent size) if given."""
    first = inversion.start()
    if mask is None:
        return first
    return torch.where(mask.to(first.device), noise_lib.randn_like(first, generator), first)


def _reweight_scales(tokenizer, target: str, reweight: dict[str, float]) -> torch.Tensor:
    scales = torch.ones(tokenizer.model_max_length)
    for word, scale in reweight.items():
        for pos in token_positions(tokenizer, target, word):
            scales[pos] = float(scale)
    return scales


@torch.no_grad()
def prompt_to_prompt(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *,
                     inversion: str = "edit_friendly", num_steps: int = 25, guidance_scale: float = 4.0,
                     strength: float = 1.0, cross_window=(0.0, 0.8), self_window=(0.0, 0.2), mode: str = "auto",
                     reweight: dict[str, float] | None = None, local_blend: bool = True,
                     blend_threshold: float = 0.5, blend_start: float = 0.2, blend_grow: int = 1,
                     blend_normalise: str = "minmax", return_mask: bool = False,
                     generator: torch.Generator | None = None, **inversion_options):
    """Edit a real image by prompt-to-prompt: invert under the source prompt, then run source and target side by side.   [P2P, nb 08]

    mode 'swap' (word swap; prompts must align token by token), 'refine' (words added or removed) or
    'auto' (swap when the prompts align, else refine). reweight {word of the target prompt: scale}
    scales that word's cross-attention (e.g. {"red": 2.0}). Windows are fractions of the steps.
    inversion: one of INVERSIONS; the source branch follows it, the target takes the source's maps.
    local_blend: after each step from blend_start on, keep the target's latents only where the
    changed words are attended (LocalBlend with blend_threshold, blend_grow, blend_normalise), the
    source branch's elsewhere. return_mask: also return LocalBlend's final mask at image size.
    """
    images, single = _images(image, parts.vae)
    b = len(images)
    sources, targets = _prompts(source_prompt, b, "source_prompt"), _prompts(target_prompt, b, "target_prompt")
    if not reweight:  # re-weighting may keep the prompt and only scale a word
        check_edit_prompts(parts.tokenizer, sources, targets)
    cross_window, self_window = check_window(cross_window, "cross_window"), check_window(self_window, "self_window")
    mappers = [token_mapper(parts.tokenizer, s, t, mode) for s, t in zip(sources, targets)]
    if any(not torch.equal(m, mappers[0]) for m in mappers):
        raise CourseInputError("prompt_to_prompt runs one controller per batch: give prompt pairs that align alike "
                               "(or edit the images one at a time).")
    blender = None
    if local_blend:
        check_choice(blend_normalise, ("max", "minmax"), "blend_normalise")
        positions = [changed_positions(parts.tokenizer, s, t) for s, t in zip(sources, targets)]
        blender = LocalBlend([p[0] for p in positions], [p[1] for p in positions],
                             side=parts.unet.config.sample_size, threshold=_check_fraction(blend_threshold, "blend_threshold"),
                             start=_check_fraction(blend_start, "blend_start"),
                             grow_cells=_check_count(blend_grow, "blend_grow"), normalise=blend_normalise)
    kwargs = dict(mapper=mappers[0], cross_window=cross_window, self_window=self_window, local_blend=blender)
    if reweight:
        controller = AttentionReweight(**kwargs, scales=_reweight_scales(parts.tokenizer, targets[0], reweight))
    else:
        controller = AttentionReplace(**kwargs)
    inv = _invert_images(parts, images, sources, inversion=inversion, num_steps=num_steps, strength=strength,
                         guidance_scale=guidance_scale, generator=generator, **inversion_options)
    _, z = p2p_latents(parts, inv, targets, controller, guidance_scale=guidance_scale, blend=blender)
    out = _output(decode_latents(parts, z), single)
    if not return_mask:
        return out
    if blender is None:
        raise CourseInputError("return_mask needs local_blend=True (the mask is local blending's).")
    return out, _output(image_mask(blender.mask(), images.shape[-2:]).cpu(), single)


@torch.no_grad()
def mask_locking(parts: text2image.Parts, image: torch.Tensor, source_prompt, target_prompt, *, mask=None,
                 inversion: str = "ddim", num_steps: int = 25, guidance_scale: float = 4.0, strength: float = 1.0,
                 mask_source: str = "diffedit", mask_draws: int = 4, mask_strength: float = 0.7,
                 mask_threshold: float | None = None, mask_grow: int = 1, start: str = "inverted",
                 composite: bool = False,
                 return_mask: bool = False, generator: torch.Generator | None = None, **inversion_options):
    """Edit inside a mask only: invert, then sample the target with latent blending outside the mask.   [DiffEdit, nb 08]

    mask: True where the edit may change the image, at image size (check_mask's shapes), taken to
    latent size (a cell is in it if any of its pixels is) with its holes filled; None computes it
    automatically from the image and the two prompts (edit_mask with mask_source, mask_draws,
    mask_strength, mask_threshold, mask_grow; generator draws its noise). After every step the
    latents outside the mask are the inversion's path at that step, so there the final latent
    equals the source's latent z0 exactly and the pixels differ from the source by the VAE's
    reconstruction error (plus the decoder's reach across the mask's border).
    start: what the masked latents start from: "inverted" (the inversion's noisiest latent: the
    source's layout, which a colour or shape edit keeps) or "noise" (fresh N(0, I), as inpainting).
    composite=True then pastes the source pixels outside the mask: a perfect lock by construction
    (a reference row, never the automatic method). return_mask: also return the mask at image size.
    """
    images, single = _images(image, parts.vae)
    b = len(images)
    sources, targets = _prompts(source_prompt, b, "source_prompt"), _prompts(target_prompt, b, "target_prompt")
    check_edit_prompts(parts.tokenizer, sources, targets)
    edit_timesteps(num_steps, strength)  # check steps and strength before any work
    check_choice(start, ("inverted", "noise"), "start")
    if mask is None:
        small = edit_mask(parts, images, sources, targets, source=mask_source, num_draws=mask_draws,
                          strength=mask_strength, threshold=mask_threshold, grow_cells=mask_grow, generator=generator)
    else:
        f = vae_lib.downsampling_factor(parts.vae)
        small = fill_holes(latent_mask(check_mask(mask, images), (images.shape[-2] // f, images.shape[-1] // f)))
    small = small.to(parts.device)
    inv = _invert_images(parts, images, sources, inversion=inversion, num_steps=num_steps, strength=strength,
                         guidance_scale=guidance_scale, generator=generator, **inversion_options)
    first = start_latents(inv, small if start == "noise" else None, generator)

    def lock(i, k, source, target):
        return torch.where(small, target, source)

    _, z = edit_latents(parts, inv, targets, guidance_scale=guidance_scale, blend=lock, start=first)
    out = decode_latents(parts, z)
    full = image_mask(small.cpu(), images.shape[-2:])
    if composite:
        pixel_mask = check_mask(mask, images).cpu() if mask is not None else full
        out = torch.where(pixel_mask, out, images.float().cpu())
    out = _output(out, single)
    return (out, _output(full, single)) if return_mask else out


# ----------------------------------------------------------------------------------------------
# One signature for the benchmark
# ----------------------------------------------------------------------------------------------

EditMethod = Callable[..., torch.Tensor]  # (parts, image, source_prompt, target_prompt, *, generator, **options)

METHODS: dict[str, EditMethod] = {
    "sdedit": sdedit,
    "inversion": inversion_edit,
    "prompt_to_prompt": prompt_to_prompt,
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
