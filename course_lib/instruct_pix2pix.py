"""InstructPix2Pix on the shapes world: a UNet that reads the source image and an instruction, and draws the edit.   [notebook 09]

Brooks, Holynski & Efros (2023) train an image-conditioned Stable Diffusion on (source image,
instruction, edited image) triples. Here the triples come from the shapes world's exact edits
(shapes.random_edit), so there is no need for the paper's GPT-3 + prompt-to-prompt data generator:

    z_t (B, 4, 8, 8) ++ E(source) (B, 4, 8, 8) --UNet2DConditionModel(in_channels=8)(., t, c_instruction)--> eps

1. The model is the text-to-image UNet (data/text2image) with 4 more input channels on conv_in,
   their weights zero (the paper's initialisation: at step 0 the model is the text-to-image model).
2. The source image enters as the mode of the VAE's posterior, NOT scaled by the scaling factor
   (diffusers' StableDiffusionInstructPix2PixPipeline.prepare_image_latents), concatenated to z_t
   on the channels (models.model_output's `image_latents`).
3. The instruction is the canonical one (shapes.instruction: "make the red circle on the left
   blue"), through the same frozen text encoder as text2image; free phrasings reach it through the
   prompt writer (course_lib.language).
4. Training drops the instruction for 5 % of the examples, the image for 5 %, both for 5 %
   (the paper's sec. 3.2.1, as diffusers' train_instruct_pix2pix.py draws it: one uniform r per
   example, text dropped for r < 2p, image for p <= r < 3p), so one network gives the three
   predictions of the two-scale guidance (the paper's eq. 3):

       eps = eps(z, 0, 0) + s_I (eps(z, I, 0) - eps(z, 0, 0)) + s_T (eps(z, I, T) - eps(z, I, 0))

   with s_I the image guidance scale and s_T the text guidance scale. `edit_latents` is the
   pipeline's loop step by step; tests/test_instruct_pix2pix.py asserts the two are equal.

Training pairs come from split "train" scenes (data seed INSTRUCT_DATA_SEED); ShapesEdit's cases
come from split "test" (shapes.edit_cases), a seed stream no training run draws.
"""

from __future__ import annotations

import torch

from course_lib import latent, models, samplers, shapes, text, text2image
from course_lib import noise as noise_lib
from course_lib import vae as vae_lib
from course_lib.guidance import check_guidance_scale
from course_lib.validation import CourseInputError, check_int, check_number, check_positive_int

NAME = "instruct_pix2pix"  # data/instruct_pix2pix: the UNet
IMAGE_CHANNELS = 4  # the source latent's channels, concatenated after z_t's
DROPOUT = 0.05  # p of the paper: text alone, image alone, both, each for a share p of the examples
TEXT_GUIDANCE = 4.0  # s_T: the best row of the sweep on the development cases (bench_instructions.py --only sweep); SD uses 7.5
IMAGE_GUIDANCE = 1.5  # s_I: the same sweep's best, and the paper's default
NUM_STEPS = 25
DATASET_SIZE = 30_000
INSTRUCT_DATA_SEED = 0


def make_unet(base: torch.nn.Module | None = None):
    """Return the InstructPix2Pix UNet: `base` (the text-to-image UNet) with conv_in widened to 8 channels, new weights 0.   [IP2P sec. 3.2, nb 09]"""
    from diffusers import UNet2DConditionModel

    if base is None:
        base = text2image.load_parts(device="cpu").unet
    config = {k: v for k, v in dict(base.config).items() if not k.startswith("_")}
    config["in_channels"] = base.config.in_channels + IMAGE_CHANNELS
    unet = UNet2DConditionModel(**config)
    state = base.state_dict()
    w = state["conv_in.weight"]  # (C_out, 4, 3, 3)
    state["conv_in.weight"] = torch.cat([w, torch.zeros(w.shape[0], IMAGE_CHANNELS, *w.shape[2:], dtype=w.dtype)], 1)
    unet.load_state_dict(state)
    return unet


@torch.no_grad()
def image_latents(vae, images: torch.Tensor) -> torch.Tensor:
    """Return the source condition: the mode of the VAE posterior, unscaled (B, 4, h, w), as the pipeline encodes it.   [IP2P, nb 09]

    StableDiffusionInstructPix2PixPipeline.prepare_image_latents: the posterior's mode, neither
    shifted nor scaled (unlike latent.LatentSystem.encode_image, the latents the denoiser starts from).
    """
    vae_lib.check_images(images, vae, "images")
    mean, _ = vae_lib.posterior(vae, images.to(models.model_device(vae), vae.dtype))
    return mean


def random_pairs(n: int, generator: torch.Generator, split: str = "train") -> list[shapes.EditResult]:
    """Return n (source, edit, target) cases of `split`: scenes as sample_scenes draws them, one random edit each.

    generator: a torch.Generator (or an int seed) that draws the scenes and then the edits.
    """
    generator = noise_lib.as_generator(generator)
    if generator is None:
        raise CourseInputError("random_pairs needs a generator (a torch.Generator or an int seed) to draw the cases.")
    scenes = shapes.sample_scenes(check_positive_int(n, "n"), split=split, generator=generator)
    return [shapes.make_edit(s, shapes.random_edit(s, generator)) for s in scenes]


@torch.no_grad()
def pair_dataset(n: int, vae, tokenizer, text_encoder, *, seed: int = INSTRUCT_DATA_SEED, split: str = "train",
                 batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Return the training triples: {"x0": scaled target latents, "image_latents", "encoder_hidden_states"}.   [nb 09]

    n scenes of `split` ('train': never ShapesEdit's 'test' scenes, never a held-out colour-shape
    pair), one random edit each (shapes.random_edit, all five kinds), drawn from `seed`. x0 is drawn
    from the VAE posterior of the target and scaled (vae_lib.encode, as text2image.latent_dataset); image_latents is
    the source's posterior mode, unscaled; the text is the canonical instruction.
    """
    n, batch_size = check_positive_int(n, "n"), check_positive_int(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    cases = random_pairs(n, generator, split)
    x0, cond_images, states = [], [], []
    for i in range(0, n, batch_size):
        chunk = cases[i: i + batch_size]
        targets = torch.stack([c.target_image for c in chunk])
        x0.append(vae_lib.encode(vae, targets, generator=generator, sample_mode="sample").float().cpu())
        cond_images.append(image_latents(vae, torch.stack([c.source_image for c in chunk])).float().cpu())
        states.append(text.encode_prompt([c.instruction for c in chunk], tokenizer, text_encoder).float().cpu())
    return {"x0": torch.cat(x0), "image_latents": torch.cat(cond_images), "encoder_hidden_states": torch.cat(states)}


def conditioning_dropout(cond: dict, generator: torch.Generator | None, *, null_text: torch.Tensor,
                         p: float = DROPOUT) -> dict:
    """Drop the instruction (to "") where r < 2p and the image (to zeros) where p <= r < 3p, r ~ U(0, 1) per example.   [IP2P sec. 3.2.1]"""
    b = cond["image_latents"].shape[0]
    generator = noise_lib.as_generator(generator)
    p = check_number(p, "p", low=0, high=1 / 3, hint="the share of each of the three dropouts")
    device = generator.device if generator is not None else torch.device("cpu")
    r = torch.rand(b, generator=generator, device=device).to(cond["image_latents"].device)
    out = dict(cond)
    drop_text = (r < 2 * p).reshape(-1, 1, 1)
    out["encoder_hidden_states"] = torch.where(drop_text, null_text.to(cond["encoder_hidden_states"]),
                                               cond["encoder_hidden_states"])
    drop_image = ((r >= p) & (r < 3 * p)).reshape(-1, 1, 1, 1)
    out["image_latents"] = torch.where(drop_image, torch.zeros_like(cond["image_latents"]), cond["image_latents"])
    return out


# ----------------------------------------------------------------------------------------------
# Two guidance scales and the editing loop
# ----------------------------------------------------------------------------------------------

def check_image_guidance_scale(value) -> float:
    """Return the image guidance scale s_I as a float >= 0 (numpy scalars too), else raise."""
    return check_number(value, "image_guidance_scale", low=0, hint="1.5 is the paper's default")


def uses_guidance(guidance_scale: float, image_guidance_scale: float) -> bool:
    """Return whether the pipeline runs the three-row guidance: s_T > 1 and s_I >= 1 (else one conditional row)."""
    return guidance_scale > 1.0 and image_guidance_scale >= 1.0


def dual_guidance(e_full: torch.Tensor, e_image: torch.Tensor, e_none: torch.Tensor, guidance_scale: float,
                  image_guidance_scale: float) -> torch.Tensor:
    """Return eps = e_none + s_I (e_image - e_none) + s_T (e_full - e_image): the paper's eq. 3.   [IP2P eq. 3, nb 09]

    e_full = eps(z, E(x), T), e_image = eps(z, E(x), 0), e_none = eps(z, 0, 0); s_T = guidance_scale,
    s_I = image_guidance_scale. It comes from p(z | I, T) ~ p(T | I, z) p(I | z) p(z): the image's
    score weighted by s_I, the text's given the image by s_T.
    """
    return e_none + image_guidance_scale * (e_image - e_none) + guidance_scale * (e_full - e_image)


def text_first_guidance(e_full: torch.Tensor, e_text: torch.Tensor, e_none: torch.Tensor, guidance_scale: float,
                        image_guidance_scale: float) -> torch.Tensor:
    """Return eps = e_none + s_T (e_text - e_none) + s_I (e_full - e_text): eq. 3 from the other factorisation.   [nb 09]

    p(z | I, T) ~ p(I | T, z) p(T | z) p(z): the text's score weighted by s_T, the image's given the
    text by s_I; e_text = eps(z, 0, T), the prediction that training's "image only" dropout teaches.
    """
    return e_none + guidance_scale * (e_text - e_none) + image_guidance_scale * (e_full - e_text)


def guidance_rows(cond: torch.Tensor, uncond: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the conditions of the three row blocks of one guided step: [(image, text); (image, ""); (zeros, "")].

    The pipeline's order; models.model_output concatenates each row's image latent to z_t (4 + 4 = 8
    channels). Shapes: cond, uncond (B, L, D), image (B, 4, h, w) -> (3B, L, D) and (3B, 4, h, w).
    """
    return {"encoder_hidden_states": torch.cat([cond, uncond, uncond]),
            "image_latents": torch.cat([image, image, torch.zeros_like(image)])}


def dual_cfg_denoiser(unet, guidance_scale: float, image_guidance_scale: float, cond: torch.Tensor,
                      uncond: torch.Tensor, image: torch.Tensor):
    """Return denoiser(z_t, t) -> eps of the paper's eq. 3, from one UNet call on three row blocks.   [IP2P eq. 3, nb 09]

    The rows are guidance_rows' [(image, text); (image, ""); (zeros, "")], the pipeline's order, and
    dual_guidance combines them. When uses_guidance() is False the conditional rows run alone (the
    pipeline's convention). The UNet runs through models.call_model (in its own dtype).
    Shapes: cond, uncond (B, L, D); image (B, 4, h, w).
    """
    s_t, s_i = check_guidance_scale(guidance_scale), check_image_guidance_scale(image_guidance_scale)
    if uses_guidance(s_t, s_i):
        rows = guidance_rows(cond, uncond, image)
    else:
        rows = {"encoder_hidden_states": cond, "image_latents": image}
    blocks = len(rows["image_latents"]) // len(image)

    @torch.no_grad()
    def denoiser(zt: torch.Tensor, t: int) -> torch.Tensor:
        eps = latent.call_model(unet, torch.cat([zt] * blocks), t, rows).to(zt.dtype)
        if blocks == 1:
            return eps
        e_text, e_image, e_uncond = eps.chunk(3)
        return dual_guidance(e_text, e_image, e_uncond, s_t, s_i)

    return denoiser


class _InputRecorder(torch.nn.Module):
    """Stands in for the UNet: records what it is given and predicts zero noise (4 channels)."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels, self.seen = out_channels, {}
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the recorder a dtype and a device

    def forward(self, sample, timestep, encoder_hidden_states=None, **_):
        self.seen = {"sample": sample.detach().clone(), "timestep": timestep.detach().clone(),
                     "encoder_hidden_states": encoder_hidden_states.detach().clone()}
        return torch.zeros(sample.shape[0], self.out_channels, *sample.shape[2:], dtype=sample.dtype)


def guidance_inputs(zt: torch.Tensor, t: int, cond: torch.Tensor, uncond: torch.Tensor, image: torch.Tensor, *,
                    guidance_scale: float = TEXT_GUIDANCE, image_guidance_scale: float = IMAGE_GUIDANCE) -> dict:
    """Return what one step of dual_cfg_denoiser feeds the UNet: {"sample" (3B, 8, h, w), "timestep", "encoder_hidden_states"}.   [nb 09]

    Recorded from the denoiser itself (a stand-in UNet), so it is the batch the sampler really sends:
    sample = [z_t ++ E(x); z_t ++ E(x); z_t ++ 0] on the channels, texts [T; ""; ""] (B rows when
    uses_guidance() is False). Shapes: zt, image (B, 4, h, w); cond, uncond (B, L, D).
    """
    recorder = _InputRecorder(zt.shape[1])
    dual_cfg_denoiser(recorder, guidance_scale, image_guidance_scale, cond, uncond, image)(zt, t)
    return recorder.seen


def check_parts(parts: text2image.Parts) -> None:
    """Raise unless parts is a UNet system whose UNet takes the latent and the source image (in_channels = latent + image)."""
    latent.check_system(parts, latent.UNetSystem)
    channels = parts.vae.config.latent_channels
    if parts.unet.config.in_channels != channels + IMAGE_CHANNELS:
        raise CourseInputError(f"this UNet takes {parts.unet.config.in_channels} input channels; InstructPix2Pix needs "
                               f"{channels + IMAGE_CHANNELS} (z_t and the source latent). Load it with "
                               f"instruct_pix2pix.load_parts().")


@torch.no_grad()
def edit_latents(parts: text2image.Parts, images: torch.Tensor, instructions, *, guidance_scale: float = TEXT_GUIDANCE,
                 image_guidance_scale: float = IMAGE_GUIDANCE, num_steps: int = NUM_STEPS, sampler="ddim",
                 negative_prompt: str = "", generator=None, latents: torch.Tensor | None = None) -> torch.Tensor:
    """Return the edited z_0 (B, 4, h, w): StableDiffusionInstructPix2PixPipeline's loop, step by step.   [IP2P, nb 09]

    1. c = parts.encode_prompt(instructions), c_u = parts.encode_prompt(negative_prompt); 2. the source
    latents E(x) (posterior mode, unscaled: image_latents); 3. z_T = parts.prepare_latents (N(0, I)
    from the generator, a torch.Generator or an int seed, in the text encoder's dtype, unless `latents`);
    4. the sampler (DDIM by default, the system's scheduler and table) with dual_cfg_denoiser.
    """
    check_parts(parts)
    instructions = text.as_prompts(instructions)
    vae_lib.check_images(images, parts.vae, "images")
    if images.shape[0] != len(instructions):
        raise CourseInputError(f"give one (3, H, W) image per instruction: {len(instructions)} instruction(s), "
                               f"images of shape {tuple(images.shape)}.")
    if not isinstance(negative_prompt, str):
        raise CourseInputError(f"negative_prompt must be one str ('' for none), got {type(negative_prompt).__name__}.")
    s_t, s_i = check_guidance_scale(guidance_scale), check_image_guidance_scale(image_guidance_scale)
    sampler = samplers.get_sampler(sampler)
    generator = noise_lib.as_generator(generator)
    timesteps = parts.timesteps(num_steps, sampler)
    cond = parts.encode_prompt(instructions)["encoder_hidden_states"]
    uncond = parts.encode_prompt([negative_prompt] * len(instructions))["encoder_hidden_states"]
    image = image_latents(parts.vae, images).to(parts.device, cond.dtype)
    x_T = parts.prepare_latents(len(instructions), generator=generator, latents=latents, dtype=cond.dtype,
                                size=tuple(image.shape[-2:]))
    denoiser = dual_cfg_denoiser(parts.unet, s_t, s_i, cond, uncond, image)
    ending = {"final_alpha_bar": parts.final_alpha_bar} if isinstance(sampler, samplers.DDIM) else {}
    return samplers.sample(denoiser, x_T, timesteps, sampler, alpha_bars=parts.alpha_bars, generator=generator,
                           **ending).x0


@torch.no_grad()
def edit(parts: text2image.Parts, image: torch.Tensor, instruction, **options) -> torch.Tensor:
    """Return the edited image(s) in [-1, 1], same shape as `image` ((3, H, W) or (B, 3, H, W)).   [nb 09]

    options: edit_latents' (guidance scales, num_steps, sampler, negative_prompt, generator, latents).
    """
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4) or image.shape[-3] != 3:
        raise CourseInputError(f"image must be a (3, H, W) or (B, 3, H, W) tensor in [-1, 1], got "
                               f"{getattr(image, 'shape', type(image).__name__)}.")
    single = image.ndim == 3
    images = image[None] if single else image
    instructions = text.as_prompts(instruction)
    if len(instructions) == 1 and len(images) > 1:
        instructions = instructions * len(images)
    out = parts.decode_latents(edit_latents(parts, images, instructions, **options))
    return out[0] if single else out


def load_parts(name: str = NAME, device=None) -> text2image.Parts:
    """Return Parts with the shipped InstructPix2Pix UNet (data/instruct_pix2pix), the VAE and the text encoder."""
    return text2image.load_parts(name, device=device)


# ----------------------------------------------------------------------------------------------
# The benchmark's common signature, and diffusers' pipeline
# ----------------------------------------------------------------------------------------------

def method(parts: text2image.Parts):
    """Return a ShapesEdit method (image, source_prompt, target_prompt, *, generator) that edits by instruction.

    The instruction is the canonical one of the edit between the two captions (shapes.caption_edit
    reads it from them), so the row sees what a user's instruction becomes after the prompt writer:
    no mask, no pasted pixels.
    """
    def run(image, source_prompt, target_prompt, *, generator=None, **options):
        instruction = shapes.canonical_instruction(source_prompt, target_prompt)
        return edit(parts, image, instruction, generator=generator, **options)

    return run


def make_pipeline(parts: text2image.Parts):
    """Return a StableDiffusionInstructPix2PixPipeline of the parts (shared modules) and the course's DDIM scheduler."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    check_parts(parts)
    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=parts.vae, text_encoder=text.text_encoder_of(parts.text_encoder), tokenizer=parts.tokenizer,
        unet=parts.unet, scheduler=parts.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_images(pipe, images: torch.Tensor, instructions, *, num_steps: int = NUM_STEPS,
                    guidance_scale: float = TEXT_GUIDANCE, image_guidance_scale: float = IMAGE_GUIDANCE,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Return the pipeline's edits as (B, 3, H, W) in [-1, 1] on the CPU: pipe(instructions, image=(images + 1) / 2, ...).

    generator: a torch.Generator or an int seed. Instructions longer than the tokenizer's limit are
    refused here (the pipeline would cut them and only log a line).
    """
    instructions = text.check_prompt_lengths(instructions, pipe.tokenizer)
    vae_lib.check_images(images, pipe.vae, "images")
    out = pipe(instructions, image=(images + 1) / 2, num_inference_steps=check_positive_int(num_steps, "num_steps"),
               guidance_scale=check_guidance_scale(guidance_scale),
               image_guidance_scale=check_image_guidance_scale(image_guidance_scale),
               generator=noise_lib.as_generator(generator), output_type="pt").images
    return (out.float() * 2 - 1).cpu()
