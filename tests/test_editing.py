"""Locked-image editing on a tiny random UNet with the shipped VAE and CLIP text tower: SDEdit against
diffusers' img2img pipeline, DDIM inversion against DDIMInverseScheduler, prompt-to-prompt controllers,
mask locking, and the bad-input errors."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import editing, shapes, text2image
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def parts():
    """A tiny random UNet (UNET_CONFIG, narrow channels; conv_out scaled by 0.1 so that eps is a smooth function
    of z, as a trained one is), the shipped VAE and the shipped CLIP text tower, on the CPU."""
    unet = text2image.make_unet(0, block_out_channels=(16, 32), attention_head_dim=2, norm_num_groups=8).eval()
    with torch.no_grad():
        unet.conv_out.weight.mul_(0.1)
        unet.conv_out.bias.mul_(0.1)
    tokenizer, encoder = text2image.load_text_encoder(device="cpu")
    return text2image.Parts(unet, vae_lib.load_vae(device="cpu"), tokenizer, encoder)


# The oracle's scheduler, built here from its documented config (not from course_lib.pipeline).
SD_DDIM = dict(**text2image.SCHEDULE.diffusers_config(), timestep_spacing="leading", steps_offset=1,
               set_alpha_to_one=False, clip_sample=False)


@pytest.fixture(scope="module")
def cases():
    return shapes.edit_cases(2, seed=0, kinds=("colour",))  # prompts that differ in one word


def _images(cases):
    return torch.stack([c.source_image for c in cases])


# ----------------------------------------------------------------------------------------------
# SDEdit = StableDiffusionImg2ImgPipeline
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strength, guidance_scale", [(0.6, 4.0), (1.0, 1.0)])
def test_sdedit_equals_diffusers_img2img(parts, cases, strength, guidance_scale, worst):
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                          unet=parts.unet, scheduler=DDIMScheduler(**SD_DDIM), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    images = _images(cases)
    prompts = [c.target_caption for c in cases]
    ours = editing.sdedit(parts, images, [c.source_caption for c in cases], prompts, strength=strength,
                          guidance_scale=guidance_scale, num_steps=10, generator=torch.Generator().manual_seed(3))
    ref = pipe(prompt=prompts, image=images * 0.5 + 0.5, strength=strength, guidance_scale=guidance_scale,
               num_inference_steps=10, generator=torch.Generator().manual_seed(3), output_type="pt").images
    diff = (ours * 0.5 + 0.5 - ref).abs().max().item()
    worst("editing: sdedit vs StableDiffusionImg2ImgPipeline", diff)
    assert ours.shape == images.shape and diff <= 1e-5
    assert (ours - images).abs().max() > 0.01  # it did change the image
    assert (ours.abs() < 0.999).float().mean() > 0.5  # and the comparison is not hidden by clamping


def test_sdedit_strength_zero_is_the_vae_reconstruction(parts, cases):
    image = cases[0].source_image
    out = editing.sdedit(parts, image, "", cases[0].target_caption, strength=0.0,
                         generator=torch.Generator().manual_seed(0))
    z0 = editing.encode_image(parts, image[None], generator=torch.Generator().manual_seed(0), sample_mode="sample")
    assert out.shape == image.shape
    assert torch.equal(out, editing.decode_latents(parts, z0)[0])


def test_edit_timesteps_follow_the_img2img_pipeline():
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(**SD_DDIM)
    scheduler.set_timesteps(10)
    assert editing.edit_timesteps(10).tolist() == scheduler.timesteps.tolist()  # leading spacing + steps_offset 1
    assert editing.edit_timesteps(10).tolist()[:2] == [901, 801]
    assert editing.edit_timesteps(10, 0.55).tolist() == scheduler.timesteps[5:].tolist()
    assert len(editing.edit_timesteps(10, 0.0)) == 0


# ----------------------------------------------------------------------------------------------
# DDIM inversion
# ----------------------------------------------------------------------------------------------

def test_ddim_invert_equals_diffusers_inverse_scheduler(parts, cases, worst):
    from diffusers import DDIMInverseScheduler

    sched = DDIMInverseScheduler(**SD_DDIM)
    sched.set_timesteps(8)
    prompt = cases[0].source_caption
    z = editing.encode_image(parts, cases[0].source_image[None])
    ours = editing.ddim_invert(parts, z, prompt, num_steps=8)
    cond = editing.embed(parts, [prompt])
    assert len(ours) == 9 and torch.equal(ours[0], z)
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            eps = parts.unet(z, t, encoder_hidden_states=cond).sample
            z = sched.step(eps, t, z).prev_sample
            diff = (ours[i + 1] - z).abs().max().item()
            worst("editing: ddim_invert vs DDIMInverseScheduler", diff)
            assert diff <= 1e-5


def test_inversion_error_shrinks_with_steps_and_cfg_breaks_it(parts, cases):
    image, prompt = cases[0].source_image, cases[0].source_caption
    rows = editing.reconstruction_error(parts, image, prompt, steps=(10, 20, 50))
    errors = [r["latent_rmse"] for r in rows]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.5 * errors[0], errors
    assert [r["unet_calls"] for r in rows] == [20, 40, 100]
    cfg = editing.reconstruction_error(parts, image, prompt, steps=(50,), guidance_scale=4.0)[0]
    remedy = editing.reconstruction_error(parts, image, prompt, steps=(50,), guidance_scale=4.0,
                                          negative_prompt_inversion=True)[0]
    assert cfg["latent_rmse"] > 3 * errors[2]  # CFG leaves the path the inversion followed
    assert remedy["latent_rmse"] == pytest.approx(errors[2], rel=1e-3)  # the source prompt as negative: g = 1 again
    assert remedy["unet_calls"] == 100  # no extra UNet calls (the CFG rows ride in the same batched call)


def test_ddim_edit_with_the_same_prompt_reconstructs(parts, cases):
    image, prompt = cases[0].source_image, cases[0].source_caption
    out = editing.ddim_edit(parts, image, prompt, prompt, num_steps=20, guidance_scale=4.0)
    reference = editing.decode_latents(parts, editing.encode_image(parts, image[None]))[0]
    mse = (out - reference).pow(2).mean().item()
    assert out.shape == image.shape and 10 * math.log10(4 / mse) > 35  # PSNR in dB, images in [-1, 1]


# ----------------------------------------------------------------------------------------------
# Prompt-to-prompt
# ----------------------------------------------------------------------------------------------

class _StepLog(editing.AttentionReplace):
    """A word-swap controller that also notes the step it was told at every cross-attention call."""

    def edit(self, name, probs, is_cross):
        if is_cross:
            self.probs.setdefault("_steps", []).append(self.step)
        return super().edit(name, probs, is_cross)


def test_word_swap_window_makes_target_maps_the_source_maps_and_restores_processors(parts, cases):
    src, tgt = cases[0].source_caption, cases[0].target_caption
    mapper = editing.token_mapper(parts.tokenizer, src, tgt, "swap")
    controller = _StepLog(mapper=mapper, cross_window=(0.0, 1.0), record=True)
    before = dict(parts.unet.attn_processors)
    z_T = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    z_src, z_tgt = editing.p2p_latents(parts, z_T, src, tgt, controller, num_steps=4, guidance_scale=4.0)
    after = parts.unet.attn_processors
    assert after.keys() == before.keys() and all(after[n] is before[n] for n in before)
    steps = controller.probs.pop("_steps")
    cross_layers = [n for n in before if "attn2" in n]
    assert sorted(controller.probs) == sorted(cross_layers)
    assert steps == [i for i in range(4) for _ in cross_layers]  # told by the loop, once per step
    for name, calls in controller.probs.items():
        assert len(calls) == 4
        for probs in calls:
            p = probs.view(2, 2, 2, *probs.shape[1:])  # [uncond, cond] x [src, tgt] x B
            assert torch.equal(p[1, 1], p[1, 0])  # conditional target maps = source maps
            assert torch.equal(editing.layout_rows(probs, "cond_tgt"), editing.layout_rows(probs, "cond_src"))
    assert not torch.equal(z_src, z_tgt)  # the swapped word's values still differ
    # A window that excludes every step leaves the target its own maps.
    idle = editing.AttentionReplace(mapper=mapper, cross_window=(0.0, 0.0), record=True)
    editing.p2p_latents(parts, z_T, src, tgt, idle, num_steps=2, guidance_scale=4.0)
    probs = idle.probs[cross_layers[0]][0].view(2, 2, 2, *idle.probs[cross_layers[0]][0].shape[1:])
    assert not torch.equal(probs[1, 1], probs[1, 0])


def test_processors_are_restored_when_the_loop_raises(parts):
    class Broken(editing.AttentionController):
        def edit(self, name, probs, is_cross):
            raise RuntimeError("boom")

    before = dict(parts.unet.attn_processors)
    with pytest.raises(RuntimeError, match="boom"):
        editing.p2p_latents(parts, torch.zeros(1, 4, 8, 8), "a red circle", "a blue circle", Broken(), num_steps=2)
    assert all(parts.unet.attn_processors[n] is before[n] for n in before)


def test_reweight_scales_one_word_and_window_fractions(parts):
    prompt = "a red circle in the top left"
    pos = editing.token_positions(parts.tokenizer, prompt, "red")
    assert pos == [2]
    scales = torch.ones(parts.tokenizer.model_max_length)
    scales[pos] = 3.0
    controller = editing.AttentionReweight(mapper=editing.token_mapper(parts.tokenizer, prompt, prompt),
                                           cross_window=(0.0, 1.0), scales=scales, reweight_window=(0.5, 1.0),
                                           record=True)
    editing.p2p_latents(parts, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), prompt, prompt,
                        controller, num_steps=4, guidance_scale=2.0)
    name = next(iter(controller.probs))
    for step, probs in enumerate(controller.probs[name]):
        p = probs.view(2, 2, 1, *probs.shape[1:])
        factor = 3.0 if step >= 2 else 1.0  # window (0.5, 1) of 4 steps: steps 2 and 3
        assert torch.allclose(p[1, 1][..., 2], factor * p[1, 0][..., 2])
        assert torch.equal(p[1, 1][..., 3], p[1, 0][..., 3])


def test_prompt_to_prompt_runs_on_an_image_and_refine_maps_common_words(parts, cases):
    case = cases[0]
    out = editing.prompt_to_prompt(parts, case.source_image, case.source_caption, case.target_caption, num_steps=4)
    assert out.shape == case.source_image.shape and out.abs().max() <= 1
    mapper = editing.token_mapper(parts.tokenizer, "a red circle", "a red circle on the left", "refine")
    assert mapper[:8].tolist() == [0, 1, 2, 3, -1, -1, -1, 4]  # common words and the end token take the source's maps


# ----------------------------------------------------------------------------------------------
# Mask locking
# ----------------------------------------------------------------------------------------------

def test_latent_blending_keeps_the_source_latent_outside_the_mask(parts, cases):
    case = cases[0]
    image = case.source_image[None]
    mask = editing.check_mask(case.mask, image)
    z0 = editing.encode_image(parts, image)
    lm = editing.latent_mask(mask, z0.shape[-2:])
    assert lm.shape == (1, 1, 8, 8) and lm.any() and not lm.all()
    inverted = editing.ddim_invert(parts, z0, case.source_caption, num_steps=6)
    z = editing.regenerate(parts, inverted, case.target_caption, num_steps=6, guidance_scale=4.0, mask=lm)
    outside = ~lm.expand_as(z)
    assert torch.equal(z[outside], z0[outside])  # exactly, in latent space
    assert not torch.equal(z[~outside], z0[~outside])
    out = editing.mask_locking(parts, case.source_image, case.source_caption, case.target_caption, mask=case.mask,
                               num_steps=6, composite=True)
    assert torch.equal(out[:, ~case.mask], case.source_image[:, ~case.mask])


def test_mask_locking_starts_the_masked_latents_from_fresh_noise_or_the_inverted_source(parts, cases):
    case = cases[0]
    args = (parts, case.source_image, case.source_caption, case.target_caption)
    runs = {(start, seed): editing.mask_locking(*args, mask=case.mask, num_steps=4, start=start,
                                               generator=torch.Generator().manual_seed(seed))
            for start in ("noise", "inverted") for seed in (0, 1)}
    assert torch.equal(runs["inverted", 0], runs["inverted", 1])  # no draw: the generator plays no part
    assert not torch.equal(runs["noise", 0], runs["noise", 1])  # fresh noise in the mask
    inside = case.mask.expand_as(case.source_image)
    assert (runs["noise", 0][inside] - runs["inverted", 0][inside]).abs().max() > 0.1
    pasted = editing.mask_locking(*args, mask=case.mask, num_steps=4, composite=True,
                                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(pasted[~inside], case.source_image[~inside])  # whatever the start, the paste locks exactly
    assert torch.equal(pasted[inside], runs["noise", 0][inside])
    with pytest.raises(CourseInputError, match="start must be 'noise'"):
        editing.mask_locking(*args, mask=case.mask, start="source")


def test_automatic_mask_is_where_the_predictions_differ(parts, cases):
    images = _images(cases)
    diff = editing.difference_map(parts, editing.encode_image(parts, images), [c.source_caption for c in cases],
                                  [c.target_caption for c in cases], num_draws=2,
                                  generator=torch.Generator().manual_seed(0))
    assert diff.shape == (2, 1, 8, 8) and diff.amax((1, 2, 3)).allclose(torch.ones(2))
    same = editing.difference_map(parts, editing.encode_image(parts, images[:1]), "a red circle", "a red circle",
                                  num_draws=1, generator=torch.Generator().manual_seed(0))
    assert same.abs().max() == 0  # the same prompt disagrees nowhere
    out, mask = editing.mask_locking(parts, images, [c.source_caption for c in cases],
                                     [c.target_caption for c in cases], num_steps=4, mask_draws=2, return_mask=True,
                                     generator=torch.Generator().manual_seed(0))
    assert out.shape == images.shape and mask.shape == (2, 1, 32, 32) and mask.dtype == torch.bool


def test_methods_registry_has_one_signature(parts, cases):
    added = shapes.edit_cases(1, seed=0, kinds=("add",))[0]  # prompts that do not align: P2P refines
    for case in (cases[1], added):
        for name in editing.METHODS:
            out = editing.run_case(name, parts, case, generator=torch.Generator().manual_seed(0), num_steps=2,
                                   **({"mask_draws": 1} if name == "mask_locking" else {}))
            assert out.shape == case.source_image.shape and out.abs().max() <= 1, name


def test_any_image_size_the_vae_takes(parts):
    image = torch.rand(3, 48, 40) * 2 - 1  # 12 x 10 latents: nothing assumes 32 x 32
    out = editing.sdedit(parts, image, "", "a red circle", num_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == image.shape
    out = editing.mask_locking(parts, image, "a red circle", "a blue circle", num_steps=2, mask_draws=1,
                               generator=torch.Generator().manual_seed(0))
    assert out.shape == image.shape


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

def test_bad_input_gets_clear_errors(parts, cases):
    image, src, tgt = cases[0].source_image, cases[0].source_caption, cases[0].target_caption
    for method in editing.METHODS.values():
        with pytest.raises(CourseInputError, match="multiples of 4"):
            method(parts, torch.zeros(3, 30, 30), src, tgt)
        with pytest.raises(CourseInputError, match="strength"):
            method(parts, image, src, tgt, strength=1.5)
        with pytest.raises(CourseInputError, match="strength"):
            method(parts, image, src, tgt, strength=-0.1)
        for steps in (0, -3):
            with pytest.raises(CourseInputError, match="num_steps"):
                method(parts, image, src, tgt, num_steps=steps)
    with pytest.raises(CourseInputError, match="image must be"):
        editing.sdedit(parts, torch.zeros(32, 32), src, tgt)
    with pytest.raises(CourseInputError, match="mask must have the image's size 32x32"):
        editing.mask_locking(parts, image, src, tgt, mask=torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(CourseInputError, match="mask must"):
        editing.mask_locking(parts, image, src, tgt, mask=torch.full((32, 32), 2.0))
    with pytest.raises(CourseInputError, match="'on the left' \\(added\\)"):
        editing.prompt_to_prompt(parts, image, "a red circle", "a blue circle on the left", mode="swap")
    with pytest.raises(CourseInputError, match="'circle on the left' -> 'square'"):
        editing.token_mapper(parts.tokenizer, "a red circle on the left", "a red square")
    with pytest.raises(CourseInputError, match="'green' is not in the prompt"):
        editing.prompt_to_prompt(parts, image, "a red circle", "a red circle", reweight={"green": 2.0})
    with pytest.raises(CourseInputError, match="cross_window"):
        editing.prompt_to_prompt(parts, image, src, tgt, cross_window=(0.5, 0.2))
    with pytest.raises(CourseInputError, match="latent size"):
        z0 = editing.encode_image(parts, image[None])
        editing.regenerate(parts, editing.ddim_invert(parts, z0, src, num_steps=2), tgt, num_steps=2,
                           mask=torch.ones(1, 1, 32, 32, dtype=torch.bool))
    with pytest.raises(CourseInputError, match="inverted holds"):
        inverted = editing.ddim_invert(parts, editing.encode_image(parts, image[None]), src, num_steps=3)
        editing.regenerate(parts, inverted, tgt, num_steps=5)
    with pytest.raises(CourseInputError, match="unknown edit method"):
        editing.run_case("magic", parts, cases[0])
