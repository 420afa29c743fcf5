"""Probes of the latent system's doors: bad and unusual inputs to every public function of latent, text2image,
pipeline, instruct_pix2pix, fast_sampling, guidance, vae, text, metrics and attention, each with the outcome
expected: a CourseInputError whose message names what was wrong, or acceptance with the right result.

Each row of a table is (name, call, expected): expected is a regex the CourseInputError must match, or
ACCEPT, or a function that checks the value the call returns. The models are tiny random ones (and the
shipped VAE and text tower), so the file runs in seconds.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from course_lib import (attention, fast_sampling, guidance, instruct_pix2pix, latent, metrics, models, pipeline,
                        shapes, text, text2image)
from course_lib import vae as vae_lib
from course_lib import validation
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

ACCEPT = object()
LONG = "a red circle in the top left and " * 6 + "a blue square"  # 40 words: past the tokenizer's 32 tokens
NAN_LATENTS = torch.full((1, 4, 8, 8), float("nan"))


def tiny_unet(in_channels: int = 4):
    return text2image.make_unet(seed=1, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=2,
                                in_channels=in_channels).eval()


@pytest.fixture(scope="module")
def parts():
    tokenizer, encoder = text2image.load_text_encoder(device="cpu")
    return text2image.Parts(tiny_unet(), vae_lib.load_vae(device="cpu"), tokenizer, encoder)


@pytest.fixture(scope="module")
def ip2p_parts(parts):
    return text2image.Parts(tiny_unet(8), parts.vae, parts.tokenizer, parts.text_encoder)


@pytest.fixture(scope="module")
def image():
    return shapes.render(shapes.sample_scenes(1, seed=3, split="test"))  # (1, 3, 32, 32)


@pytest.fixture(scope="module")
def digits():
    return models.digits_unet(seed=0, conditional=True, block_out_channels=(16, 16, 16), norm_num_groups=8,
                              attention_head_dim=8).eval()


def outcome(call, expected) -> str | None:
    """Return None if the call does what `expected` says, else a line saying what happened instead."""
    try:
        out = call()
    except CourseInputError as exc:
        if isinstance(expected, str) and re.search(expected, str(exc)):
            return None
        return f"CourseInputError: {exc}"
    except Exception as exc:  # a raw error from inside torch, diffusers or Python: the door did not hold
        return f"raw {type(exc).__name__}: {exc}"
    if isinstance(expected, str):
        return f"accepted, expected an error matching {expected!r}"
    if expected is not ACCEPT and not expected(out):
        return "accepted with a wrong result"
    return None


def check_table(table) -> None:
    """Run every row of a probe table and fail once, listing each row that did not behave."""
    failures = [f"{name}: {problem}" for name, call, expected in table
                if (problem := outcome(call, expected)) is not None]
    assert not failures, "\n".join(failures)


def same_as(reference):
    return lambda out: torch.equal(out, reference())


# ----------------------------------------------------------------------------------------------
# latent: constructing a system and its steps
# ----------------------------------------------------------------------------------------------

def test_system_construction_probes(parts):
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

    tok, enc, vae, unet = parts.tokenizer, parts.text_encoder, parts.vae, parts.unet
    table = [
        ("unet is a string", lambda: latent.UNetSystem("unet", vae, tok, enc), "unet must be a diffusers UNet2DConditionModel"),
        ("vae is the unet", lambda: latent.UNetSystem(unet, unet, tok, enc), "vae must be a diffusers AutoencoderKL"),
        ("text encoder is None", lambda: latent.UNetSystem(unet, vae, tok, None), "expected a CLIPModel or CLIPTextModel"),
        ("v-prediction scheduler", lambda: latent.UNetSystem(unet, vae, tok, enc, DDIMScheduler(prediction_type="v_prediction")),
         "prediction_type='v_prediction'"),
        ("flow scheduler in the UNet family", lambda: latent.UNetSystem(unet, vae, tok, enc, FlowMatchEulerDiscreteScheduler()),
         "must hold alphas_cumprod"),
        ("set_alpha_to_one scheduler", lambda: latent.UNetSystem(unet, vae, tok, enc, DDIMScheduler(set_alpha_to_one=True)),
         lambda s: s.final_alpha_bar == 1.0 and s.steps_offset == 0),
        ("check_system on a dict", lambda: latent.check_system({"unet": unet}), "parts must be a latent.LatentSystem"),
    ]
    check_table(table)


def test_system_step_probes(parts, image):
    table = [
        ("encode_prompt: 40-word prompt", lambda: parts.encode_prompt([LONG]), r"is \d+ tokens long .* at most 32"),
        ("encode_prompt: empty list", lambda: parts.encode_prompt([]), "prompts must be a str"),
        ("encode_prompt: a number", lambda: parts.encode_prompt(3), "prompts must be a str"),
        ("encode_prompt: '' is the unconditional row", lambda: parts.encode_prompt(""),
         lambda c: c["encoder_hidden_states"].shape == (1, 32, 64)),
        ("encode_image: one image without batch", lambda: parts.encode_image(image[0]), r"images must be a batch .*images\[None\]"),
        ("encode_image: uint8 pixels", lambda: parts.encode_image((image * 127.5 + 127.5).to(torch.uint8)), "images must be a floating-point"),
        ("encode_image: pixels in [0, 255]", lambda: parts.encode_image(image * 127.5 + 127.5), r"must lie in \[-1, 1\]"),
        ("encode_image: NaN pixel", lambda: parts.encode_image(image.clone().index_fill_(3, torch.tensor([0]), float("nan"))), "NaN"),
        ("encode_image: 30x30", lambda: parts.encode_image(image[..., :30, :30]), "multiples of 4"),
        ("encode_image: sample_mode 'mean'", lambda: parts.encode_image(image, sample_mode="mean"), "sample_mode"),
        ("encode_image: generator 'seed'", lambda: parts.encode_image(image, sample_mode="sample", generator="seed"),
         "generator must be a torch.Generator, an int seed"),
        ("encode_image: int seed", lambda: parts.encode_image(image, sample_mode="sample", generator=4),
         same_as(lambda: parts.encode_image(image, sample_mode="sample", generator=torch.Generator().manual_seed(4)))),
        ("encode_image: numpy seed", lambda: parts.encode_image(image, sample_mode="sample", generator=np.int64(4)),
         same_as(lambda: parts.encode_image(image, sample_mode="sample", generator=4))),
        ("prepare_latents: batch 0", lambda: parts.prepare_latents(0), "batch_size must be a positive int"),
        ("prepare_latents: numpy batch", lambda: parts.prepare_latents(np.int64(2), generator=1),
         same_as(lambda: parts.prepare_latents(2, generator=1))),
        ("prepare_latents: NaN latents", lambda: parts.prepare_latents(1, latents=NAN_LATENTS), "latents holds 256 NaN"),
        ("prepare_latents: wrong shape", lambda: parts.prepare_latents(2, latents=torch.zeros(1, 4, 8, 8)),
         r"latents must have shape \(2, 4, 8, 8\)"),
        ("prepare_latents: integer latents", lambda: parts.prepare_latents(1, latents=torch.zeros(1, 4, 8, 8, dtype=torch.long)),
         "latents must be a floating-point"),
        ("prepare_latents: float64 latents become the denoiser's dtype", lambda: parts.prepare_latents(1, latents=torch.ones(1, 4, 8, 8).double()),
         lambda z: z.dtype == torch.float32),
        ("decode_latents: 3 channels", lambda: parts.decode_latents(torch.zeros(1, 3, 8, 8)), r"latents must have shape \(B, 4, h, w\)"),
        ("decode_latents: NaN", lambda: parts.decode_latents(NAN_LATENTS), "NaN"),
        ("decode_latents: a list", lambda: parts.decode_latents([[0.0]]), "latents must be a torch.Tensor"),
        ("decode_latents: float64 latents", lambda: parts.decode_latents(torch.zeros(1, 4, 8, 8, dtype=torch.float64)),
         lambda x: x.dtype == torch.float32 and x.shape == (1, 3, 32, 32)),
        ("timesteps: 0 steps", lambda: parts.timesteps(0), "num_steps"),
        ("timesteps: unknown sampler", lambda: parts.timesteps(5, "euler_a"), "unknown sampler"),
        ("timesteps: numpy steps", lambda: parts.timesteps(np.int64(5)), lambda t: t.tolist() == [801, 601, 401, 201, 1]),
    ]
    check_table(table)


# ----------------------------------------------------------------------------------------------
# text2image
# ----------------------------------------------------------------------------------------------

def test_text2image_probes(parts):
    gen = lambda **kw: text2image.generate(parts, ["a red circle"], **{"num_steps": 2, **kw})  # noqa: E731
    z2 = parts.prepare_latents(2, generator=9)
    table = [
        ("generate: parts None", lambda: text2image.generate(None, ["a red circle"]), "parts must be a latent.UNetSystem"),
        ("generate: 40-word prompt", lambda: text2image.generate(parts, [LONG], num_steps=1), r"tokens long .* at most 32"),
        ("generate: int seed", lambda: gen(generator=0), same_as(lambda: gen(generator=torch.Generator().manual_seed(0)))),
        ("generate: numpy guidance and steps", lambda: text2image.generate(parts, ["a red circle"], guidance_scale=np.float32(4.0),
                                                                            num_steps=np.int64(2), generator=0),
         same_as(lambda: gen(generator=0))),
        ("generate: a tensor guidance scale", lambda: gen(guidance_scale=torch.tensor(4.0)), "guidance_scale must be a finite number"),
        ("generate: NaN start latents", lambda: gen(latents=NAN_LATENTS), "latents holds 256 NaN"),
        ("generate: start latents of another shape", lambda: gen(latents=torch.zeros(1, 4, 4, 4)), "latents must have shape"),
        ("generate: negative_prompt None", lambda: gen(negative_prompt=None), "negative_prompt must be one str"),
        ("generate: batch_size 0", lambda: gen(batch_size=0), "batch_size must be a positive int"),
        ("generate: alpha_bars a list", lambda: gen(alpha_bars=[0.5] * 1000), "alpha_bars must be a non-empty 1-D"),
        ("generate: unknown sampler", lambda: gen(sampler="plms"), "unknown sampler"),
        ("generate: generator a string", lambda: gen(generator="0"), "generator must be a torch.Generator"),
        ("generate: given latents split with the batches",
         lambda: text2image.generate(parts, ["a red circle", "a blue square"], num_steps=2, latents=z2, batch_size=1),
         lambda out: torch.allclose(out, text2image.generate(parts, ["a red circle", "a blue square"], num_steps=2,
                                                             latents=z2), atol=1e-5)),  # batches of 1 vs 2: round-off
        ("generate_latents: euler with a given start", lambda: text2image.generate_latents(
            parts, ["a red circle"], num_steps=2, sampler="euler", latents=z2[:1]), lambda z: bool(torch.isfinite(z).all())),
        ("latent_dataset: n 0", lambda: text2image.latent_dataset(0, parts.vae, parts.tokenizer, parts.text_encoder), "n must be"),
        ("latent_dataset: seed -1", lambda: text2image.latent_dataset(2, parts.vae, parts.tokenizer, parts.text_encoder, seed=-1),
         "seed must be an int >= 0"),
        ("adherence: images a list", lambda: text2image.adherence([[0.0]], ["a red circle"]), "images must be a torch.Tensor"),
        ("adherence: empty", lambda: text2image.adherence(torch.zeros(0, 3, 32, 32), []), "one per image"),
        ("adherence_sweep: one scale as a number", lambda: text2image.adherence_sweep(parts, 2.0, num_prompts=1, repeats=1,
                                                                                      num_steps=1),
         lambda rows: len(rows) == 1 and rows[0]["guidance_scale"] == 2.0),
        ("adherence_sweep: a NaN scale", lambda: text2image.adherence_sweep(parts, [1.0, float("nan")], num_prompts=1),
         "guidance_scale must be a finite number"),
        ("adherence_sweep: 0 prompts", lambda: text2image.adherence_sweep(parts, [1.0], num_prompts=0), "num_prompts"),
        ("load_text_encoder: 5 layers of 3", lambda: text2image.load_text_encoder(device="cpu", num_layers=5),
         "num_layers must be an int from 0"),
    ]
    check_table(table)


def test_latent_dataset_draws_what_the_reparameterisation_draws(parts):
    """vae_lib.encode(sample_mode="sample") now makes the training data: the same numbers as the old posterior + noise."""
    data = text2image.latent_dataset(6, parts.vae, parts.tokenizer, parts.text_encoder, seed=2, batch_size=4)
    g = torch.Generator().manual_seed(2)
    scenes = shapes.sample_scenes(6, split="train", generator=g)
    shapes.random_captions(scenes, g)
    by_hand = []
    with torch.no_grad():
        for i in (0, 4):
            mean, logvar = vae_lib.posterior(parts.vae, shapes.render(scenes[i: i + 4]))
            noise = torch.randn(mean.shape, generator=g)
            by_hand.append(vae_lib.reparameterise(mean, logvar, noise) * parts.vae.config.scaling_factor)
    assert torch.equal(data["x0"], torch.cat(by_hand))


# ----------------------------------------------------------------------------------------------
# pipeline
# ----------------------------------------------------------------------------------------------

def test_pipeline_probes(parts, monkeypatch):
    pipe = pipeline.make_pipeline(parts)
    pipe.set_progress_bar_config(disable=True)
    images = lambda **kw: pipeline.pipeline_images(pipe, ["a red circle"], **{"num_steps": 2, **kw})  # noqa: E731
    table = [
        ("pipeline_images: 40-word prompt", lambda: pipeline.pipeline_images(pipe, [LONG], num_steps=1), r"tokens long .* at most 32"),
        ("pipeline_images: int seed", lambda: images(generator=1), same_as(lambda: images(generator=torch.Generator().manual_seed(1)))),
        ("pipeline_images: 0 steps", lambda: images(num_steps=0), "num_steps must be a positive int"),
        ("pipeline_images: size 30", lambda: images(size=30), "size must be a multiple of the VAE's factor 4"),
        ("pipeline_images: NaN guidance", lambda: images(guidance_scale=float("nan")), "guidance_scale must be a finite number"),
        ("parts_from_pipeline: not a pipeline", lambda: pipeline.parts_from_pipeline(object()), "the pipeline has no"),
        ("parts_from_pipeline: the system's schedule", lambda: pipeline.parts_from_pipeline(pipe),
         lambda p: torch.equal(p.alpha_bars, parts.alpha_bars) and p.unet is parts.unet),
        ("make_pipeline: parts None", lambda: pipeline.make_pipeline(None), "parts must be a latent.UNetSystem"),
        ("cross_attention_maps: a list of prompts", lambda: pipeline.cross_attention_maps(parts, ["a red circle"]), "takes one prompt"),
        ("cross_attention_maps: resolution 0", lambda: pipeline.cross_attention_maps(parts, "a red circle", resolution=0),
         "resolution must be a positive int"),
        ("cross_attention_maps: int seed", lambda: pipeline.cross_attention_maps(parts, "a red circle", num_steps=1,
                                                                                generator=2).image,
         same_as(lambda: pipeline.cross_attention_maps(parts, "a red circle", num_steps=1,
                                                       generator=torch.Generator().manual_seed(2)).image)),
        ("check_device: a word", lambda: pipeline.load_pipeline(device="gpu"), "device must be 'cpu', 'cuda'"),
        ("check_device: cpu", lambda: validation.check_device("cpu"), lambda d: d == torch.device("cpu")),
        ("load_pipeline: float16 on the CPU", lambda: pipeline.load_pipeline("sd_shapes", "cpu", dtype=torch.float16),
         "float16 weights on the CPU"),
    ]
    check_table(table)
    # no CUDA: refused before a single file is read
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(pipeline, "verify", lambda *a, **k: pytest.fail("load_pipeline read the folder before checking the device"))
    for device in ("cuda", "cuda:1", torch.device("cuda")):
        with pytest.raises(CourseInputError, match="this machine has no CUDA device"):
            pipeline.load_pipeline("sd_shapes", device=device)
    with pytest.raises(CourseInputError, match="this machine has no CUDA device"):
        pipeline.load_stable_diffusion("any/model", device="cuda")


# ----------------------------------------------------------------------------------------------
# instruct_pix2pix
# ----------------------------------------------------------------------------------------------

def test_instruct_pix2pix_probes(parts, ip2p_parts, image):
    instruction = "make the red circle blue"
    edit = lambda **kw: instruct_pix2pix.edit(ip2p_parts, image[0], instruction, **{"num_steps": 2, **kw})  # noqa: E731
    cond = {"encoder_hidden_states": torch.ones(4, 2, 3), "image_latents": torch.ones(4, 4, 1, 1)}
    table = [
        ("edit: numpy image guidance (the issue's probe)", lambda: edit(image_guidance_scale=np.float32(1.5), generator=0),
         same_as(lambda: edit(image_guidance_scale=1.5, generator=0))),
        ("edit: int seed", lambda: edit(generator=3), same_as(lambda: edit(generator=torch.Generator().manual_seed(3)))),
        ("edit: numpy text guidance", lambda: edit(guidance_scale=np.float64(4.0), generator=0), same_as(lambda: edit(generator=0))),
        ("edit: a text-to-image UNet", lambda: instruct_pix2pix.edit(parts, image[0], instruction), "input channels"),
        ("edit: NaN image guidance", lambda: edit(image_guidance_scale=float("nan")), "image_guidance_scale must be a finite number"),
        ("edit: negative image guidance", lambda: edit(image_guidance_scale=-1), "image_guidance_scale must be a finite number >= 0"),
        ("edit: image guidance as a string", lambda: edit(image_guidance_scale="1.5"), "image_guidance_scale"),
        ("edit: 40-word instruction", lambda: instruct_pix2pix.edit(ip2p_parts, image[0], LONG), r"tokens long .* at most 32"),
        ("edit: NaN start latents", lambda: edit(latents=NAN_LATENTS), "latents holds 256 NaN"),
        ("edit: negative_prompt a list", lambda: edit(negative_prompt=["x"]), "negative_prompt must be one str"),
        ("edit: image in [0, 255]", lambda: instruct_pix2pix.edit(ip2p_parts, image[0] * 127.5 + 127.5, instruction),
         r"must lie in \[-1, 1\]"),
        ("edit: image a path", lambda: instruct_pix2pix.edit(ip2p_parts, "scene.png", instruction), "image must be a"),
        ("edit_latents: two images, one instruction", lambda: instruct_pix2pix.edit_latents(ip2p_parts, torch.cat([image, image]),
                                                                                            [instruction]),
         "one \\(3, H, W\\) image per instruction"),
        ("image_latents: uint8", lambda: instruct_pix2pix.image_latents(parts.vae, image.to(torch.uint8)), "images must be a floating-point"),
        ("conditioning_dropout: p 0.5", lambda: instruct_pix2pix.conditioning_dropout(cond, None, null_text=torch.zeros(1, 2, 3), p=0.5),
         r"p must be a finite number in \[0, 0.333333\]"),
        ("conditioning_dropout: int seed", lambda: instruct_pix2pix.conditioning_dropout(cond, 0, null_text=torch.zeros(1, 2, 3))["image_latents"],
         same_as(lambda: instruct_pix2pix.conditioning_dropout(cond, torch.Generator().manual_seed(0),
                                                               null_text=torch.zeros(1, 2, 3))["image_latents"])),
        ("dual_cfg_denoiser: guidance None", lambda: instruct_pix2pix.dual_cfg_denoiser(ip2p_parts.unet, None, 1.5, None, None, None),
         "guidance_scale must be a finite number"),
        ("random_pairs: int seed", lambda: [c.target for c in instruct_pix2pix.random_pairs(3, 5)],
         lambda out: out == [c.target for c in instruct_pix2pix.random_pairs(3, torch.Generator().manual_seed(5))]),
        ("random_pairs: no generator", lambda: instruct_pix2pix.random_pairs(3, None), "needs a generator"),
        ("pair_dataset: n 0", lambda: instruct_pix2pix.pair_dataset(0, parts.vae, parts.tokenizer, parts.text_encoder), "n must be"),
    ]
    check_table(table)
    pipe = instruct_pix2pix.make_pipeline(ip2p_parts)
    with pytest.raises(CourseInputError, match=r"tokens long .* at most 32"):
        instruct_pix2pix.pipeline_images(pipe, image, [LONG], num_steps=1)
    theirs = instruct_pix2pix.pipeline_images(pipe, image, [instruction], num_steps=2, generator=0)
    assert torch.allclose(theirs, edit(generator=0)[None], atol=1e-5)  # int seed on both sides


# ----------------------------------------------------------------------------------------------
# fast_sampling and guidance
# ----------------------------------------------------------------------------------------------

def test_fast_sampling_and_guidance_probes(parts, digits):
    labels = [3, 7]
    table = [
        ("log_sigma_alpha_bars: sigma_min 0", lambda: fast_sampling.log_sigma_alpha_bars(0.0, 80.0), "sigma_min must be a finite number > 0"),
        ("log_sigma_alpha_bars: a string", lambda: fast_sampling.log_sigma_alpha_bars("0.002"), "sigma_min"),
        ("log_sigma_alpha_bars: reversed", lambda: fast_sampling.log_sigma_alpha_bars(80.0, 0.002), "sigma_min < sigma_max"),
        ("log_sigma_alpha_bars: numpy ends", lambda: fast_sampling.log_sigma_alpha_bars(np.float32(0.5), np.float64(2.0), size=3),
         lambda ab: torch.allclose(ab, 1 / (1 + torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64) ** 2), atol=1e-7)),
        ("ode_errors: n 0", lambda: fast_sampling.ode_errors(n=0), "n must be a positive int"),
        ("text_study: no system", lambda: fast_sampling.text_study(None), "parts must be a latent.UNetSystem"),
        ("digits_study: per_class 0", lambda: fast_sampling.digits_study(digits, per_class=0), "per_class"),
        ("generate_digits_cfg: int seed", lambda: guidance.generate_digits_cfg(digits, labels, num_steps=2, generator=5),
         same_as(lambda: guidance.generate_digits_cfg(digits, labels, num_steps=2, generator=torch.Generator().manual_seed(5)))),
        ("generate_digits_cfg: numpy guidance", lambda: guidance.generate_digits_cfg(digits, labels, np.float32(2.0), num_steps=2,
                                                                                     generator=5),
         same_as(lambda: guidance.generate_digits_cfg(digits, labels, 2.0, num_steps=2, generator=5))),
        ("generate_digits_cfg: NaN x_T", lambda: guidance.generate_digits_cfg(digits, labels, num_steps=2,
                                                                              x_T=torch.full((2, 1, 16, 16), float("nan"))),
         "x_T holds 512 NaN"),
        ("generate_digits_cfg: alpha_bars a list", lambda: guidance.generate_digits_cfg(digits, labels, num_steps=2,
                                                                                        alpha_bars=[0.5] * 1000),
         "alpha_bars must be a non-empty 1-D"),
        ("cfg_denoiser: no uncond at g = 4", lambda: guidance.cfg_denoiser(parts.unet, 4.0, {"encoder_hidden_states": torch.zeros(1, 32, 64)}),
         "needs the unconditional rows"),
        ("cfg_denoiser: a system", lambda: guidance.cfg_denoiser(parts, 1.0, parts.encode_prompt(["a red circle"]))(
            torch.zeros(1, 4, 8, 8), 10), same_as(lambda: parts.predict(torch.zeros(1, 4, 8, 8), 10, parts.encode_prompt(["a red circle"])))),
        ("tilted_moments: numpy component", lambda: guidance.tilted_moments(_mixture(), np.int64(1), 1.0, step=0.05)[0],
         lambda mean: torch.allclose(mean, torch.tensor([2.0, 0.0], dtype=torch.float64), atol=1e-6)),
        ("tilted_moments: component 5 of 2", lambda: guidance.tilted_moments(_mixture(), 5, 1.0), r"component must be an int >= 0 and <= 1"),
        ("tilted_moments: step 0", lambda: guidance.tilted_moments(_mixture(), 0, 1.0, step=0), "step must be a finite number > 0"),
        ("tilted_moments: lim -1", lambda: guidance.tilted_moments(_mixture(), 0, 1.0, lim=-1.0), "lim must be a finite number > 0"),
        ("check_guidance_scale: bool", lambda: guidance.check_guidance_scale(True), "guidance_scale must be a finite number"),
    ]
    check_table(table)


def _mixture():
    from course_lib import mixtures

    return mixtures.GaussianMixture(torch.tensor([[-2.0, 0.0], [2.0, 0.0]], dtype=torch.float64),
                                    torch.tensor([0.3, 0.3], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64))


# ----------------------------------------------------------------------------------------------
# vae, text, metrics, attention
# ----------------------------------------------------------------------------------------------

def test_vae_probes(parts, image):
    vae = parts.vae
    table = [
        ("encode: int seed", lambda: vae_lib.encode(vae, image, generator=2),
         same_as(lambda: vae_lib.encode(vae, image, generator=torch.Generator().manual_seed(2)))),
        ("encode: sample_mode 'mode'", lambda: vae_lib.encode(vae, image, sample_mode="mode"), "sample_mode must be 'sample' or 'argmax'"),
        ("encode: empty batch", lambda: vae_lib.encode(vae, image[:0]), r"with B >= 1"),
        ("decode: NaN", lambda: vae_lib.decode(vae, NAN_LATENTS), "NaN"),
        ("latent_shape: 30 px", lambda: vae_lib.latent_shape(vae, 30), "multiple of this VAE's factor 4"),
        ("latent_shape: numpy 32", lambda: vae_lib.latent_shape(vae, np.int64(32)), lambda s: s == (4, 8, 8)),
        ("set_scaling_factor: 0", lambda: vae_lib.set_scaling_factor(vae_lib.make_vae(), 0), "the scaling factor must be a finite number > 0"),
        ("set_scaling_factor: NaN", lambda: vae_lib.set_scaling_factor(vae_lib.make_vae(), float("nan")), "scaling factor"),
        ("vae_loss_terms: negative KL weight", lambda: vae_lib.vae_loss_terms(vae, image, kl_weight=-1.0), "kl_weight must be a finite number >= 0"),
        ("vae_loss_terms: int seed", lambda: vae_lib.vae_loss_terms(vae, image, 1)["loss"],
         same_as(lambda: vae_lib.vae_loss_terms(vae, image, torch.Generator().manual_seed(1))["loss"])),
        ("compute_scaling_factor: batch 0", lambda: vae_lib.compute_scaling_factor(vae, image, batch_size=0), "batch_size"),
        ("compute_scaling_factor: int seed", lambda: vae_lib.compute_scaling_factor(vae, image, 0),
         lambda v: v == vae_lib.compute_scaling_factor(vae, image, torch.Generator().manual_seed(0))),
        ("reconstruct: batch 0", lambda: vae_lib.reconstruct(vae, image, batch_size=0), "batch_size"),
    ]
    check_table(table)


def test_text_probes(parts):
    tok, enc = parts.tokenizer, parts.text_encoder
    words = " ".join(["red"] * 30)  # 30 words + start and end: exactly 32 tokens
    table = [
        ("encode_prompt: 40 words", lambda: text.encode_prompt([LONG], tok, enc), r"is \d+ tokens long with its start and end tokens"),
        ("encode_prompt: 40 words, truncation asked", lambda: text.encode_prompt([LONG], tok, enc, truncation=True),
         lambda e: e.shape == (1, 32, 64)),
        ("encode_prompt: differs only past the limit", lambda: text.encode_prompt([LONG, LONG + " red"], tok, enc), "tokens long"),
        ("check_prompt_lengths: exactly 32 tokens", lambda: text.check_prompt_lengths(words, tok), lambda p: p == [words]),
        ("check_prompt_lengths: 33 tokens", lambda: text.check_prompt_lengths(words + " red", tok), "33 tokens long"),
        ("tokenize: 40 words", lambda: text.tokenize(LONG, tok), "tokens long"),
        ("build_tokenizer: numpy length", lambda: text.build_tokenizer(max_length=np.int64(16)), lambda t: t.model_max_length == 16),
        ("build_tokenizer: length 2", lambda: text.build_tokenizer(max_length=2), "max_length must be an int >= 3"),
        ("truncate_text_encoder: numpy layers", lambda: text.truncate_text_encoder(enc, np.int64(0)),
         lambda e: e.config.num_hidden_layers == 0),
        ("tokens: a batch", lambda: text.tokens(torch.zeros(2, 3, dtype=torch.long), tok), "one sequence of ids"),
        ("text_encoder_of: a string", lambda: text.text_encoder_of("clip"), "expected a CLIPModel or CLIPTextModel"),
        ("unknown_words: None", lambda: text.unknown_words(None, tok), "prompts must be a str"),
    ]
    check_table(table)


def test_psnr_probes_and_its_mask_against_a_hand_count():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1, torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    keep = torch.zeros(4, 4, dtype=torch.bool)
    keep[1:3, :2] = True
    kept = [(float(x[b, c, i, j]) - float(y[b, c, i, j])) ** 2 for b in range(2) for c in range(3) for i in range(4)
            for j in range(4) if keep[i, j]]
    oracle = 10 * math.log10(4.0 / (sum(kept) / len(kept)))
    table = [
        ("kept pixels only", lambda: metrics.psnr(x, y, keep=keep), lambda v: abs(v - oracle) < 1e-9),
        ("[0, 1] images, data range 1", lambda: metrics.psnr((x + 1) / 2, (y + 1) / 2, 1.0),
         lambda v: abs(v - metrics.psnr(x, y)) < 1e-9),
        ("numpy data range", lambda: metrics.psnr(x, y, np.float32(2.0)), lambda v: v == metrics.psnr(x, y)),
        ("identical, capped", lambda: metrics.psnr(x, x, cap=60.0), lambda v: v == 60.0),
        ("identical, uncapped", lambda: metrics.psnr(x, x), lambda v: v == float("inf")),
        ("capped below the value", lambda: metrics.psnr(x, y, cap=1.0), lambda v: v == 1.0),
        ("keep selects nothing", lambda: metrics.psnr(x, y, keep=torch.zeros(4, 4, dtype=torch.bool)), "keep selects no pixel"),
        ("keep of another shape", lambda: metrics.psnr(x, y, keep=torch.ones(3, 3, dtype=torch.bool)), r"keep must be a bool tensor of shape \(4, 4\)"),
        ("keep as floats", lambda: metrics.psnr(x, y, keep=torch.ones(4, 4)), "keep must be a bool tensor"),
        ("NaN in x", lambda: metrics.psnr(torch.full_like(x, float("nan")), y), "x holds 96 NaN"),
        ("data range 0", lambda: metrics.psnr(x, y, 0.0), "data_range must be a finite number > 0"),
        ("shapes differ", lambda: metrics.psnr(x, y[0]), "one shape"),
        ("empty", lambda: metrics.psnr(x[:0], y[:0]), "empty"),
        ("distance_to_data: int seed", lambda: metrics.distance_to_data(x.reshape(-1, 2)[:20], _draw, 0, repeats=1),
         lambda v: v == metrics.distance_to_data(x.reshape(-1, 2)[:20], _draw, torch.Generator().manual_seed(0), repeats=1)),
        ("distance_to_data: repeats 0", lambda: metrics.distance_to_data(x.reshape(-1, 2), _draw, repeats=0), "repeats"),
        ("data_floor: n 0", lambda: metrics.data_floor(_draw, 0), "n must be a positive int"),
    ]
    check_table(table)


def _draw(n, generator):
    return torch.randn(n, 2, generator=generator)


def test_attention_probes(parts):
    w = attention.AttentionWeights(torch.eye(4), torch.eye(4), torch.eye(4), torch.eye(4), heads=2)
    x, c = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0)), torch.randn(1, 5, 4)
    table = [
        ("cross_attention: a list", lambda: attention.cross_attention([[0.0]], c, w), "hidden_states must be a torch.Tensor"),
        ("cross_attention: integer context", lambda: attention.cross_attention(x, c.long(), w), "context must be a floating-point"),
        ("cross_attention: weights a dict", lambda: attention.cross_attention(x, c, {"w_q": 1}), "weights must be an attention.AttentionWeights"),
        ("cross_attention: 0 heads", lambda: attention.cross_attention(x, c, attention.AttentionWeights(*[torch.eye(4)] * 4, heads=0)),
         "heads must be a positive int"),
        ("cross_attention: one return type", lambda: attention.cross_attention(x, c, w), lambda out: out.shape == (1, 3, 4)),
        ("cross_attention_with_probs: rows sum to 1", lambda: attention.cross_attention_with_probs(x, c, w),
         lambda r: torch.equal(r[0], attention.cross_attention(x, c, w)) and torch.allclose(r[1].sum(-1), torch.ones(1, 2, 3))),
        ("record_attention: a string store", lambda: attention.record_attention(parts.unet, "store").__enter__(),
         "store must be an attention.AttentionStore"),
        ("record_attention: one layer by name", lambda: _recorded(parts.unet), lambda names: len(names) == 1),
        ("word_maps: height 0", lambda: attention.word_maps(torch.ones(1, 4, 2), ["a", "b"], 0, 4), "height must be a positive int"),
        ("word_maps: integer probs", lambda: attention.word_maps(torch.ones(1, 4, 2, dtype=torch.long), ["a", "b"], 2, 2),
         "probs must be a floating-point"),
        ("dominant_words: a list", lambda: attention.dominant_words([[1.0]], 1, 1), "probs must be a torch.Tensor"),
        ("cross_attention_layers: resolution 0", lambda: attention.cross_attention_layers(parts.unet, 0), "resolution must be a positive int"),
        ("cross_attention_layers: not a UNet", lambda: attention.cross_attention_layers(None), "unet must be a diffusers UNet2DConditionModel"),
        ("colour_reader: temperature 0", lambda: attention.colour_reader(parts.tokenizer, {"red": (1, 0, 0)}, temperature=0),
         "temperature must be a finite number > 0"),
        ("pixel_features: a list", lambda: attention.pixel_features([[0.0]]), "images must be a torch.Tensor"),
    ]
    check_table(table)


def _recorded(unet):
    name = attention.cross_attention_layers(unet)[0]
    with attention.record_attention(unet, layers=name) as store:
        with torch.no_grad():
            unet(torch.zeros(1, 4, 8, 8), 10, encoder_hidden_states=torch.zeros(1, 32, 64))
    return list(store.probs)
