"""A real diffusers pipeline: the course's text-to-image model saved, loaded and run as StableDiffusionPipeline.   [notebook 06]

The four parts of text2image.Parts and a scheduler are exactly the components of diffusers'
StableDiffusionPipeline, so the course's model ships as a pipeline folder that anyone loads with

    StableDiffusionPipeline.from_pretrained("data/sd_shapes")        # offline: it is a local folder

    data/sd_shapes/
        model_index.json     which class each component is
        unet/                UNet2DConditionModel (text2image.UNET_CONFIG), config + safetensors
        vae/                 AutoencoderKL (data/vae)
        text_encoder/        CLIPTextModel (data/clip's text tower cut to text2image.TEXT_LAYERS layers)
        tokenizer/           the course's word-level tokenizer (text.build_tokenizer)
        scheduler/           DDIMScheduler (SCHEDULER_CONFIG)
        manifest.json        SHA-256 of every file, checked before loading (checkpoints.verify)

The course's hand-written loop, text2image.generate_latents (encode the prompt, CFG denoising loop
with samplers.ddim_step, then the VAE decoder), gives the same image as

    pipe(prompt, num_inference_steps=N, guidance_scale=g, generator=torch.Generator().manual_seed(s),
         height=32, width=32, output_type="pt").images

because it follows the pipeline step by step: z_T drawn from the generator with the text encoder's
dtype, times the scheduler's init_noise_sigma (1 for DDIM); the scheduler's own alphas_cumprod table
(float32 cumprod; schedules.NoiseSchedule's float64 table differs by <= 5e-7); "leading" timesteps
with steps_offset = 1 (SD 1.5's choice: 961, 921, ..., 1 for 25 steps) and alphas_cumprod[0] after the
last step (set_alpha_to_one=False); the batch [unconditional rows; conditional rows]; CFG only when
g > 1 (g <= 1 runs the conditional rows alone); decoding latents / scaling_factor, then (x / 2 + 0.5)
clamped to [0, 1] (text2image.generate returns x clamped to [-1, 1], the same image).
tests/test_pipeline.py asserts max |difference| <= 1e-5.

    python -m course_lib.pipeline build                   # data/text2image + data/vae + data/clip -> data/sd_shapes
    python -m course_lib.pipeline build --unet /tmp/m --out /tmp/sd_test     # another UNet, elsewhere

The same functions run Stable Diffusion v1.5 itself (load_stable_diffusion) on a CUDA GPU with its
weights reachable, in float16; choose_pipeline falls back to the course's folder and says why in one line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from course_lib import attention, checkpoints, environment, latent, models, text, text2image
from course_lib import noise as noise_lib
from course_lib.guidance import check_guidance_scale
from course_lib.latent import SCHEDULER_CONFIG  # noqa: F401  (the folder's scheduler config)
from course_lib.latent import make_scheduler as scheduler  # noqa: F401  (a fresh DDIMScheduler of the folder)
from course_lib.text2image import scheduler_alpha_bars as alpha_bars  # noqa: F401  (its alphas_cumprod)
from course_lib.validation import CourseInputError, check_device, check_positive_int

PIPELINE_NAME = "sd_shapes"  # data/sd_shapes: the course's model as a StableDiffusionPipeline folder
STABLE_DIFFUSION = "stable-diffusion-v1-5/stable-diffusion-v1-5"

def make_pipeline(parts: text2image.Parts):
    """Return a StableDiffusionPipeline of the parts and their scheduler (the same objects, not copies).   [nb 06]"""
    from diffusers import StableDiffusionPipeline

    latent.check_system(parts, latent.UNetSystem)
    return StableDiffusionPipeline(vae=parts.vae, text_encoder=text.text_encoder_of(parts.text_encoder),
                                   tokenizer=parts.tokenizer, unet=parts.unet, scheduler=parts.scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def parts_from_pipeline(pipe) -> text2image.Parts:
    """Return text2image.Parts of a StableDiffusionPipeline: its modules (shared) and a DDIMScheduler of its schedule.

    The pipeline's own scheduler may be another class (PNDM for Stable Diffusion 1.5); the system holds
    DDIMScheduler.from_config(its config): the same betas, alphas_cumprod, spacing and steps_offset.
    """
    from diffusers import DDIMScheduler

    missing = [n for n in ("unet", "vae", "tokenizer", "text_encoder", "scheduler") if getattr(pipe, n, None) is None]
    if missing:
        raise CourseInputError(f"the pipeline has no {missing}; expected a StableDiffusionPipeline.")
    return text2image.Parts(pipe.unet, pipe.vae, pipe.tokenizer, pipe.text_encoder,
                            scheduler=DDIMScheduler.from_config(pipe.scheduler.config))


def pipeline_images(pipe, prompts, *, num_steps: int = 25, guidance_scale: float = 4.0,
                    generator: torch.Generator | None = None, size: int | None = None, **kwargs) -> torch.Tensor:
    """Return the pipeline's images as a (B, 3, H, W) float tensor in [-1, 1] on the CPU, like text2image.generate.

    pipe(prompts, num_inference_steps, guidance_scale, generator, height=width=size, output_type="pt"),
    then x * 2 - 1. size defaults to the UNet's sample_size times the VAE's downsampling factor;
    generator: a torch.Generator or an int seed. Prompts longer than the tokenizer's limit are refused
    here (the pipeline would cut them and only log a line: text.check_prompt_lengths).
    """
    prompts = text.check_prompt_lengths(prompts, pipe.tokenizer)
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = pipe.unet.config.sample_size * factor if size is None else check_positive_int(size, "size")
    if size % factor:
        raise CourseInputError(f"size must be a multiple of the VAE's factor {factor}, got {size}.")
    out = pipe(prompts, num_inference_steps=check_positive_int(num_steps, "num_steps"),
               guidance_scale=check_guidance_scale(guidance_scale), generator=noise_lib.as_generator(generator),
               height=size, width=size, output_type="pt", **kwargs).images
    return (out.float() * 2 - 1).cpu()


# ----------------------------------------------------------------------------------------------
# Saving and loading the folder, with a manifest of SHA-256 hashes
# ----------------------------------------------------------------------------------------------

BUILD_COMMAND = "python -m course_lib.pipeline build"


def save_pipeline(parts: text2image.Parts, folder: str | Path = PIPELINE_NAME, *, command: str = BUILD_COMMAND,
                  metrics: dict | None = None, recipe: dict | None = None, notes: str = "") -> dict:
    """Write the parts as a StableDiffusionPipeline folder and a manifest.json of SHA-256 hashes; return the manifest.   [nb 06]

    folder: a name under data/ or a path; it is emptied first. Weights are safetensors, float32, except
    files whose every value is a float16 number (data/vae's), stored in float16: the same numbers, half the bytes.
    """
    latent.check_system(parts, latent.UNetSystem)
    pipe = make_pipeline(parts)
    folder = checkpoints.fresh_folder(folder)  # refuses a folder that is not a checkpoint
    pipe.save_pretrained(folder, safe_serialization=True)
    halved = checkpoints.halve_exact_files(folder)
    notes = notes or ("StableDiffusionPipeline folder: load with StableDiffusionPipeline.from_pretrained(folder) "
                      "or course_lib.pipeline.load_pipeline(); safety_checker and feature_extractor are None.")
    num_parameters = sum(models.num_parameters(m) for m in (parts.unet, parts.vae, pipe.text_encoder))
    return checkpoints.write_manifest(folder, class_path="diffusers.StableDiffusionPipeline", command=command,
                                      metrics=metrics, recipe={"scheduler": SCHEDULER_CONFIG, "stored_float16": halved,
                                                               **(recipe or {})},
                                      num_parameters=num_parameters, notes=notes)


def verify(folder_or_name: str | Path = PIPELINE_NAME) -> dict:
    """Check every file of a pipeline folder against its manifest; return the manifest or raise saying how to rebuild it."""
    folder = checkpoints.checkpoint_dir(folder_or_name)
    try:
        return checkpoints.verify(folder)
    except CourseInputError as exc:
        # checkpoints' message names a recipe; a pipeline folder is rebuilt by this module's command.
        message = str(exc).split(" Rebuild it with")[0]
        rebuild = BUILD_COMMAND + ("" if folder == environment.DATA_DIR / PIPELINE_NAME else f" --out {folder}")
        raise CourseInputError(f"{message} Rebuild it with `{rebuild}` (from data/text2image, data/vae, data/clip), "
                               f"or restore the shipped files with `git checkout data/{folder.name}`.") from None


def check_dtype_for_device(dtype, device) -> None:
    """Raise if the weights' dtype does not suit the device: float16 needs a GPU (CUDA or Apple's MPS)."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise CourseInputError(f"dtype must be a floating-point torch.dtype (torch.float32, torch.float16 on a GPU), "
                               f"got {dtype!r}.")
    if dtype == torch.float16 and torch.device(device).type == "cpu":
        raise CourseInputError("float16 weights on the CPU: they load, then run many times slower than float32 (or "
                               "fail in kernels the CPU lacks). Load with dtype=torch.float32 (the default) on a CPU, "
                               "or move to a GPU (device='cuda') for float16.")


def load_pipeline(folder_or_name: str | Path = PIPELINE_NAME, device=None, *, dtype=torch.float32):
    """Verify a pipeline folder's hashes, then return StableDiffusionPipeline.from_pretrained(folder), offline.   [nb 06]

    device defaults to environment.default_device(); progress bars are off.
    """
    from diffusers import StableDiffusionPipeline

    device = check_device(device) if device is not None else environment.default_device()
    check_dtype_for_device(dtype, device)
    folder = checkpoints.checkpoint_dir(folder_or_name)
    verify(folder)
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True, **checkpoints.loading_kwargs())
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------
# Real Stable Diffusion, when a GPU and the weights are there; the course's folder otherwise
# ----------------------------------------------------------------------------------------------

def load_stable_diffusion(model_id: str = STABLE_DIFFUSION, device=None, *, dtype=None,
                          local_files_only: bool | None = None):
    """Return StableDiffusionPipeline.from_pretrained(model_id) in float16 on CUDA; raise one clear line otherwise.   [nb 06]

    device None: CUDA is required (CourseInputError "no CUDA GPU" elsewhere). An explicit device
    (e.g. "cpu", for a small folder) is used as given, in float32 unless dtype says otherwise.
    local_files_only None follows HF_HUB_OFFLINE; weights that cannot be found (offline and not
    cached, no network, a wrong id) raise CourseInputError saying so.
    """
    from diffusers import StableDiffusionPipeline

    if device is None:
        if not torch.cuda.is_available():
            raise CourseInputError(f"no CUDA GPU here: {model_id} needs one (float16, about 4 GB of GPU memory).")
        device = torch.device("cuda")
    device = check_device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    check_dtype_for_device(dtype, device)
    if local_files_only is None:
        from huggingface_hub import constants

        local_files_only = bool(constants.HF_HUB_OFFLINE)
    kwargs = dict(dtype=dtype, local_files_only=local_files_only, **checkpoints.loading_kwargs())
    is_folder = Path(model_id).is_dir()
    try:
        if dtype == torch.float16 and not is_folder:
            try:  # the Hub repo's fp16 files: half the download
                pipe = StableDiffusionPipeline.from_pretrained(model_id, variant="fp16", **kwargs)
            except (OSError, ValueError):
                pipe = StableDiffusionPipeline.from_pretrained(model_id, **kwargs)
        else:
            pipe = StableDiffusionPipeline.from_pretrained(model_id, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:  # huggingface_hub's not-found errors are OSErrors
        where = ("offline (HF_HUB_OFFLINE or local_files_only) and not in the Hugging Face cache" if local_files_only
                 else "not downloadable here (no network, or a wrong id)")
        raise CourseInputError(f"the weights of {model_id} are not available: {where} ({type(exc).__name__}).") from None
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def choose_pipeline(model_id: str = STABLE_DIFFUSION, fallback: str | Path = PIPELINE_NAME, device=None, *,
                    local_files_only: bool | None = None):
    """Return (pipe, one-line message): Stable Diffusion (model_id) if it loads, else the course's folder.   [nb 06]"""
    try:
        pipe = load_stable_diffusion(model_id, device, local_files_only=local_files_only)
        return pipe, f"Running {model_id} on {pipe.device} in {str(pipe.unet.dtype).replace('torch.', '')}."
    except CourseInputError as exc:
        fallback_device = device if device is not None else environment.default_device()
        pipe = load_pipeline(fallback, fallback_device)
        reason = str(exc).rstrip(".")
        return pipe, f"Using the course's {Path(str(fallback)).name} pipeline, because {reason}."


# ----------------------------------------------------------------------------------------------
# Per-word cross-attention maps while the course's loop generates
# ----------------------------------------------------------------------------------------------

@dataclass
class GenerationAttention:
    """An image and where it read each word: maps averaged over steps, heads and layers.   [nb 06]

    image (3, H, W) in [-1, 1]; words [(token, map (h, w))] without padding; probs (1, h*w, L) with
    every row summing to 1 over the L tokens; layers: the cross-attention layers averaged.
    """

    image: torch.Tensor
    words: list[tuple[str, torch.Tensor]]
    probs: torch.Tensor
    tokens: list[str]
    resolution: int
    layers: list[str]


@torch.no_grad()
def cross_attention_maps(parts: text2image.Parts, prompt: str, *, guidance_scale: float = 4.0, num_steps: int = 25,
                         generator: torch.Generator | None = None, resolution: int | None = None,
                         skip=None, callback=None, **kwargs) -> GenerationAttention:
    """Generate one image with text2image.generate_latents and record the cross-attention it used.   [LDM sec. 3.3, P2P, nb 06]

    attention.record_attention installs an AttentionStore in the cross-attention layers whose
    feature map is resolution x resolution (diffusers' attention-processor API, restored on exit).
    The conditional row of each call (the second half of the CFG batch) is averaged over steps,
    heads and those layers, then split into one map per token by attention.word_maps. resolution
    defaults to the latent's side, at most 16 (prompt-to-prompt's choice for Stable Diffusion's
    64x64 latents; 8 for the course's model). The store is emptied after every step, so memory
    stays at one step's maps. skip: tokens left out of `words` (default: the tokenizer's padding token).
    """
    latent.check_system(parts, latent.UNetSystem)
    if not isinstance(prompt, str):
        raise CourseInputError(f"cross_attention_maps takes one prompt (a str), got {type(prompt).__name__}.")
    size = parts.unet.config.sample_size
    size = size if isinstance(size, int) else size[0]
    side = min(size, 16) if resolution is None else check_positive_int(resolution, "resolution")
    layers = attention.cross_attention_layers(parts.unet, side)
    if not layers:
        sizes = sorted({size // 2**i for i in range(len(parts.unet.config.block_out_channels))})
        raise CourseInputError(f"no cross-attention layer works at {side}x{side}; this UNet's feature maps are {sizes}.")
    total, count = None, 0

    def collect(i, t, step):
        nonlocal total, count
        for name in layers:
            for probs in store.probs.get(name, []):  # (rows, heads, N, L): rows [uncond; cond] or [cond]
                cond = probs[-1]
                if cond.shape[-2] != side * side:
                    raise CourseInputError(f"layer {name} works at {cond.shape[-2]} positions, not {side}x{side}.")
                total = cond.sum(0) if total is None else total + cond.sum(0)
                count += cond.shape[0]
        store.clear()
        if callback is not None:
            callback(i, t, step)

    with attention.record_attention(parts.unet, layers=layers) as store:
        z0 = text2image.generate_latents(parts, [prompt], guidance_scale=guidance_scale, num_steps=num_steps,
                                         generator=generator, callback=collect, **kwargs)
    probs = (total / count)[None]  # (1, N, L): each row still sums to 1
    image = parts.decode_latents(z0)[0]
    tokens = text.tokens(text.tokenize([prompt], parts.tokenizer)[0], parts.tokenizer)
    skip = (parts.tokenizer.pad_token,) if skip is None else tuple(skip)
    words = attention.word_maps(probs, tokens, side, side, skip=skip)
    return GenerationAttention(image, words, probs, tokens, side, layers)


# ----------------------------------------------------------------------------------------------
# python -m course_lib.pipeline build
# ----------------------------------------------------------------------------------------------

def build(out: str | Path = PIPELINE_NAME, unet: str | Path = "text2image", *, check: bool = True) -> dict:
    """Build the pipeline folder from a UNet checkpoint (data/text2image), data/vae and data/clip; return the manifest.

    With check=True it loads the folder back and prints the largest difference between the course's
    loop on the source parts and the loaded pipeline, on one prompt (0, or about 1e-7 from clamping).
    """
    parts = text2image.load_parts(str(unet), device="cpu")
    sources = {}
    for role, name in (("unet", unet), ("vae", "vae"), ("text_encoder", text2image.TEXT_ENCODER)):
        m = checkpoints.read_manifest(name)
        sources[role] = {"checkpoint": str(name), "class": m.get("class"), "command": m.get("command"),
                         "steps": m.get("steps"), "created": m.get("created")}
    unet_manifest = checkpoints.read_manifest(unet)
    start = time.perf_counter()
    command = BUILD_COMMAND + ("" if str(out) == PIPELINE_NAME else f" --out {out}") + \
        ("" if str(unet) == "text2image" else f" --unet {unet}")
    manifest = save_pipeline(parts, out, command=command,
                             metrics=unet_manifest.get("metrics", {}),
                             recipe={"sources": sources, "unet_train_config": unet_manifest.get("train_config", {})})
    folder = checkpoints.checkpoint_dir(out)
    size = sum(info["bytes"] for info in manifest["files"].values())
    print(f"wrote {folder}: {len(manifest['files'])} files, {size / 1e6:.1f} MB, {time.perf_counter() - start:.1f} s")
    if check:
        pipe = load_pipeline(folder, "cpu")
        prompt = "a red circle in the top left"
        ours = text2image.generate(parts, [prompt], guidance_scale=4.0, num_steps=25,  # the parts it was built from
                                   generator=torch.Generator().manual_seed(0))
        theirs = pipeline_images(pipe, [prompt], num_steps=25, guidance_scale=4.0,
                                 generator=torch.Generator().manual_seed(0))
        print(f"check: course loop vs StableDiffusionPipeline, max |difference| = {float((ours - theirs).abs().max()):.2e}")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m course_lib.pipeline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the StableDiffusionPipeline folder (default data/sd_shapes)")
    b.add_argument("--out", default=PIPELINE_NAME, help="a name under data/ or a folder path")
    b.add_argument("--unet", default="text2image", help="the UNet checkpoint (name under data/ or folder with a manifest)")
    b.add_argument("--no-check", action="store_true", help="skip the course-loop-vs-pipeline check")
    b.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    build(args.out, args.unet, check=not args.no_check)


if __name__ == "__main__":
    main(sys.argv[1:])
