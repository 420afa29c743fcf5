"""The course's real-SD path on Stable Diffusion 1.5's architecture with random weights (course_lib.sd15_offline).

Oracle: diffusers' own pipelines (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline) on the same
folder, loaded as the course loads SD 1.5 (pipeline.load_stable_diffusion). 64 x 64 images, 8 x 8
latents, a few steps: every shape of SD 1.5 but the spatial one. Marked `sd` (slow: the folder is
~4 GB of weights in float32): `make test-sd` runs them, `make test` skips them.
"""

from __future__ import annotations

import pytest
import torch

from course_lib import editing, pipeline, sd15_offline, text, text2image

pytestmark = [pytest.mark.sd, pytest.mark.usefixtures("one_thread")]

SIZE = 64
PROMPTS = ["a photo of an axolotl riding a bicycle"]
TOL = 1e-5


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    """SD 1.5's architecture, random weights, written as a pipeline folder and loaded by the course's real-SD loader."""
    folder = sd15_offline.build_folder(tmp_path_factory.mktemp("sd15") / "sd15", SIZE, seed=0)
    return sd15_offline.load(folder, "cpu")


def test_tokenizer_is_clips_byte_level_bpe_of_sds_size(sd):
    tok = sd.tokenizer
    assert len(tok) == sd15_offline.VOCAB_SIZE == 49408 and tok.model_max_length == 77
    assert sd.text_encoder.config.max_position_embeddings == 77
    pieces = tok.tokenize("axolotl")
    assert len(pieces) >= 2 and "".join(pieces).replace("</w>", "") == "axolotl"  # a rare word: several tokens
    assert tok.tokenize("cat") == ["cat</w>"]  # a common one: one
    ids = tok("a photo of a cat").input_ids
    assert ids[0] == tok.bos_token_id == 49406 and ids[-1] == tok.eos_token_id == 49407
    assert ids[1:-1] == [320, 1125, 539, 320, 2368]  # CLIP's own ids for these words


def test_text_encoder_gives_77_states_of_768(sd):
    states = text.encode_prompt(PROMPTS, sd.tokenizer, sd.text_encoder)
    assert states.shape == (1, 77, 768) and torch.isfinite(states).all()
    ours = pipeline.parts_from_pipeline(sd).encode_prompt(PROMPTS)["encoder_hidden_states"]
    theirs, _ = sd.encode_prompt(PROMPTS, "cpu", 1, False)
    assert torch.equal(ours, theirs)


def test_unet_has_sds_16_attention_blocks_at_four_resolutions(sd):
    cross = [name for name in sd.unet.attn_processors if "attn2" in name]
    assert len(cross) == 16
    assert {name.split(".")[0] for name in cross} == {"down_blocks", "mid_block", "up_blocks"}


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "euler"])
def test_course_loop_equals_stable_diffusion_pipeline(sd, worst, loop_vs_pipeline, name):
    """text2image's hand loop on parts_from_pipeline(SD) = StableDiffusionPipeline with that scheduler, from SD's config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cls = {"ddim": DDIMScheduler, "dpmpp_2m": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}[name]
    parts = pipeline.parts_from_pipeline(sd)
    original, sd.scheduler = sd.scheduler, cls.from_config(sd.scheduler.config)
    try:
        for g in ((1.0, 7.5) if name == "ddim" else (7.5,)):  # g = 1: CFG off, in the pipeline and the loop
            z, diff = loop_vs_pipeline(parts, sd, PROMPTS, guidance_scale=g, num_steps=4, sampler=name, seed=1)
            worst(f"sd15: course loop vs StableDiffusionPipeline, {name} (relative)", diff)
            assert z.shape == (1, 4, SIZE // 8, SIZE // 8) and diff <= TOL, (g, diff)
        if name == "ddim":  # and the decoded image, through pipeline_images
            ours = text2image.generate(parts, PROMPTS, guidance_scale=7.5, num_steps=4,
                                       generator=torch.Generator().manual_seed(2))
            theirs = pipeline.pipeline_images(sd, PROMPTS, num_steps=4, guidance_scale=7.5,
                                              generator=torch.Generator().manual_seed(2))
            assert ours.shape == (1, 3, SIZE, SIZE) and float((ours - theirs).abs().max()) <= TOL
    finally:
        sd.scheduler = original


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_sdedit_equals_img2img_pipeline(sd, worst, name):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionImg2ImgPipeline

    cls = {"ddim": DDIMScheduler, "dpmpp_2m": DPMSolverMultistepScheduler}[name]
    parts = pipeline.parts_from_pipeline(sd)
    img2img = StableDiffusionImg2ImgPipeline(**{**sd.components, "scheduler": cls.from_config(sd.scheduler.config)})
    img2img.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ours = editing.sdedit(parts, image, [""], PROMPTS, strength=0.75, guidance_scale=7.5, num_steps=4,
                          generator=torch.Generator().manual_seed(3), sampler=name)
    ref = img2img(prompt=PROMPTS, image=image * 0.5 + 0.5, strength=0.75, guidance_scale=7.5, num_inference_steps=4,
                  generator=torch.Generator().manual_seed(3), output_type="pt").images
    diff = float((ours * 0.5 + 0.5 - ref).abs().max())
    worst(f"sd15: sdedit vs StableDiffusionImg2ImgPipeline ({name})", diff)
    assert ours.shape == image.shape and diff <= TOL


def _image():
    """A smooth random image (B=1, 3, SIZE, SIZE) in [-1, 1]: a 4 x 4 grid of colours, upsampled."""
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(7)) * 1.6 - 0.8
    return torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def test_inversions_reconstruct_under_the_same_prompt(sd):
    """direct inversion comes back exactly by construction; negative-prompt inversion under the source prompt is DDIM's
    g = 1 path (uncond = cond), so it comes back as far as plain DDIM inversion does (random weights: not far in 4 steps)."""
    parts = pipeline.parts_from_pipeline(sd)
    rows = editing.reconstruction(parts, _image(), "a photo of a cat",
                                  [editing.InversionSettings("direct", 4, guidance_scale=7.5),
                                   editing.InversionSettings("negative_prompt", 4, guidance_scale=7.5),
                                   editing.InversionSettings("ddim", 4, guidance_scale=1.0)],
                                  generator=0)
    psnr = {r["inversion"]: r["psnr_db"] for r in rows}
    assert psnr["direct"] > 35, psnr
    assert abs(psnr["negative_prompt"] - psnr["ddim"]) < 1e-3 and psnr["ddim"] > 10, psnr
    assert all(r["unet_calls"] > 0 for r in rows)


@pytest.mark.parametrize("source, target, reweight", [
    ("a photo of a cat", "a photo of a dog", {"dog": 2.0}),   # one word swapped for one, and reweighted
    ("a photo of an okapi", "a photo of an horse", None),      # a two-token word for a one-token word
])
def test_prompt_to_prompt_with_local_blend_runs_on_sds_layers(sd, source, target, reweight):
    parts = pipeline.parts_from_pipeline(sd)
    assert len(sd.tokenizer.tokenize("okapi")) == 2 and len(sd.tokenizer.tokenize("horse")) == 1
    image = _image()[0]
    result = editing.prompt_to_prompt(parts, image, source, target,  # 5 steps: the default self window holds one
                                      inversion=editing.InversionSettings("direct", 5, guidance_scale=7.5),
                                      settings=editing.PromptToPromptSettings(local_blend=True, reweight=reweight))
    out = result.image
    assert out.shape == image.shape and torch.isfinite(out).all() and out.abs().max() <= 1
    assert result.mask.shape == (1, SIZE, SIZE) and result.mask.dtype == torch.bool
    assert float((out - image).abs().max()) > 1e-3  # the edit changed something
