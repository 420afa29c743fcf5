"""Text to image on the shapes world: a UNet2DConditionModel on the VAE's latents, read through cross-attention.   [notebook 06]

The three parts of Stable Diffusion, each trained earlier in the course or here:

    prompt --tokenizer--> ids --text encoder (data/clip's text tower cut to TEXT_LAYERS, frozen)--> c (B, 32, 64)
    z_T ~ N(0, I) (B, 4, 8, 8) --UNet2DConditionModel(z_t, t, c), CFG, DDIM--> z_0 --VAE decoder--> image (B, 3, 32, 32)

The UNet is trained with the course's one loop (training.train) and the diffusion loss of nb 03 on
scaled VAE latents, with the caption replaced by the empty prompt "" for 10 % of the examples
(caption dropout), so that one network gives both eps(z_t, c) and eps(z_t, "") for classifier-free
guidance. Its noise schedule is Stable Diffusion's (scaled_linear, beta 0.00085 to 0.012, 1,000 steps).

    >>> from course_lib import text2image
    >>> parts = text2image.load_parts()                       # shipped unet, vae, tokenizer, text encoder
    >>> images = text2image.generate(parts, ["a red circle in the top left"], guidance_scale=4.0,
    ...                              generator=torch.Generator().manual_seed(0))   # (1, 3, 32, 32) in [-1, 1]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib import checkpoints, clip, environment, guidance, models, samplers, schedules, shapes, text
from course_lib import noise as noise_lib
from course_lib import vae as vae_lib
from course_lib.guidance import check_guidance_scale
from course_lib.validation import CourseInputError

# The denoiser. 8x8 latents need only two resolutions (8x8 with cross-attention, then 4x4) and
# the cross-attention mid block at 4x4; cross_attention_dim is the text encoder's hidden size.
UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    layers_per_block=1,
    block_out_channels=(64, 128),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=16,
)
SCHEDULE = schedules.NoiseSchedule("scaled_linear", 1000)  # Stable Diffusion's betas
CAPTION_DROPOUT = 0.1  # share of training captions replaced by "" (the unconditional branch of CFG)
TEXT_ENCODER = "clip"  # data/clip: its text tower is the frozen text encoder
# ... read at its embedding layer: the tiny CLIP's 3 transformer layers learnt colour-shape *pairs*,
# so from layer 1 on a linear probe reads the shape of an unseen pair ("a blue triangle") right only
# about half the time, against every time at the embeddings (text_layer_probe, nb 06). The course's
# first UNet read the last layer and drew held-out pairs with the right shape 70 % of the time at
# g = 4 (the manifest of commit 8d69c27); at layer 0, 94 % (data/text2image's manifest).
TEXT_LAYERS = 0

# The DDIMScheduler the pipeline folder ships: text2image.SCHEDULE's betas, and Stable Diffusion 1.5's
# choices for the rest. StableDiffusionPipeline rewrites steps_offset != 1 and clip_sample=True itself
# (with a deprecation warning), so these two are not free; generate_latents follows them. It lives here,
# with the model it samples; pipeline.py re-exports it.
SCHEDULER_CONFIG = dict(
    **SCHEDULE.diffusers_config(),  # num_train_timesteps, beta_schedule, beta_start, beta_end
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,  # after the last step, alpha_bar = alphas_cumprod[0], not 1
    timestep_spacing="leading",
    steps_offset=1,  # leading timesteps + 1: 961, 921, ..., 1 for 25 steps
)


def scheduler():
    """Return the DDIMScheduler of the course's pipeline folder (SCHEDULER_CONFIG).   [DDIM, nb 06]"""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SCHEDULER_CONFIG)


def scheduler_alpha_bars() -> torch.Tensor:
    """Return the scheduler's alphas_cumprod (1000,) float32: the table the pipeline's DDIM steps use.

    diffusers computes the cumulative product in float32; SCHEDULE.alpha_bars is the float64
    product rounded to float32. They differ by <= 5e-7, which moves 25-step latents by ~3e-5 (measured on
    the course's UNet; the decoded images by ~2e-6): the course's loop uses this table to match the pipeline.
    """
    return scheduler().alphas_cumprod.clone()


def make_unet(seed: int = 0, **overrides):
    """Return a fresh UNet2DConditionModel with UNET_CONFIG (overrides replace keys), seeded weights."""
    from diffusers import UNet2DConditionModel

    with models.seeded(seed):
        return UNet2DConditionModel(**{**UNET_CONFIG, **overrides})


@dataclass
class Parts:
    """The four parts a text-to-image model is made of (the components of StableDiffusionPipeline but the scheduler)."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    tokenizer: object
    text_encoder: torch.nn.Module

    @property
    def device(self) -> torch.device:
        return models.model_device(self.unet)


def load_text_encoder(name: str = TEXT_ENCODER, device=None, *, num_layers: int | None = TEXT_LAYERS):
    """Return (tokenizer, CLIPTextModel): the frozen text tower of the shipped CLIP (nb 05), eval mode.

    Cut to its first num_layers transformer layers (text.truncate_text_encoder; TEXT_LAYERS by
    default, the encoder the shipped UNet was trained with); num_layers=None keeps all of them.
    """
    model, tokenizer = clip.load(name, device=device)
    encoder = text.text_encoder_of(model).eval()
    if num_layers is not None:
        encoder = text.truncate_text_encoder(encoder, num_layers)
    encoder.requires_grad_(False)
    return tokenizer, encoder


@torch.no_grad()
def text_layer_probe(tokenizer, text_encoder, *, num_train: int = 3000, num_test: int = 600, seed: int = 0) -> list[dict]:
    """Return, per layer of the text encoder, how well a linear probe reads the shape word's shape.   [nb 06]

    The probe (logistic regression) sees the hidden state at the shape word's position of one-object
    captions: it is fitted on 'train' captions and scored on them and on 'heldout' captions, whose
    colour-shape pairs ("a blue triangle", "a yellow circle") no training caption holds. Layer 0 is
    the embedding layer (token + position); layer k the output of transformer layer k; the last row
    ("final") is last_hidden_state, after the final layer norm (what encode_prompt returns). Pass the
    full encoder (load_text_encoder(num_layers=None)) to see every layer. Rows: {"layer", "train", "heldout"}.
    """
    from sklearn.linear_model import LogisticRegression

    encoder = text.text_encoder_of(text_encoder)
    shape_ids = {tokenizer.convert_tokens_to_ids(s) for s in shapes.SHAPES}

    def states(split: str, n: int, split_seed: int):
        scenes = shapes.sample_scenes(n, seed=split_seed, split=split, num_objects=(1, 1))
        captions = shapes.random_captions(scenes, torch.Generator().manual_seed(split_seed))
        ids = text.tokenize(captions, tokenizer)
        where = torch.tensor([next(j for j, t in enumerate(row) if t in shape_ids) for row in ids.tolist()])
        out = encoder(ids.to(encoder.device), output_hidden_states=True)
        rows = torch.arange(n)
        layers = [h[rows, where].float().cpu().numpy() for h in (*out.hidden_states, out.last_hidden_state)]
        labels = [shapes.SHAPES.index(s.objects[0].shape) for s in scenes]
        return layers, labels

    train_states, train_labels = states("train", num_train, seed)
    test_states, test_labels = states("heldout", num_test, seed + 1)
    names = [*range(len(train_states) - 1), "final"]
    rows = []
    for name, a, b in zip(names, train_states, test_states):
        probe = LogisticRegression(max_iter=2000).fit(a, train_labels)
        rows.append({"layer": name, "train": float(probe.score(a, train_labels)),
                     "heldout": float(probe.score(b, test_labels))})
    return rows


def load_parts(unet: str = "text2image", device=None) -> Parts:
    """Return the shipped Parts: data/<unet> (UNet2DConditionModel), data/vae, data/clip's tokenizer and text tower."""
    from diffusers import UNet2DConditionModel

    device = torch.device(device) if device is not None else environment.default_device()
    checkpoints.verify(unet)
    model = UNet2DConditionModel.from_pretrained(checkpoints.checkpoint_dir(unet), torch_dtype=torch.float32,
                                                 low_cpu_mem_usage=False).to(device).eval()
    tokenizer, encoder = load_text_encoder(device=device)
    return Parts(model, vae_lib.load_vae(device=device), tokenizer, encoder)


# ----------------------------------------------------------------------------------------------
# Training data: scenes -> (scaled VAE latents, prompt embeddings)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def latent_dataset(n: int, vae, tokenizer, text_encoder, *, seed: int = 0, split: str = "train",
                   num_objects=(1, shapes.MAX_OBJECTS), batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Return {"x0": scaled latents (n, 4, 8, 8), "encoder_hidden_states": (n, L, D)} of n captioned scenes.

    Scenes come from `split` ('train' never holds the held-out colour-shape pairs), each captioned
    with a random phrasing; latents are drawn from the VAE's posterior (as Stable Diffusion's
    training does) and scaled by vae.config.scaling_factor. Everything is drawn from `seed`.
    """
    generator = torch.Generator().manual_seed(seed)
    scenes = shapes.sample_scenes(n, split=split, num_objects=num_objects, generator=generator)
    captions = shapes.random_captions(scenes, generator)
    device = models.model_device(vae)
    latents, states = [], []
    for i in range(0, n, batch_size):
        images = shapes.render(scenes[i: i + batch_size]).to(device)
        mean, logvar = vae_lib.posterior(vae, images)
        noise = noise_lib.randn_like(mean, generator)
        latents.append((vae_lib.reparameterise(mean, logvar, noise) * vae.config.scaling_factor).float().cpu())
        states.append(text.encode_prompt(captions[i: i + batch_size], tokenizer, text_encoder).float().cpu())
    return {"x0": torch.cat(latents), "encoder_hidden_states": torch.cat(states)}


def null_condition(tokenizer, text_encoder) -> dict[str, torch.Tensor]:
    """Return {"encoder_hidden_states": embedding of ""} (1, L, D): what caption dropout puts in."""
    with torch.no_grad():
        return {"encoder_hidden_states": text.encode_prompt([""], tokenizer, text_encoder).float().cpu()}


# ----------------------------------------------------------------------------------------------
# Classifier-free guidance and the hand-written text-to-image loop
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def generate_latents(parts: Parts, prompts, *, guidance_scale: float = 4.0, num_steps: int = 25,
                     negative_prompt: str = "", generator: torch.Generator | None = None,
                     latents: torch.Tensor | None = None, alpha_bars: torch.Tensor | None = None,
                     sampler="ddim", spacing: str = "leading", steps_offset: int = 1, callback=None) -> torch.Tensor:
    """Return z_0 (B, C, h, w) for the prompts: encode, then a sampler with CFG (one batched UNet call per step).   [nb 06]

    Step by step what StableDiffusionPipeline does with the course's scheduler (SCHEDULER_CONFIG), so
    that both give the same image for the same generator (tests/test_pipeline.py):
    1. c = encode_prompt(prompts), and c_u = encode_prompt(negative_prompt) when g > 1;
    2. z_T ~ N(0, I) drawn from `generator` (on its device; the CPU by default) in the text
       encoder's dtype, unless `latents` is given (the pipeline's init_noise_sigma scaling is the
       sampler's business: samplers work on z_t itself);
    3. "leading" timesteps + steps_offset (961, 921, ..., 1 for 25 DDIM steps), the scheduler's
       float32 alphas_cumprod (scheduler_alpha_bars(), unless given); DDIM (eta = 0) lands on
       alphas_cumprod[0] after the last step, as set_alpha_to_one=False;
    4. each step, guidance.cfg_denoiser: the UNet on [unconditional rows; conditional rows] and
       eps = eps_u + g (eps_c - eps_u) when g > 1; for g <= 1 the pipeline turns CFG off and runs
       the conditional rows alone (eps = eps_c), and so does this loop. For the unconditional
       model, prompt "".
    sampler: 'ddim' (the pipeline folder's scheduler) or any of samplers.SAMPLERS, or a Sampler;
    'euler', 'heun' and 'dpmpp_2m' equal the pipeline with EulerDiscreteScheduler,
    HeunDiscreteScheduler and DPMSolverMultistepScheduler made from_config(SCHEDULER_CONFIG).
    """
    prompts = text.as_prompts(prompts)
    g = check_guidance_scale(guidance_scale)
    sampler = samplers.get_sampler(sampler)
    device = parts.device
    b = len(prompts)
    # 1. prompt embeddings: c, and c_u under CFG (B, L, D) each
    cond = text.encode_prompt(prompts, parts.tokenizer, parts.text_encoder, device=device)
    uncond = text.encode_prompt([negative_prompt] * b, parts.tokenizer, parts.text_encoder, device=device) \
        if g > 1.0 else None
    # 2. z_T, drawn as diffusers' randn_tensor draws it (on the generator's device, then moved)
    config = parts.unet.config
    size = config.sample_size if isinstance(config.sample_size, int) else config.sample_size[0]
    shape = (b, config.in_channels, size, size)
    if latents is None:
        x_T = noise_lib.randn(shape, generator, device=device, dtype=cond.dtype)
    else:
        x_T = latents.to(device=device, dtype=cond.dtype)
    ab = (scheduler_alpha_bars() if alpha_bars is None else alpha_bars).to(device)
    # 3.-4. the sampler through the timesteps with the CFG denoiser, then z_0
    denoiser = guidance.cfg_denoiser(parts.unet, g, {"encoder_hidden_states": cond},
                                     None if uncond is None else {"encoder_hidden_states": uncond},
                                     pipeline_convention=True)
    timesteps = sampler.timesteps(len(ab), num_steps, spacing, offset=steps_offset)
    return samplers.sample(denoiser, x_T, timesteps, sampler, alpha_bars=ab, final_alpha_bar=float(ab[0]),
                           generator=generator, callback=callback).x0


@torch.no_grad()
def generate(parts: Parts, prompts, *, guidance_scale: float = 4.0, num_steps: int = 25, batch_size: int = 256,
             generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """Return images (B, 3, H, W) in [-1, 1] on the CPU for the prompts: generate_latents, then the VAE decoder.   [nb 06]

    decoder(z_0 / scaling_factor) clamped to [-1, 1]: the pipeline's output_type="pt" image is
    (this + 1) / 2. Prompts go through in batches of batch_size (one z_T draw per batch).
    """
    prompts = text.as_prompts(prompts)
    out = []
    for i in range(0, len(prompts), batch_size):
        z = generate_latents(parts, prompts[i: i + batch_size], guidance_scale=guidance_scale, num_steps=num_steps,
                             generator=generator, **kwargs)
        out.append(vae_lib.decode(parts.vae, z.to(parts.vae.dtype)).float().clamp(-1, 1).cpu())
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# Caption adherence: the shapes judge on generated scenes
# ----------------------------------------------------------------------------------------------

ADHERENCE_KEYS = ("colour", "shape", "position", "count", "background", "all")


def adherence(images: torch.Tensor, expected) -> dict[str, float]:
    """Return the share of images the shapes judge finds right, per attribute and for all of them.   [nb 06]

    expected: one Scene or caption per image. 'all' needs colour, shape, position, count and background.
    """
    if len(images) != len(expected):
        raise CourseInputError(f"got {len(images)} images but {len(expected)} expectations; give one per image.")
    verdicts = [shapes.judge(image, want) for image, want in zip(images, expected)]
    out = {}
    for key in ADHERENCE_KEYS[:-1]:
        values = [getattr(v, key) for v in verdicts]
        out[key] = sum(bool(v) for v in values if v is not None) / max(1, sum(v is not None for v in values))
    out["all"] = sum(v.ok for v in verdicts) / len(verdicts)
    return out


def prompt_set(n: int, split: str = "test", *, num_objects=(1, 1), seed: int = 0) -> tuple[list, list[str]]:
    """Return (scenes, full captions) of n scenes: the prompts adherence is measured on.

    split='test': the training pairs, seeds training never drew; 'heldout': every scene holds a
    colour-shape pair that no training caption named.
    """
    scenes = shapes.sample_scenes(n, seed=seed, split=split, num_objects=num_objects)
    return scenes, [shapes.caption(s, "full") for s in scenes]


def adherence_sweep(parts: Parts, scales, *, num_prompts: int = 50, repeats: int = 4, split: str = "test",
                    num_objects=(1, 1), num_steps: int = 25, seed: int = 0) -> list[dict]:
    """Return one row per guidance scale g: adherence per attribute and within-prompt diversity.   [nb 06]

    num_prompts scenes of `split` ('test': the training pairs in unseen scenes; 'heldout': unseen
    colour-shape pairs), each prompt repeated `repeats` times with different starting noise, all from
    the same z_T for every g (seeded by `seed`), so only g changes. Each row: {"guidance_scale", the
    keys of adherence() (shares of the num_prompts x repeats images), "diversity" (the mean distance
    between two images of the same prompt, guidance.within_class_diversity)}.
    """
    scenes, prompts = prompt_set(num_prompts, split, num_objects=num_objects, seed=seed)
    scenes, prompts = [s for s in scenes for _ in range(repeats)], [p for p in prompts for _ in range(repeats)]
    labels = torch.arange(num_prompts).repeat_interleave(repeats)
    rows = []
    for g in scales:
        images = generate(parts, prompts, guidance_scale=g, num_steps=num_steps,
                          generator=torch.Generator().manual_seed(seed))
        rows.append({"guidance_scale": float(g), **adherence(images, scenes),
                     "diversity": guidance.within_class_diversity(images, labels) if repeats > 1 else float("nan")})
    return rows


EVAL_GUIDANCE = (1.0, 2.0, 4.0, 7.5)


def evaluate(unet, *, num_prompts: int = 200, guidance_scales=EVAL_GUIDANCE, num_steps: int = 25, seed: int = 0) -> dict:
    """Return adherence on single-object 'test' and 'heldout' prompts (and 2-3-object 'test' ones) per guidance scale."""
    tokenizer, encoder = load_text_encoder(device=models.model_device(unet))
    parts = Parts(unet.eval(), vae_lib.load_vae(device=models.model_device(unet)), tokenizer, encoder)
    out = {}
    for split, num_objects in (("test", (1, 1)), ("heldout", (1, 1)), ("test", (2, 3))):
        tag = f"{split}_{'single' if num_objects == (1, 1) else 'multi'}"
        scenes, prompts = prompt_set(num_prompts, split, num_objects=num_objects, seed=seed)
        for g in guidance_scales:
            images = generate(parts, prompts, guidance_scale=g, num_steps=num_steps,
                              generator=torch.Generator().manual_seed(seed))
            for key, value in adherence(images, scenes).items():
                out[f"adherence_{tag}_g{g:g}_{key}"] = round(value, 4)
    return out
