"""Stable Diffusion 1.5's architecture offline, with random weights: the course's real-SD path, run without a hub.   [notebooks 06-09]

The three networks are built from SD 1.5's published configs (the files unet/config.json,
vae/config.json and text_encoder/config.json of runwayml/stable-diffusion-v1-5, now
stable-diffusion-v1-5/stable-diffusion-v1-5; the text encoder is openai/clip-vit-large-patch14's text
tower, CompVis' choice), written down below, with seeded random weights. The tokenizer is CLIP's own
byte-level BPE (49,408 tokens: 256 bytes, the same 256 ending a word, 48,894 merges, start and end of
text; 77 positions), read from bpe_simple_vocab_16e6.txt.gz, the merges file that open_clip_torch (MIT
licence, the file is OpenAI CLIP's, MIT too) ships in its wheel. The wheel is fetched with
`pip download open_clip_torch --no-deps` on first use (PyPI, not the model hub) and cached; nothing
is installed. COURSE_CLIP_BPE=path/to/bpe_simple_vocab_16e6.txt.gz points at a copy instead.

    >>> folder = sd15_offline.build_folder(tmp_path, size=64)       # a StableDiffusionPipeline folder
    >>> pipe = pipeline.load_stable_diffusion(str(folder), "cpu")   # loaded as the course loads SD 1.5

Random weights draw no picture; they run every line of the real-SD path at SD's sizes (4 resolutions,
16 attention blocks, 77 text positions, 768-wide text states), which is what tests/test_sd15.py and
benchmarks/bench_gpu.py need.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from course_lib import models
from course_lib.validation import CourseInputError, check_int, check_positive_int

# unet/config.json of stable-diffusion-v1-5 (diffusers' UNet2DConditionModel; defaults it leaves out omitted)
UNET_CONFIG = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)
# vae/config.json (diffusers' AutoencoderKL; scaling_factor 0.18215 is the class default)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=512, layers_per_block=2, act_fn="silu",
    norm_num_groups=32, block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215,
)
# text_encoder/config.json (transformers' CLIPTextConfig of openai/clip-vit-large-patch14's text tower)
TEXT_CONFIG = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    attention_dropout=0.0, dropout=0.0, initializer_range=0.02, initializer_factor=1.0,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
# scheduler/scheduler_config.json: PNDMScheduler, SD's scaled_linear betas, "leading" + 1 (clip_sample: DDIM's key, ignored)
SCHEDULER_CONFIG = dict(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
    set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1, clip_sample=False, trained_betas=None,
)
VOCAB_SIZE, MAX_LENGTH = 49408, 77
VAE_FACTOR = 8  # 2 ** (len(VAE_CONFIG["block_out_channels"]) - 1)
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
OPEN_CLIP = "open_clip_torch==3.3.0"  # the wheel the merges are read from (MIT)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "course_lib"


def bpe_merges_file() -> Path:
    """Return the path of CLIP's bpe_simple_vocab_16e6.txt.gz: $COURSE_CLIP_BPE, the cache, or fetched from PyPI once."""
    given = os.environ.get("COURSE_CLIP_BPE")
    if given:
        if not Path(given).is_file():
            raise CourseInputError(f"COURSE_CLIP_BPE={given} is not a file; point it at {BPE_FILE} or unset it.")
        return Path(given)
    cached = CACHE / BPE_FILE
    if cached.is_file():
        return cached
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
                              "-d", tmp, OPEN_CLIP], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("open_clip_torch-*.whl"))
        if run.returncode or not wheels:
            raise CourseInputError(f"CLIP's merges file could not be fetched (`pip download {OPEN_CLIP} --no-deps`: "
                                   f"{run.stderr.strip()[-200:]}); set COURSE_CLIP_BPE to a copy of {BPE_FILE}.")
        with zipfile.ZipFile(wheels[0]) as wheel:
            data = wheel.read(f"open_clip/{BPE_FILE}")
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(cached)
    return cached


def bytes_to_unicode() -> dict[int, str]:
    """Return CLIP's (and GPT-2's) map of the 256 bytes to printable characters: the BPE's base alphabet."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def write_tokenizer_files(folder: str | Path) -> Path:
    """Write vocab.json and merges.txt of CLIP's tokenizer (49,408 entries) in folder, as open_clip builds them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(bpe_merges_file(), "rt", encoding="utf-8").read().split("\n")
    merges = lines[1: VOCAB_SIZE - 256 - 256 - 2 + 1]  # the first line is a version header
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != VOCAB_SIZE or len(set(tokens)) != VOCAB_SIZE:
        raise CourseInputError(f"{BPE_FILE} gave {len(set(tokens))} distinct tokens, not {VOCAB_SIZE}: a wrong file?")
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False), "utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", "utf-8")
    return folder


def make_tokenizer():
    """Return a transformers CLIPTokenizer of CLIP's real merges: 49,408 tokens, 77 positions (SD 1.5's tokenizer)."""
    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        write_tokenizer_files(tmp)
        return CLIPTokenizer(str(Path(tmp) / "vocab.json"), str(Path(tmp) / "merges.txt"), model_max_length=MAX_LENGTH,
                             bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                             pad_token="<|endoftext|>")


def check_size(size: int) -> int:
    """Return the image size, checked: a positive multiple of 64 (the VAE's 8 times the UNet's 3 halvings)."""
    size = check_positive_int(size, "size")
    if size % (VAE_FACTOR * 8):
        raise CourseInputError(f"size must be a multiple of 64 (the VAE's factor 8 times the UNet's 8), got {size}.")
    return size


def make_unet(size: int = 64, *, seed: int = 0, overrides: dict | None = None):
    """Return SD 1.5's UNet2DConditionModel (UNET_CONFIG, sample_size = size / 8, overrides on top), seeded random weights, eval.

    overrides={"in_channels": 8} gives InstructPix2Pix's UNet (z_t and the source latent, 4 + 4 channels).
    """
    from diffusers import UNet2DConditionModel

    size, seed = check_size(size), check_int(seed, "seed", minimum=0)
    with models.seeded(seed):
        return UNet2DConditionModel(**{**UNET_CONFIG, "sample_size": size // VAE_FACTOR, **(overrides or {})}).eval()


def make_parts(size: int = 64, *, seed: int = 0, unet_overrides: dict | None = None) -> dict:
    """Return {"unet", "vae", "text_encoder", "tokenizer", "scheduler"} of SD 1.5's configs, seeded random weights, eval.

    size: the image side (sample_size = size / 8 for the UNet, size for the VAE); unet_overrides
    replace UNET_CONFIG keys (in_channels=8 for InstructPix2Pix's UNet).
    """
    from diffusers import AutoencoderKL, PNDMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    size, seed = check_size(size), check_int(seed, "seed", minimum=0)
    unet = make_unet(size, seed=seed, overrides=unet_overrides)
    with models.seeded(seed + 1):
        vae = AutoencoderKL(**{**VAE_CONFIG, "sample_size": size})
    with models.seeded(seed + 2):
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder.eval(),
            "tokenizer": make_tokenizer(), "scheduler": PNDMScheduler.from_config(SCHEDULER_CONFIG)}


def build_folder(folder: str | Path, size: int = 64, *, seed: int = 0) -> Path:
    """Write SD 1.5's architecture (random weights) as a StableDiffusionPipeline folder in folder; return its path.

    The folder is a temporary one of the caller's (a test's tmp_path): never committed, no hub. Load it
    with pipeline.load_stable_diffusion(str(folder), device), the course's real-SD loader.
    """
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise CourseInputError(f"folder {folder} is not empty; give a fresh temporary directory.")
    pipe = StableDiffusionPipeline(**make_parts(size, seed=seed), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def load(folder: str | Path, device="cpu", *, dtype=None):
    """Return the folder loaded by pipeline.load_stable_diffusion (the course's real-SD path), offline."""
    from course_lib import pipeline

    return pipeline.load_stable_diffusion(str(folder), device, dtype=dtype, local_files_only=True)
