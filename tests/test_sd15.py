"""The course's real-SD path on Stable Diffusion 1.5's architecture with random weights (course_lib.sd15_offline).

Oracle: diffusers' own pipelines (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline with DDIM,
DPM-Solver++, Euler and Heun, StableDiffusionInstructPix2PixPipeline on SD's UNet config with 8 input
channels) on the same folder, loaded as the course loads SD 1.5 (pipeline.load_stable_diffusion). Where
no pipeline exists, the methods' own claims: edit-friendly inversion retraces its path to float error,
null-text inversion comes back closer than DDIM's under guidance, mask locking keeps the source latent
outside the mask exactly, a controller sees SD's 16 cross-attention blocks at four resolutions and
replaces or scales exactly the maps its mapper (computed with CLIP's real BPE) names. 64 x 64 images,
8 x 8 latents, a few steps: every shape of SD 1.5 but the spatial one. Marked `sd` (slow: the folder is
~4 GB of weights in float32): `make test-sd` runs them, `make test` skips them.
"""

from __future__ import annotations

import pytest
import torch

from course_lib import attention, editing, pipeline, sd15_offline, text, text2image
from course_lib.validation import CourseInputError

pytestmark = [pytest.mark.sd, pytest.mark.usefixtures("one_thread", "plain_cpu_kernels")]

SIZE = 64
PROMPTS = ["a photo of an axolotl riding a bicycle"]
TOL = 1e-5


@pytest.fixture(scope="module")
def plain_cpu_kernels():
    """Run this module without oneDNN: at 8 x 8 latents SD's UNet is bound by reading its 3.4 GB of weights, and oneDNN's
    convolutions re-lay them out at every call (measured: 1.7 s per 2-row call with it, 1.3 s without). The course and
    diffusers run the same kernels either way, so every equality holds as it would with oneDNN."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = before


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


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m", "euler", "heun"])
def test_sdedit_equals_img2img_pipeline(sd, worst, name):
    """sdedit with each of the course's samplers = StableDiffusionImg2ImgPipeline with that scheduler from SD's config
    (Euler and Heun noise in x_bar = z sqrt(sigma^2 + 1) and start from scheduler.timesteps[t_start * order]: the same
    latents, the same steps)."""
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler,
                           StableDiffusionImg2ImgPipeline)

    cls = {"ddim": DDIMScheduler, "dpmpp_2m": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler,
           "heun": HeunDiscreteScheduler}[name]
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


# ----------------------------------------------------------------------------------------------
# Inversions, prompt-to-prompt on SD's layers and tokenizer, masks, mask locking, InstructPix2Pix
# ----------------------------------------------------------------------------------------------

SOURCE = "a photo of an okapi on the grass"  # "okapi" is two BPE tokens ("ok", "api</w>"), "eagle" one
TARGET = "a photo of an eagle on the grass"
G = 7.5


@pytest.fixture(scope="module")
def parts(sd):
    return pipeline.parts_from_pipeline(sd)


@pytest.fixture(scope="module")
def z0(parts):
    return editing.encode_image(parts, _image())


def _rmse(a, b):
    return float((a - b).pow(2).mean().sqrt())


def test_null_text_and_edit_friendly_inversions_come_back_under_guidance(parts, z0, worst):
    """At g = 7.5 plain DDIM inversion drifts off its path; null-text inversion's optimised unconditional embeddings
    bring the round trip closer (Mokady et al.'s claim), and edit-friendly's noise maps retrace the path exactly
    (Huberman-Spiegelglas et al.'s claim: up to float error). Null-text leaves no gradient on SD's UNet weights."""
    settings = {"ddim": editing.InversionSettings("ddim", 2, guidance_scale=G),
                "null_text": editing.InversionSettings("null_text", 2, guidance_scale=G, null_text_steps=2),
                "edit_friendly": editing.InversionSettings("edit_friendly", 2, guidance_scale=G)}
    empty = editing.embed(parts, [""])
    rmse = {}
    for name, setting in settings.items():
        inv = editing.invert(parts, z0, SOURCE, setting, generator=0)
        assert len(inv.latents) == 3 and all(z.shape == (1, 4, SIZE // 8, SIZE // 8) for z in inv.latents)
        assert len(inv.uncond) == 2 and all(u.shape == (1, 77, 768) and torch.isfinite(u).all() for u in inv.uncond)
        assert all(torch.isfinite(z).all() for z in inv.latents) and inv.unet_calls > 0
        _, z = editing.edit_latents(parts, inv, SOURCE, guidance_scale=G)
        assert z.shape == z0.shape and torch.isfinite(z).all()
        rmse[name] = _rmse(z, z0)
        if name == "null_text":
            assert all(not torch.equal(u, empty) for u in inv.uncond)  # every step's embedding was optimised
            assert inv.uncond[0].dtype == empty.dtype
            assert all(p.grad is None for p in parts.unet.parameters())  # regression: 3.4 GB of .grad were left
        if name == "edit_friendly":
            assert len(inv.noise_maps) == 2 and all(m.shape == z0.shape and torch.isfinite(m).all()
                                                    for m in inv.noise_maps)
    worst("sd15: edit-friendly inversion round trip at g = 7.5 (latent rmse / max|z0|)",
          rmse["edit_friendly"] / float(z0.abs().max()))
    assert rmse["edit_friendly"] <= 1e-4 * float(z0.abs().max()), rmse  # float error
    assert rmse["null_text"] < 0.9 * rmse["ddim"], rmse


def test_null_text_inversion_stays_finite_with_a_float16_unet(sd, z0):
    """Regression: on a GPU the course loads SD in float16, and null-text's Adam on a float16 embedding divides by
    sqrt(v) + 1e-8 with 1e-8 = 0 and v underflowing in float16: inf and NaN embeddings, a NaN edit. The embedding is
    optimised in float32 now. A narrow UNet of SD 1.5's layout (four levels, 768-wide cross-attention) in float16 on
    the CPU, SD's text encoder and VAE: the optimised embeddings, the path and the round trip are finite."""
    from diffusers import DDIMScheduler

    narrow = {"block_out_channels": (32, 32, 32, 32), "norm_num_groups": 8, "attention_head_dim": 2}
    unet = sd15_offline.make_unet(SIZE, seed=3, overrides=narrow).half()
    half = text2image.Parts(unet, sd.vae, sd.tokenizer, sd.text_encoder,
                            scheduler=DDIMScheduler.from_config(sd.scheduler.config))
    assert half.dtype == torch.float16
    inv = editing.invert(half, z0, SOURCE, editing.InversionSettings("null_text", 3, guidance_scale=G,
                                                                     null_text_steps=3))
    assert all(torch.isfinite(u).all() for u in inv.uncond) and inv.uncond[0].dtype == torch.float16
    _, z = editing.edit_latents(half, inv, SOURCE, guidance_scale=G)
    assert torch.isfinite(z).all() and all(p.grad is None for p in unet.parameters())


@pytest.fixture(scope="module")
def direct(parts, z0):
    """Direct inversion of z0 under SOURCE, 2 steps at g = 7.5: the source branch of the controller tests."""
    return editing.invert(parts, z0, SOURCE, editing.InversionSettings("direct", 2, guidance_scale=G))


def _layers_by_side(probs: dict) -> dict[int, set]:
    out = {}
    for name, calls in probs.items():
        out.setdefault(int(round(calls[0].shape[2] ** 0.5)), set()).add(name)
    return out


def test_prompt_to_prompt_refine_controls_sds_16_cross_attention_blocks_at_four_resolutions(parts, z0, direct):
    """A word added ("green"): the refine mapper keeps every other word's source position; installed on SD 1.5's UNet
    the controller sees its 16 cross-attention blocks (5 at each of the latent's 8, 4, 2 sides, the mid block at 1),
    named as attention.cross_attention_layers says, and in its window every target map of a shared word IS the
    source's (the probabilities recorded after the edit)."""
    tok = parts.tokenizer
    target = "a photo of an okapi on the green grass"
    mapper = editing.token_mapper(tok, SOURCE, target, "auto")  # 10 vs 11 tokens with <sot>, <eot>: refine
    # target: <sot> a photo of an ok api on the green grass <eot>; source: the same without "green"
    assert mapper[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, -1, 9, 10] and mapper[-1] == 75
    assert editing.changed_positions(tok, SOURCE, target) == ([], [9])
    controller = editing.AttentionReplace(mapper=mapper, cross_window=(0.0, 0.5), record=True)  # step 0 of 2
    before = {name: type(p) for name, p in parts.unet.attn_processors.items()}
    z_src, z_tgt = editing.p2p_latents(parts, direct, target, controller, guidance_scale=G)
    assert z_tgt.shape == z0.shape and torch.isfinite(z_tgt).all() and _rmse(z_tgt, z_src) > 1e-4
    assert {name: type(p) for name, p in parts.unet.attn_processors.items()} == before  # restored on exit
    sides = _layers_by_side(controller.probs)
    assert len(controller.probs) == 16 and all(".attn2." in n for n in controller.probs)
    assert {side: len(names) for side, names in sides.items()} == {8: 5, 4: 5, 2: 5, 1: 1}
    for side, names in sides.items():
        assert names == set(attention.cross_attention_layers(parts.unet, side)), side
    assert sides[1] == {"mid_block.attentions.0.transformer_blocks.0.attn2.processor"}
    taken = mapper >= 0
    for name, calls in controller.probs.items():
        assert len(calls) == 2 and calls[0].shape[:2] == (4, 8) and calls[0].shape[-1] == 77  # CFG_LAYOUT, 8 heads
        for step, probs in enumerate(calls):
            tgt, src = editing.layout_rows(probs, "cond_tgt"), editing.layout_rows(probs, "cond_src")
            replaced = torch.equal(tgt[..., taken], src[..., mapper[taken]])
            assert replaced == (step < 1), (name, step)


def test_a_two_token_word_swapped_for_a_one_token_word_aligns_the_words_after_it(parts):
    """"okapi" is two tokens, "eagle" one: 'auto' aligns by refinement, and every word after the swap maps to its source
    position one further on (the end token too); a word swap ('swap') is refused naming the unmatched tokens."""
    tok = parts.tokenizer
    assert tok.tokenize("okapi") == ["ok", "api</w>"] and tok.tokenize("eagle") == ["eagle</w>"]
    mapper = editing.token_mapper(tok, SOURCE, TARGET, "auto")
    # target: <sot> a photo of an eagle on the grass <eot> ...; source: <sot> a photo of an ok api on the grass <eot>
    assert mapper[:10].tolist() == [0, 1, 2, 3, 4, -1, 7, 8, 9, 10]
    assert mapper[-1] == -1 and (mapper[6:-1] == torch.arange(7, 77)).all()
    assert editing.changed_positions(tok, SOURCE, TARGET) == ([5, 6], [5])
    assert editing.token_positions(tok, SOURCE, "okapi") == [5, 6]
    with pytest.raises(CourseInputError, match="'ok api' -> 'eagle'"):
        editing.token_mapper(tok, SOURCE, TARGET, "swap")


def test_reweighting_a_two_token_word_scales_both_tokens_on_every_layer(parts, direct):
    """Re-weighting "okapi" (2 tokens) by 2 scales the target's conditional cross-attention at both positions and
    nowhere else, on all 16 blocks (after the replacement by the source's maps, at every step), and the target
    branch comes out another latent than the source's. (prompt_to_prompt with a re-weighting: the local-blend test.)"""
    from course_lib.editing.tokens import reweight_scales

    tok = parts.tokenizer
    scales = reweight_scales(tok, SOURCE, (("okapi", 2.0),))
    assert scales[5] == scales[6] == 2.0 and (scales[:5] == 1).all() and (scales[7:] == 1).all()
    controller = editing.AttentionReweight(mapper=editing.token_mapper(tok, SOURCE, SOURCE, "swap"), scales=scales,
                                           cross_window=(0.0, 1.0), record=True)
    z_src, z_tgt = editing.p2p_latents(parts, direct, SOURCE, controller, guidance_scale=G)
    assert len(controller.probs) == 16
    for name, calls in controller.probs.items():
        for probs in calls:
            tgt, src = editing.layout_rows(probs, "cond_tgt"), editing.layout_rows(probs, "cond_src")
            assert torch.allclose(tgt, src * scales, rtol=1e-6, atol=0), name
    assert torch.isfinite(z_tgt).all() and _rmse(z_tgt, z_src) > 1e-4


def test_prompt_to_prompt_reweighting_alone_blends_where_the_word_is(parts, z0):
    """Regression: a re-weighting of the source prompt itself (no word changed) with local blending (the default) had
    no changed word to follow, so its mask covered nothing and the target was the source everywhere: the edit did
    nothing. Local blending follows the re-weighted words too: a mask that covers some cells, and a changed image."""
    image = _image()[0]
    settings = editing.PromptToPromptSettings(reweight={"okapi": 3.0}, self_window=(0.0, 0.0))
    inversion = editing.InversionSettings("direct", 2, guidance_scale=G)
    out = editing.prompt_to_prompt(parts, image, SOURCE, SOURCE, inversion=inversion, settings=settings)
    assert out.mask.shape == (1, SIZE, SIZE) and out.mask.any()
    assert out.image.shape == image.shape and torch.isfinite(out.image).all()
    source = editing.decode_latents(parts, z0)[0]  # where the source branch ends (direct inversion: z0 itself)
    assert float((out.image - source).abs().max()) > 1e-3


def test_diffedit_and_attention_maps_and_masks_at_latent_size(parts, z0):
    """difference_map and attention_map are (1, 1, h, w) at latent size, finite, in range; they vanish where nothing
    was asked (the same prompt twice); the masks are bool at latent (edit_mask) and image (diffedit_mask) size."""
    h = SIZE // 8
    diff = editing.difference_map(parts, z0, SOURCE, TARGET, num_draws=1, generator=0)
    same = editing.difference_map(parts, z0, SOURCE, SOURCE, num_draws=1, generator=0)
    assert diff.shape == (1, 1, h, h) and torch.isfinite(diff).all() and diff.min() >= 0 and diff.max() > 0
    assert float(same.abs().max()) == 0.0
    att = editing.attention_map(parts, z0, SOURCE, TARGET, num_draws=1, generator=0)
    assert att.shape == (1, 1, h, h) and torch.isfinite(att).all()
    assert att.min() >= 0 and att.max() <= 2 and att.max() > 0  # two rows' probabilities of distinct tokens
    mask = editing.edit_mask(parts, _image(), SOURCE, TARGET, source="attention", num_draws=1, generator=0)
    assert mask.shape == (1, 1, h, h) and mask.dtype == torch.bool and mask.any()
    small = editing.edit_mask(parts, _image(), SOURCE, TARGET, num_draws=1, generator=1)  # DiffEdit's
    pixels = editing.diffedit_mask(parts, _image(), SOURCE, TARGET, num_draws=1, generator=1)
    assert small.shape == (1, 1, h, h) and small.dtype == torch.bool and small.any()
    assert pixels.shape == (1, 1, SIZE, SIZE) and pixels.dtype == torch.bool
    assert torch.equal(pixels, editing.image_mask(small, (SIZE, SIZE)))


def test_mask_locking_keeps_the_source_latent_outside_the_mask(parts, z0, monkeypatch):
    """With a mask on the left half, the final latent equals the source latent z0 exactly on the right half (latent
    blending after every step) and differs on the left; the pixels change more inside than outside."""
    image = _image()
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[:, : SIZE // 2] = True
    decoded = []
    decode = parts.decode_latents
    monkeypatch.setattr(parts, "decode_latents", lambda z: decoded.append(z.clone()) or decode(z))
    out = editing.mask_locking(parts, image, SOURCE, TARGET, mask=mask,
                               inversion=editing.InversionSettings("ddim", 3, guidance_scale=G))
    z = decoded[-1]
    half = SIZE // 16
    assert z.shape == z0.shape and torch.equal(z[..., half:], z0[..., half:])
    assert float((z[..., :half] - z0[..., :half]).abs().max()) > 1e-2
    assert torch.equal(out.mask, mask[None, None]) and out.image.shape == image.shape
    assert torch.isfinite(out.image).all()
    change = (out.image - image).abs().mean(1)[0]
    assert float(change[:, : SIZE // 2].mean()) > float(change[:, SIZE // 2:].mean())


def test_instruct_pix2pix_loop_equals_the_pipeline_on_sds_8_channel_unet(sd, worst):
    """SD 1.5's UNet config with in_channels = 8 (InstructPix2Pix's): the course's loop (instruct_pix2pix.edit) =
    StableDiffusionInstructPix2PixPipeline with the same DDIM scheduler and seed, with and without the two guidances."""
    from diffusers import DDIMScheduler

    from course_lib import instruct_pix2pix as ip2p

    unet = sd15_offline.make_unet(SIZE, seed=5, overrides={"in_channels": 8})
    assert unet.conv_in.in_channels == 8 and len([n for n in unet.attn_processors if ".attn2." in n]) == 16
    parts = text2image.Parts(unet, sd.vae, sd.tokenizer, sd.text_encoder,
                             scheduler=DDIMScheduler.from_config(sd.scheduler.config))
    pipe = ip2p.make_pipeline(parts)
    image = _image()
    for s_t, s_i in ((7.5, 1.5), (1.0, 1.5)):  # three rows of eq. 3, and the conditional row alone
        ours = ip2p.edit(parts, image, "turn it into a watercolour", guidance_scale=s_t, image_guidance_scale=s_i,
                         num_steps=2, generator=torch.Generator().manual_seed(4))
        theirs = ip2p.pipeline_images(pipe, image, ["turn it into a watercolour"], guidance_scale=s_t,
                                      image_guidance_scale=s_i, num_steps=2, generator=torch.Generator().manual_seed(4))
        diff = float((ours - theirs).abs().max())
        worst(f"sd15: instruct_pix2pix loop vs StableDiffusionInstructPix2PixPipeline (s_T={s_t:g})", diff)
        assert ours.shape == image.shape and torch.isfinite(ours).all() and diff <= TOL, (s_t, diff)
