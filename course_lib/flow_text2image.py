"""Text to image with a flow transformer: Stable Diffusion 3's classes at toy size, on the vae16 latents.   [notebook 10]

The architecture every text-to-image model of 2026 shares (SD3, FLUX, Qwen-Image, Sana), trained here:

    prompt --two CLIP text towers (data/clip cut to 1 layer, data/clip_lit cut to 2; frozen)-->
        token states (B, 32, 128) and a pooled vector (B, 128)
    z_1 ~ N(0, I) (B, 4, 16, 16) --SD3Transformer2DModel(z_sigma, 1000 sigma, states, pooled), CFG, Euler-->
        z_0 --vae16's decoder--> image (B, 3, 32, 32)

The transformer (an MMDiT, Esser et al. 2024) cuts the latent into 2x2 patches (64 image tokens), runs
joint attention over image and text tokens, and modulates every block by AdaLN from the pooled text
vector and the noise level (course_lib.mmdit writes each piece from scratch). It is trained by rectified
flow as SD3 is (flow.flow_matching_loss with density="logit_normal" and the time shift SHIFT): the
velocity target eps - x0 on x_sigma = (1 - sigma) x0 + sigma eps, captions dropped to "" for 10 % of
the examples (classifier-free guidance). Sampling integrates dx/dsigma = v from sigma = 1 to 0 with
Euler steps on FlowMatchEulerDiscreteScheduler(shift=SHIFT)'s sigmas: generate_latents does it by hand,
step for step what StableDiffusion3Pipeline does (tests/test_flow_text2image.py: the same images).

Why these choices (nb 10 shows the numbers): the tiny CLIP's contrastive tower keeps the shape of an
unseen colour-shape pair only at its embedding layer (text2image.TEXT_LAYERS), and SD3 reads the
penultimate hidden state, so that tower is cut to 1 layer; the LiT tower keeps it through layer 1, so it
is cut to 2. Without T5 the pipeline appends max_sequence_length rows of zeros (256 by default) that all
become one token; the course uses 0 (MAX_SEQUENCE_LENGTH), which must be passed to the pipeline.

    >>> from course_lib import flow_text2image
    >>> system = flow_text2image.load_system()                  # data/flow_transformer, vae16, both CLIP towers
    >>> images = flow_text2image.generate(system, ["a red circle in the top left"], generator=0)  # (1, 3, 32, 32)
"""

from __future__ import annotations

from pathlib import Path

import torch

from course_lib import checkpoints, clip, flow, guidance, latent, models, noise, shapes, text, text2image
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError, check_number, check_positive_int

NAME = "flow_transformer"  # data/flow_transformer: the SD3Transformer2DModel
PIPELINE_NAME = "sd3_shapes"  # data/sd3_shapes: the whole model as a StableDiffusion3Pipeline folder
VAE = "vae16"  # 4 x 16 x 16 latents (f = 2): a finer grid that editing can lock cell by cell (nb 10)
TEXT_TOWERS = (("clip", 1), ("clip_lit", 2))  # (data folder, layers kept): SD3 reads hidden_states[-2]

# 4x16x16 latents in 2x2 patches: 64 image tokens of 16 values, width 4 heads x 32 = 128, 4 joint blocks
# (2.3 M parameters). joint_attention_dim = the two towers' 64 + 64 side by side; pooled = 64 + 64.
TRANSFORMER_CONFIG = dict(
    sample_size=16,
    patch_size=2,
    in_channels=4,
    out_channels=4,
    num_layers=4,
    attention_head_dim=32,
    num_attention_heads=4,
    joint_attention_dim=128,
    caption_projection_dim=128,
    pooled_projection_dim=128,
    pos_embed_max_size=8,  # the token grid; diffusers' default 96 would store a 96x96 position table in the file
)
# The time shift of training and sampling (flow.shift_sigma). SD3 uses 3.0 for 1024 px (4,096 tokens);
# FLUX's and SD3.5's rule for the shift by token count, exp(0.5 + (n - 256) * 0.65 / 3840), gives 1.6 at
# 64 tokens. Chosen by that rule, not by a sweep.
SHIFT = 1.6
MAX_SEQUENCE_LENGTH = 0  # rows of zeros for the absent T5 encoder: none (pass it to the pipeline too)
CAPTION_DROPOUT = 0.1  # share of training captions replaced by "" (the unconditional branch of CFG)
GUIDANCE_SCALE = 4.0
NUM_STEPS = 16


def make_transformer(seed: int = 0, **overrides):
    """Return a fresh SD3Transformer2DModel with TRANSFORMER_CONFIG (overrides replace keys), adaLN-zero initialised.

    As DiT (Peebles & Xie 2023, sec. 3.2): the modulation layers that scale each block's attention and
    MLP outputs, and the final projection, start at zero, so every block starts as the identity and the
    model's first prediction is 0; diffusers initialises them at random.
    """
    from diffusers import SD3Transformer2DModel

    with models.seeded(seed):
        model = SD3Transformer2DModel(**{**TRANSFORMER_CONFIG, **overrides})
    with torch.no_grad():
        for block in model.transformer_blocks:
            for norm in (block.norm1, block.norm1_context):
                for p in norm.linear.parameters():
                    p.zero_()
        for layer in (model.norm_out.linear, model.proj_out):
            for p in layer.parameters():
                p.zero_()
    return model


def make_scheduler(shift: float = SHIFT):
    """Return FlowMatchEulerDiscreteScheduler(shift=shift): the flow family's sigmas (1 -> 0, bent by the shift)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    shift = check_number(shift, "shift", low=0, low_open=True, hint="SD3's time shift; 1 leaves sigma unchanged")
    return FlowMatchEulerDiscreteScheduler(shift=shift)


def load_text_encoders(device=None) -> tuple:
    """Return (tokenizer, text_encoder, tokenizer_2, text_encoder_2): the course's two CLIP towers, cut, with projection."""
    out = []
    for name, layers in TEXT_TOWERS:
        model, tokenizer = clip.load(name, device=device)
        out += [tokenizer, text.text_encoder_with_projection(model, layers)]
    return tuple(out)


def make_system(transformer, vae=None, *, device=None, shift: float = SHIFT) -> latent.FlowSystem:
    """Return a latent.FlowSystem of `transformer`, data/vae16 (or `vae`), the course's text towers and the scheduler."""
    device = checkpoints.target_device(device)
    vae = vae_lib.load_vae(VAE, device=device) if vae is None else vae
    towers = load_text_encoders(device)
    return latent.FlowSystem(transformer.to(device).eval(), vae, *towers, make_scheduler(shift),
                             max_sequence_length=MAX_SEQUENCE_LENGTH)


def load_system(transformer: str | Path = NAME, device=None) -> latent.FlowSystem:
    """Return the shipped flow system: data/<transformer> (SD3Transformer2DModel), data/vae16, both CLIP towers."""
    return make_system(checkpoints.load(transformer, device=device), device=device)


# ----------------------------------------------------------------------------------------------
# Training data: captioned scenes -> (vae16 latents, both towers' prompt embeddings)
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def latent_dataset(n: int, system: latent.FlowSystem, *, seed: int = 0, split: str = "train",
                   num_objects=(1, shapes.MAX_OBJECTS), batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Return {"x0": latents (n, 4, 16, 16), "encoder_hidden_states": (n, 32, 128), "pooled_projections": (n, 128)}.

    n 'train' scenes (no held-out colour-shape pair), each with a random phrasing of its caption; the
    latents are drawn from the VAE's posterior and scaled (z - shift) * scale, as SD3's training encodes.
    Everything is drawn from `seed`; the benchmark's and the evaluation's scenes come from other seeds.
    """
    n = check_positive_int(n, "n")
    generator = torch.Generator().manual_seed(seed)
    scenes = shapes.sample_scenes(n, split=split, num_objects=num_objects, generator=generator)
    captions = shapes.random_captions(scenes, generator)
    columns: dict[str, list[torch.Tensor]] = {"x0": [], "encoder_hidden_states": [], "pooled_projections": []}
    for i in range(0, n, batch_size):
        images = shapes.render(scenes[i: i + batch_size])
        columns["x0"].append(vae_lib.encode(system.vae, images, generator=generator).float().cpu())
        for key, value in system.encode_prompt(captions[i: i + batch_size]).items():
            columns[key].append(value.float().cpu())
    return {key: torch.cat(value) for key, value in columns.items()}


def null_condition(system: latent.FlowSystem) -> dict[str, torch.Tensor]:
    """Return the condition of "" (1, ...) per key: what caption dropout puts in, and CFG's unconditional rows."""
    return {key: value.float().cpu() for key, value in system.encode_prompt([""]).items()}


def loss_fn(null_cond: dict):
    """Return the training loss: rectified flow with SD3's logit-normal noise levels, SHIFT, and caption dropout."""
    def loss(model, batch, generator=None):
        return flow.flow_matching_loss(model, batch, generator, density="logit_normal", shift=SHIFT,
                                       cond_dropout=CAPTION_DROPOUT, null_cond=null_cond)
    return loss


# ----------------------------------------------------------------------------------------------
# Sampling: the hand-written loop, step for step StableDiffusion3Pipeline's
# ----------------------------------------------------------------------------------------------

def check_flow_system(system) -> latent.FlowSystem:
    """Return system if it is a latent.FlowSystem, else raise (a UNet system samples with text2image.generate)."""
    if isinstance(system, latent.UNetSystem):
        raise CourseInputError("system is a latent.UNetSystem (an eps-predicting UNet): sample it with "
                               "text2image.generate; flow_text2image samples a latent.FlowSystem (load_system()).")
    return latent.check_system(system, latent.FlowSystem, "system")


@torch.no_grad()
def generate_latents(system: latent.FlowSystem, prompts, *, guidance_scale: float = GUIDANCE_SCALE,
                     num_steps: int = NUM_STEPS, negative_prompt: str = "", generator=None,
                     latents: torch.Tensor | None = None, callback=None) -> torch.Tensor:
    """Return z_0 (B, 4, h, w) for the prompts: Euler steps of dx/dsigma = v with CFG, as StableDiffusion3Pipeline.   [nb 10]

    1. c = encode_prompt(prompts) (both towers' states and pooled vectors), c_u = encode_prompt(negative) when g > 1;
    2. z_1 ~ N(0, I) from `generator` (on its device; the CPU by default), unless `latents` is given;
    3. the scheduler's N sigmas 1 = s_0 > ... > s_N = 0 (shifted) and timesteps 1000 s_i;
    4. each step v = v_u + g (v_c - v_u) from one transformer call on [uncond; cond] (the conditional
       rows alone when g <= 1, the pipeline's convention), then z <- z + (s_{i+1} - s_i) v (flow.euler_step).
    callback(i, z) after each step, if given.
    """
    system = check_flow_system(system)
    prompts = text.as_prompts(prompts)
    g = guidance.check_guidance_scale(guidance_scale)
    timesteps, sigmas = system.schedule(check_positive_int(num_steps, "num_steps"))
    cond = system.encode_prompt(prompts)
    uncond = system.encode_prompt([negative_prompt] * len(prompts)) if g > 1.0 else None
    z = system.prepare_latents(len(prompts), generator=generator, latents=latents,
                               dtype=cond["encoder_hidden_states"].dtype)
    denoiser = guidance.cfg_denoiser(system, g, cond, uncond, pipeline_convention=True)
    for i, t in enumerate(timesteps):
        z = flow.euler_step(denoiser(z, t), z, sigmas[i], sigmas[i + 1]).x_prev
        if callback is not None:
            callback(i, z)
    return z


@torch.no_grad()
def generate(system: latent.FlowSystem, prompts, *, guidance_scale: float = GUIDANCE_SCALE,
             num_steps: int = NUM_STEPS, batch_size: int = 256, generator=None, **kwargs) -> torch.Tensor:
    """Return images (B, 3, 32, 32) in [-1, 1] on the CPU: generate_latents, then the VAE decoder, in batches.   [nb 10]"""
    prompts = text.as_prompts(prompts)
    batch_size = check_positive_int(batch_size, "batch_size")
    generator = noise.as_generator(generator)
    out = []
    for i in range(0, len(prompts), batch_size):
        z = generate_latents(system, prompts[i: i + batch_size], guidance_scale=guidance_scale, num_steps=num_steps,
                             generator=generator, **kwargs)
        out.append(system.decode_latents(z))
    return torch.cat(out)


EVAL_GUIDANCE = text2image.EVAL_GUIDANCE


def evaluate(transformer, *, num_prompts: int = 200, guidance_scales=EVAL_GUIDANCE, num_steps: int = NUM_STEPS,
             seed: int = 0) -> dict:
    """Return adherence on single-object 'test' and 'heldout' prompts (and 2-3-object 'test' ones) per guidance scale.

    The same prompts, judge and keys as text2image.evaluate, so the two families compare line by line.
    """
    system = make_system(transformer, device=models.model_device(transformer))
    out = {}
    for split, num_objects in (("test", (1, 1)), ("heldout", (1, 1)), ("test", (2, 3))):
        tag = f"{split}_{'single' if num_objects == (1, 1) else 'multi'}"
        scenes, prompts = text2image.prompt_set(num_prompts, split, num_objects=num_objects, seed=seed)
        for g in guidance_scales:
            images = generate(system, prompts, guidance_scale=g, num_steps=num_steps,
                              generator=torch.Generator().manual_seed(seed))
            for key, value in text2image.adherence(images, scenes).items():
                out[f"adherence_{tag}_g{g:g}_{key}"] = round(value, 4)
    return out


# ----------------------------------------------------------------------------------------------
# The pipeline folder: StableDiffusion3Pipeline, saved and loaded offline
# ----------------------------------------------------------------------------------------------

def make_pipeline(system: latent.FlowSystem):
    """Return a StableDiffusion3Pipeline of the system's parts (shared modules, not copies), T5 absent.   [nb 10]

    Call it with max_sequence_length=MAX_SEQUENCE_LENGTH (pipeline_images does): its default, 256 rows of
    zeros, would change the images.
    """
    from diffusers import StableDiffusion3Pipeline

    system = check_flow_system(system)
    return StableDiffusion3Pipeline(transformer=system.transformer, scheduler=system.scheduler, vae=system.vae,
                                    text_encoder=system.text_encoder, tokenizer=system.tokenizer,
                                    text_encoder_2=system.text_encoder_2, tokenizer_2=system.tokenizer_2,
                                    text_encoder_3=None, tokenizer_3=None)


def pipeline_images(pipe, prompts, *, num_steps: int = NUM_STEPS, guidance_scale: float = GUIDANCE_SCALE,
                    generator=None, **kwargs) -> torch.Tensor:
    """Return pipe(prompts, ..., max_sequence_length=0, output_type="pt") as (B, 3, H, W) in [-1, 1] on the CPU."""
    prompts = text.as_prompts(prompts)
    for tokenizer in (pipe.tokenizer, pipe.tokenizer_2):
        text.check_prompt_lengths(prompts, tokenizer)
    generator = noise.as_generator(generator)
    out = pipe(prompts, num_inference_steps=num_steps, guidance_scale=guidance_scale, generator=generator,
               max_sequence_length=MAX_SEQUENCE_LENGTH, output_type="pt", **kwargs).images
    return (out.float() * 2 - 1).cpu()


BUILD_COMMAND = "python -m course_lib.flow_text2image build"


def save_pipeline(system: latent.FlowSystem, folder: str | Path = PIPELINE_NAME, *, command: str = BUILD_COMMAND,
                  metrics: dict | None = None) -> dict:
    """Write the system as a StableDiffusion3Pipeline folder with a manifest of SHA-256 hashes; return the manifest."""
    pipe = make_pipeline(system)
    folder = checkpoints.fresh_folder(folder)  # refuses a folder that is not a checkpoint
    pipe.save_pretrained(folder, safe_serialization=True)
    halved = checkpoints.halve_exact_files(folder)
    num_parameters = sum(models.num_parameters(m) for m in (system.transformer, system.vae, system.text_encoder,
                                                            system.text_encoder_2))
    return checkpoints.write_manifest(
        folder, class_path="diffusers.StableDiffusion3Pipeline", command=command, metrics=metrics,
        recipe={"transformer": f"data/{NAME}", "vae": f"data/{VAE}",
                "text_encoders": [f"data/{n} cut to {k} layer(s), with projection" for n, k in TEXT_TOWERS],
                "shift": SHIFT, "max_sequence_length": MAX_SEQUENCE_LENGTH, "stored_float16": halved},
        num_parameters=num_parameters,
        notes=("StableDiffusion3Pipeline folder without T5: load with course_lib.flow_text2image.load_pipeline() or "
               "StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None), and call it "
               f"with max_sequence_length={MAX_SEQUENCE_LENGTH}."))


def load_pipeline(folder_or_name: str | Path = PIPELINE_NAME, device=None):
    """Return the folder's StableDiffusion3Pipeline (hashes checked first), float32, on `device`."""
    from diffusers import StableDiffusion3Pipeline

    device = checkpoints.target_device(device)
    folder = checkpoints.checkpoint_dir(folder_or_name)
    checkpoints.verify(folder)
    pipe = StableDiffusion3Pipeline.from_pretrained(folder, text_encoder_3=None, tokenizer_3=None, dtype=torch.float32,
                                                    local_files_only=True, **checkpoints.loading_kwargs())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def build(out: str | Path = PIPELINE_NAME, transformer: str | Path = NAME) -> dict:
    """Assemble data/<transformer>, data/vae16 and both CLIP towers into a pipeline folder and check it loads."""
    system = load_system(transformer, device="cpu")
    manifest = save_pipeline(system, out)
    load_pipeline(out, device="cpu")
    return manifest


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_lib.flow_text2image")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help=f"write data/{PIPELINE_NAME} from data/{NAME}, data/{VAE}, data/clip, data/clip_lit")
    b.add_argument("--out", default=PIPELINE_NAME)
    b.add_argument("--transformer", default=NAME)
    args = parser.parse_args(argv)
    manifest = build(args.out, args.transformer)
    print(f"wrote {checkpoints.checkpoint_dir(args.out)}: {len(manifest['files'])} files")


if __name__ == "__main__":
    main()
