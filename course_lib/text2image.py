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

import torch

from course_lib import checkpoints, clip, environment, guidance, latent, models, samplers, shapes, text
from course_lib import noise as noise_lib
from course_lib import vae as vae_lib
from course_lib.guidance import check_guidance_scale  # noqa: F401  (editing reads text2image.check_guidance_scale)
from course_lib.validation import (CourseInputError, check_float_tensor, check_int, check_positive_int,
                                   check_schedule_table)

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
CAPTION_DROPOUT = 0.1  # share of training captions replaced by "" (the unconditional branch of CFG)
TEXT_ENCODER = "clip"  # data/clip: its text tower is the frozen text encoder
# ... read at its embedding layer: the tiny CLIP's 3 transformer layers learnt colour-shape *pairs*,
# so from layer 1 on a linear probe reads the shape of an unseen pair ("a blue triangle") right only
# about half the time, against every time at the embeddings (text_layer_probe, nb 06). The course's
# first UNet read the last layer and drew held-out pairs with the right shape 70 % of the time at
# g = 4 (the manifest of commit 8d69c27); at layer 0, 94 % (data/text2image's manifest).
TEXT_LAYERS = 0

# The UNet family's noise schedule and the DDIMScheduler the pipeline folder ships live with the latent
# system that holds them (latent.SCHEDULE, latent.SCHEDULER_CONFIG); here under their old names.
SCHEDULE = latent.SCHEDULE  # Stable Diffusion's betas: scaled_linear, 0.00085 to 0.012, 1,000 steps
SCHEDULER_CONFIG = latent.SCHEDULER_CONFIG
scheduler = latent.make_scheduler  # a fresh DDIMScheduler(**SCHEDULER_CONFIG)

# The text-to-image model of the course: latent.UNetSystem(unet, vae, tokenizer, text_encoder, scheduler=None),
# the components of StableDiffusionPipeline with the course's DDIMScheduler by default.
Parts = latent.UNetSystem


def scheduler_alpha_bars() -> torch.Tensor:
    """Return the course scheduler's alphas_cumprod (1000,) float32: the table the pipeline's DDIM steps use.   [nb 06]

    A system holds its own (Parts(...).alpha_bars, read once from its scheduler); this is the same table
    for a notebook cell that has no system at hand. diffusers computes the cumulative product in float32;
    SCHEDULE.alpha_bars is the float64 product rounded to float32. They differ by <= 5e-7, which moves
    25-step latents by ~3e-5 (measured on the course's UNet; the decoded images by ~2e-6).
    """
    return scheduler().alphas_cumprod.clone()


def make_unet(seed: int = 0, **overrides):
    """Return a fresh UNet2DConditionModel with UNET_CONFIG (overrides replace keys), seeded weights."""
    from diffusers import UNet2DConditionModel

    with models.seeded(seed):
        return UNet2DConditionModel(**{**UNET_CONFIG, **overrides})


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
    training does) and scaled (vae_lib.encode, sample_mode "sample"). Everything is drawn from `seed`.
    """
    n, batch_size = check_positive_int(n, "n"), check_positive_int(batch_size, "batch_size")
    generator = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    scenes = shapes.sample_scenes(n, split=split, num_objects=num_objects, generator=generator)
    captions = shapes.random_captions(scenes, generator)
    latents, states = [], []
    for i in range(0, n, batch_size):
        images = shapes.render(scenes[i: i + batch_size])
        latents.append(vae_lib.encode(vae, images, generator=generator, sample_mode="sample").float().cpu())
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
                     negative_prompt: str = "", generator=None, latents: torch.Tensor | None = None,
                     alpha_bars: torch.Tensor | None = None, sampler="ddim", spacing: str | None = None,
                     steps_offset: int | None = None, callback=None) -> torch.Tensor:
    """Return z_0 (B, C, h, w) for the prompts: the system's steps, then a sampler with CFG (one batched UNet call per step).   [nb 06]

    Step by step what StableDiffusionPipeline does with the system's scheduler (by default the course's,
    SCHEDULER_CONFIG), so that both give the same image for the same generator (tests/test_pipeline.py):
    1. c = parts.encode_prompt(prompts), and c_u = parts.encode_prompt(negative_prompt) when g > 1;
    2. z_T = parts.prepare_latents: N(0, I) drawn from `generator` (a torch.Generator or an int seed, on
       its device; the CPU by default) in the text encoder's dtype, unless `latents` is given (checked:
       shape, finite). The pipeline's init_noise_sigma scaling is the sampler's business;
    3. the scheduler's spacing and steps_offset ("leading" + 1: 961, 921, ..., 1 for 25 DDIM steps;
       `spacing` and `steps_offset` override them) over parts.alpha_bars, the scheduler's float32
       alphas_cumprod (or `alpha_bars`, given); DDIM (eta = 0) lands on parts.final_alpha_bar
       (alphas_cumprod[0], as set_alpha_to_one=False) after the last step;
    4. each step, guidance.cfg_denoiser: the UNet on [unconditional rows; conditional rows] and
       eps = eps_u + g (eps_c - eps_u) when g > 1; for g <= 1 the pipeline turns CFG off and runs
       the conditional rows alone (eps = eps_c), and so does this loop. For the unconditional
       model, prompt "".
    sampler: 'ddim' (the pipeline folder's scheduler) or any of samplers.SAMPLERS, or a Sampler;
    'euler', 'heun' and 'dpmpp_2m' equal the pipeline with EulerDiscreteScheduler,
    HeunDiscreteScheduler and DPMSolverMultistepScheduler made from_config(SCHEDULER_CONFIG).
    """
    latent.check_system(parts, latent.UNetSystem)
    prompts = text.as_prompts(prompts)
    g = check_guidance_scale(guidance_scale)
    if not isinstance(negative_prompt, str):
        raise CourseInputError(f"negative_prompt must be one str ('' for none), got {type(negative_prompt).__name__}.")
    sampler = samplers.get_sampler(sampler)
    generator = noise_lib.as_generator(generator)
    if alpha_bars is None:
        ab, final_alpha_bar = parts.alpha_bars, parts.final_alpha_bar
    else:
        ab = check_schedule_table(alpha_bars).to(parts.device)
        final_alpha_bar = float(ab[0])  # set_alpha_to_one=False, as the course's scheduler
    timesteps = sampler.timesteps(len(ab), num_steps, parts.spacing if spacing is None else spacing,
                                  offset=parts.steps_offset if steps_offset is None else steps_offset)
    # 1. prompt embeddings: c, and c_u under CFG, {"encoder_hidden_states": (B, L, D)} each
    cond = parts.encode_prompt(prompts)
    uncond = parts.encode_prompt([negative_prompt] * len(prompts)) if g > 1.0 else None
    # 2. z_T, drawn as diffusers' randn_tensor draws it (on the generator's device, then moved)
    x_T = parts.prepare_latents(len(prompts), generator=generator, latents=latents,
                                dtype=cond["encoder_hidden_states"].dtype)
    # 3.-4. the sampler through the timesteps with the CFG denoiser, then z_0; only DDIM reads final_alpha_bar
    denoiser = guidance.cfg_denoiser(parts, g, cond, uncond, pipeline_convention=True)
    ending = {"final_alpha_bar": final_alpha_bar} if isinstance(sampler, samplers.DDIM) else {}
    return samplers.sample(denoiser, x_T, timesteps, sampler, alpha_bars=ab, generator=generator,
                           callback=callback, **ending).x0


@torch.no_grad()
def generate(parts: Parts, prompts, *, guidance_scale: float = 4.0, num_steps: int = 25, batch_size: int = 256,
             generator=None, latents: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
    """Return images (B, 3, H, W) in [-1, 1] on the CPU for the prompts: generate_latents, then parts.decode_latents.   [nb 06]

    decoder(z_0 / scaling_factor) clamped to [-1, 1]: the pipeline's output_type="pt" image is
    (this + 1) / 2. Prompts go through in batches of batch_size (one z_T draw per batch; given
    `latents` (B, C, h, w) are split the same way). kwargs: generate_latents' options.
    """
    latent.check_system(parts, latent.UNetSystem)
    prompts = text.as_prompts(prompts)
    batch_size = check_positive_int(batch_size, "batch_size")
    generator = noise_lib.as_generator(generator)
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = None if latents is None else latents[i: i + batch_size]
        z = generate_latents(parts, prompts[i: i + batch_size], guidance_scale=guidance_scale, num_steps=num_steps,
                             generator=generator, latents=chunk, **kwargs)
        out.append(parts.decode_latents(z))
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# Caption adherence: the shapes judge on generated scenes
# ----------------------------------------------------------------------------------------------

ADHERENCE_KEYS = ("colour", "shape", "position", "count", "background", "all")


def adherence(images: torch.Tensor, expected) -> dict[str, float]:
    """Return the share of images the shapes judge finds right, per attribute and for all of them.   [nb 06]

    expected: one Scene or caption per image. 'all' needs colour, shape, position, count and background.
    """
    check_float_tensor(images, "images")
    if images.ndim != 4 or len(images) != len(expected) or not len(images):
        raise CourseInputError(f"got {len(images)} images of shape {tuple(images.shape[1:])} but {len(expected)} "
                               f"expectations; give one per image, images as (B, 3, H, W).")
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
    latent.check_system(parts, latent.UNetSystem)
    scales = [check_guidance_scale(g) for g in (scales if isinstance(scales, (list, tuple)) else [scales])]
    num_prompts, repeats = check_positive_int(num_prompts, "num_prompts"), check_positive_int(repeats, "repeats")
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
