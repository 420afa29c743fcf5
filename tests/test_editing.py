"""Locked-image editing on a tiny random UNet with the shipped VAE and CLIP text tower: SDEdit against
diffusers' img2img pipeline, DDIM inversion against DDIMInverseScheduler, edit-friendly noise maps against
DDIMScheduler(eta=1), the inversions' round trips under guidance, prompt-to-prompt controllers and local
blending, masks, mask locking, and the bad-input errors."""

from __future__ import annotations

import math

import pytest
import torch

from course_lib import attention, editing, schedules, shapes, text2image
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

@pytest.mark.parametrize("strength, guidance_scale, sampler", [(0.6, 4.0, "ddim"), (1.0, 1.0, "ddim"),
                                                                (0.6, 4.0, "euler"), (0.6, 4.0, "dpmpp_2m")])
def test_sdedit_equals_diffusers_img2img(parts, cases, strength, guidance_scale, sampler, worst):
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                           StableDiffusionImg2ImgPipeline)

    scheduler = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpmpp_2m": DPMSolverMultistepScheduler}[sampler]
    pipe = StableDiffusionImg2ImgPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                          unet=parts.unet, scheduler=scheduler.from_config(SD_DDIM), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    images = _images(cases)
    prompts = [c.target_caption for c in cases]
    ours = editing.sdedit(parts, images, [c.source_caption for c in cases], prompts, strength=strength,
                          guidance_scale=guidance_scale, num_steps=10, generator=torch.Generator().manual_seed(3),
                          sampler=sampler)
    ref = pipe(prompt=prompts, image=images * 0.5 + 0.5, strength=strength, guidance_scale=guidance_scale,
               num_inference_steps=10, generator=torch.Generator().manual_seed(3), output_type="pt").images
    diff = (ours * 0.5 + 0.5 - ref).abs().max().item()
    worst(f"editing: sdedit vs StableDiffusionImg2ImgPipeline ({sampler})", diff)
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


def test_start_timestep_is_the_first_timestep_of_diffusers_img2img():
    """(7.2) in closed form against StableDiffusionImg2ImgPipeline.get_timesteps on the SD scheduler (float traps too)."""
    import types

    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    for num_steps, num_train in ((10, 1000), (25, 1000), (50, 1000), (100, 1000), (7, 1000), (20, 500)):
        scheduler = DDIMScheduler(**{**SD_DDIM, "num_train_timesteps": num_train})
        scheduler.set_timesteps(num_steps)
        host = types.SimpleNamespace(scheduler=scheduler)  # get_timesteps reads only self.scheduler
        for strength in (0.05, 0.2, 0.29, 0.3, 0.5, 0.55, 0.6, 0.75, 0.99, 1.0):
            if int(num_steps * strength) == 0:
                with pytest.raises(CourseInputError, match="strength"):
                    editing.start_timestep(num_steps, strength, num_train)
                continue
            theirs, _ = StableDiffusionImg2ImgPipeline.get_timesteps(host, num_steps, strength, "cpu")
            ours = editing.start_timestep(num_steps, strength, num_train)
            assert ours == int(theirs[0]), (num_steps, strength, num_train)
            assert ours == int(editing.edit_timesteps(num_steps, strength, num_train)[0])
    # the approximation t0 ~ s T misses by one step's width when N s is whole: 0.6 * 1000 = 600, t0 = 501
    assert editing.start_timestep(10, 0.6) == 501
    assert editing.start_timestep(100, 0.29) == 271  # int(100 * 0.29) = 28 in float64, not 29


def test_the_noise_table_is_the_schedulers_and_is_built_once(parts, cases, monkeypatch):
    from course_lib.editing import primitives

    table = primitives.alpha_bars(parts)
    assert torch.equal(table, text2image.scheduler_alpha_bars()) and primitives.alpha_bars(parts) is table
    built = []
    original = text2image.scheduler_alpha_bars
    monkeypatch.setattr(text2image, "scheduler_alpha_bars", lambda: built.append(1) or original())
    editing.inversion_edit(parts, cases[0].source_image, cases[0].source_caption, cases[0].target_caption,
                           inversion=editing.InversionSettings("direct", 3))
    assert built == []  # no scheduler is built per step (11 times a step before)


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


def test_round_trips_under_guidance_rank_as_the_papers_say(parts, cases):
    image, prompt = cases[0].source_image, cases[0].source_caption
    rows = editing.reconstruction(parts, image, prompt,
                                  [editing.InversionSettings(m, n, guidance_scale=4.0, null_text_steps=5)
                                   for m in editing.INVERSIONS for n in (10, 20)],
                                  generator=torch.Generator().manual_seed(0))
    psnr = {(r["inversion"], r["num_steps"]): r["psnr_db"] for r in rows}
    for n in (10, 20):
        assert psnr["direct", n] > 90 and psnr["edit_friendly", n] > 90  # exact up to float32 round-off
        assert psnr["null_text", n] > psnr["ddim", n] + 1  # the optimised "" undoes guidance's drift
        assert psnr["negative_prompt", n] > psnr["ddim", n] + 1
    assert psnr["negative_prompt", 20] > psnr["negative_prompt", 10]  # its error is the g = 1 inversion's: steps help
    calls = {(r["inversion"], r["num_steps"]): r["unet_calls"] for r in rows}
    assert calls["ddim", 10] == calls["negative_prompt", 10] == 20  # k inversion + k sampling calls
    assert calls["direct", 10] == 30  # + k guided calls that record the corrections
    assert calls["edit_friendly", 10] == 20
    assert calls["null_text", 10] > 30  # + the optimisation's forward passes


def test_ddim_inversion_at_g_1_shrinks_with_steps(parts, cases):
    image, prompt = cases[0].source_image, cases[0].source_caption
    rows = editing.reconstruction(parts, image, prompt,
                                  [editing.InversionSettings("ddim", n, guidance_scale=1.0) for n in (10, 20, 50)])
    errors = [r["latent_rmse"] for r in rows]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.5 * errors[0], errors
    assert [r["unet_calls"] for r in rows] == [20, 40, 100]


def test_direct_inversion_puts_the_source_branch_on_the_path(parts, cases, worst):
    z0 = editing.encode_image(parts, cases[0].source_image[None])
    prompt = cases[0].source_caption
    inv = editing.invert(parts, z0, prompt, editing.InversionSettings("direct", 6, guidance_scale=5.0))
    path = editing.ddim_invert(parts, z0, prompt, num_steps=6)
    assert all(torch.equal(a, b) for a, b in zip(inv.latents, path))  # the same DDIM path
    steps = []
    z_src, z_tgt = editing.edit_latents(parts, inv, cases[0].target_caption, guidance_scale=5.0, source_branch=True,
                                        blend=lambda i, k, s, t: steps.append((s - inv.source_at(i)).abs().max()) or t)
    worst("editing: direct inversion's source branch vs its DDIM path", max(steps))
    assert len(steps) == 6 and max(steps) <= 1e-5  # after every step, on the path (up to round-off)
    assert (z_src - z0).abs().max() <= 1e-5 and (z_tgt - z0).abs().max() > 1e-2  # the target did change


def test_edit_friendly_noise_maps_make_the_diffusers_ddim_eta_1_step_retrace_the_noisings(parts, cases, worst):
    from diffusers import DDIMScheduler

    z0 = editing.encode_image(parts, cases[0].source_image[None])
    prompt, g = cases[0].source_caption, 3.0
    inv = editing.invert(parts, z0, prompt, editing.InversionSettings("edit_friendly", 5, guidance_scale=g),
                         generator=torch.Generator().manual_seed(4))
    sched = DDIMScheduler(**SD_DDIM)
    sched.set_timesteps(5)
    cond, uncond = editing.embed(parts, [prompt]), editing.embed(parts, [""])
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            z = inv.latents[5 - i]
            eps_u, eps_c = parts.unet(torch.cat([z, z]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
            reached = sched.step(eps_u + g * (eps_c - eps_u), t, z, eta=1.0, variance_noise=inv.noise_maps[i]).prev_sample
            diff = (reached - inv.source_at(i)).abs().max().item()
            worst("editing: edit-friendly noise maps vs DDIMScheduler(eta=1)", diff)
            assert diff <= 1e-4
    # the noisings are independent draws: x_t is not a deterministic function of x_t_prev
    assert not torch.equal(inv.latents[2], editing.ddim_invert(parts, z0, prompt, num_steps=5)[2])


def test_null_text_inversion_lowers_each_steps_error_and_keeps_the_conditional_prompt(parts, cases):
    z0 = editing.encode_image(parts, cases[0].source_image[None])
    prompt, g = cases[0].source_caption, 4.0
    plain = editing.invert(parts, z0, prompt, editing.InversionSettings("ddim", 4, guidance_scale=g))
    null = editing.invert(parts, z0, prompt, editing.InversionSettings("null_text", 4, guidance_scale=g,
                                                                       null_text_steps=8))
    assert len(null.uncond) == 4 and not torch.equal(null.uncond[0], plain.uncond[0])  # "" was optimised
    assert torch.equal(null.source_embeddings, plain.source_embeddings)
    _, z_plain = editing.edit_latents(parts, plain, prompt, guidance_scale=g)
    _, z_null = editing.edit_latents(parts, null, prompt, guidance_scale=g)
    assert (z_null - z0).pow(2).mean() < 0.5 * (z_plain - z0).pow(2).mean()
    assert null.unet_calls > plain.unet_calls and null.seconds > 0


def test_inversion_edit_with_the_same_prompt_reconstructs(parts, cases):
    image, prompt = cases[0].source_image, cases[0].source_caption
    reference = editing.decode_latents(parts, editing.encode_image(parts, image[None]))[0]
    for method in ("negative_prompt", "direct"):
        out = editing.inversion_edit(parts, image, prompt, prompt,
                                     inversion=editing.InversionSettings(method, 20, guidance_scale=4.0))
        mse = (out - reference).pow(2).mean().item()
        assert out.shape == image.shape and (mse == 0 or 10 * math.log10(4 / mse) > 35), method


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
    inv = editing.invert(parts, editing.encode_image(parts, _images(cases)), src, editing.InversionSettings(num_steps=4))
    z_src, z_tgt = editing.p2p_latents(parts, inv, tgt, controller, guidance_scale=4.0)
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
    editing.p2p_latents(parts, editing.invert(parts, inv.latents[0], src, editing.InversionSettings(num_steps=2)), tgt,
                        idle, guidance_scale=4.0)
    probs = idle.probs[cross_layers[0]][0].view(2, 2, 2, *idle.probs[cross_layers[0]][0].shape[1:])
    assert not torch.equal(probs[1, 1], probs[1, 0])


def test_processors_are_restored_when_the_loop_raises(parts):
    class Broken(editing.AttentionController):
        def edit(self, name, probs, is_cross):
            raise RuntimeError("boom")

    before = dict(parts.unet.attn_processors)
    inv = editing.invert(parts, torch.zeros(1, 4, 8, 8), "a red circle", editing.InversionSettings(num_steps=2))
    with pytest.raises(RuntimeError, match="boom"):
        editing.p2p_latents(parts, inv, "a blue circle", Broken())
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
    inv = editing.invert(parts, torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)), prompt,
                         editing.InversionSettings(num_steps=4))
    editing.p2p_latents(parts, inv, prompt, controller, guidance_scale=2.0)
    name = next(iter(controller.probs))
    for step, probs in enumerate(controller.probs[name]):
        p = probs.view(2, 2, 1, *probs.shape[1:])
        factor = 3.0 if step >= 2 else 1.0  # window (0.5, 1) of 4 steps: steps 2 and 3
        assert torch.allclose(p[1, 1][..., 2], factor * p[1, 0][..., 2])
        assert torch.equal(p[1, 1][..., 3], p[1, 0][..., 3])


def test_prompt_to_prompt_runs_on_an_image_and_refine_maps_common_words(parts, cases):
    case = cases[0]
    for local_blend in (False, True):
        result = editing.prompt_to_prompt(parts, case.source_image, case.source_caption, case.target_caption,
                                          inversion=editing.InversionSettings("edit_friendly", 5),
                                          settings=editing.PromptToPromptSettings(local_blend=local_blend))
        out = result.image
        assert out.shape == case.source_image.shape and out.abs().max() <= 1
        if local_blend:  # local blending's mask at image size comes with the image
            assert result.mask.shape == (1, 32, 32) and result.mask.dtype == torch.bool and result.mask.any()
        else:
            assert result.mask is None
    mapper = editing.token_mapper(parts.tokenizer, "a red circle", "a red circle on the left", "refine")
    assert mapper[:8].tolist() == [0, 1, 2, 3, -1, -1, -1, 4]  # common words and the end token take the source's maps
    assert editing.changed_positions(parts.tokenizer, "a red circle", "a blue circle") == ([2], [2])
    assert editing.changed_positions(parts.tokenizer, "a red circle", "a red circle on the left") == ([], [4, 5, 6])


def test_local_blend_keeps_the_source_branch_outside_its_attention_mask(parts, cases):
    case = cases[0]
    src, tgt = case.source_caption, case.target_caption
    positions = editing.changed_positions(parts.tokenizer, src, tgt)
    blend = editing.LocalBlend([positions[0]], [positions[1]], side=8, threshold=0.5, start=0.0, grow_cells=0)
    controller = editing.AttentionReplace(mapper=editing.token_mapper(parts.tokenizer, src, tgt), local_blend=blend)
    inv = editing.invert(parts, editing.encode_image(parts, case.source_image[None]), src,
                         editing.InversionSettings("direct", num_steps=4))
    seen = []

    def recording(i, k, source, target):
        out = blend(i, k, source, target)
        seen.append((blend.mask(i), source, out))
        return out

    editing.p2p_latents(parts, inv, tgt, controller, blend=recording)
    assert len(seen) == 4 and len(blend.sums) == 4
    for mask, source, out in seen:
        assert mask.any() and not mask.all()
        assert torch.equal(out[~mask.expand_as(out)], source[~mask.expand_as(out)])  # outside: the source branch
    # the mask is the map of the changed words, from its minimum to its maximum, above the threshold
    by_hand = torch.stack(blend.sums).mean(0)
    by_hand = (by_hand - by_hand.min()) / (by_hand.max() - by_hand.min()) > 0.5
    assert torch.equal(blend.mask(), editing.fill_holes(by_hand))


def test_attention_map_is_the_changed_words_recorded_attention(parts, cases):
    case = cases[0]
    z0 = editing.encode_image(parts, case.source_image[None])
    got = editing.attention_map(parts, z0, case.source_caption, case.target_caption, num_draws=1, strength=0.5,
                                generator=torch.Generator().manual_seed(2))
    # by hand: the same z_t, the UNet's recorded probabilities, the changed positions' columns
    ab = text2image.scheduler_alpha_bars()
    z_t = schedules.q_sample(z0, 500, ab, torch.randn(z0.shape, generator=torch.Generator().manual_seed(2)))
    src_pos, tgt_pos = editing.changed_positions(parts.tokenizer, case.source_caption, case.target_caption)
    layers = attention.cross_attention_layers(parts.unet, 8)
    cond = editing.embed(parts, [case.source_caption, case.target_caption])
    with attention.record_attention(parts.unet, layers=layers) as store, torch.no_grad():
        parts.unet(torch.cat([z_t, z_t]), 500, encoder_hidden_states=cond)
    maps = [p[0].mean(1) for p in store.probs.values()]  # (2, N, L) per layer
    expected = sum(m[0][:, src_pos].sum(-1) + m[1][:, tgt_pos].sum(-1) for m in maps) / len(maps)
    assert torch.allclose(got.flatten(), expected, atol=1e-6)


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
    inv = editing.invert(parts, z0, case.source_caption, editing.InversionSettings(num_steps=6))
    _, z = editing.edit_latents(parts, inv, case.target_caption, guidance_scale=4.0,
                                blend=lambda i, k, source, target: torch.where(lm, target, source))
    outside = ~lm.expand_as(z)
    assert torch.equal(z[outside], z0[outside])  # exactly, in latent space
    assert not torch.equal(z[~outside], z0[~outside])
    out = editing.mask_locking(parts, case.source_image, case.source_caption, case.target_caption, mask=case.mask,
                               inversion=editing.InversionSettings(num_steps=6),
                               settings=editing.MaskLockingSettings(composite=True)).image
    assert torch.equal(out[:, ~case.mask], case.source_image[:, ~case.mask])


def test_mask_locking_starts_the_masked_latents_from_the_inverted_source_or_fresh_noise(parts, cases):
    case = cases[0]
    args = (parts, case.source_image, case.source_caption, case.target_caption)
    four = editing.InversionSettings(num_steps=4)
    runs = {(start, seed): editing.mask_locking(*args, mask=case.mask, inversion=four,
                                               settings=editing.MaskLockingSettings(start=start),
                                               generator=torch.Generator().manual_seed(seed)).image
            for start in ("noise", "inverted") for seed in (0, 1)}
    assert torch.equal(runs["inverted", 0], runs["inverted", 1])  # no draw: the generator plays no part
    assert not torch.equal(runs["noise", 0], runs["noise", 1])  # fresh noise in the mask
    inside = case.mask.expand_as(case.source_image)
    assert (runs["noise", 0][inside] - runs["inverted", 0][inside]).abs().max() > 0.1
    pasted = editing.mask_locking(*args, mask=case.mask, inversion=four,
                                  settings=editing.MaskLockingSettings(start="noise", composite=True),
                                  generator=torch.Generator().manual_seed(0)).image
    assert torch.equal(pasted[~inside], case.source_image[~inside])  # whatever the start, the paste locks exactly
    assert torch.equal(pasted[inside], runs["noise", 0][inside])
    with pytest.raises(CourseInputError, match="start=.* is not known"):
        editing.mask_locking(*args, mask=case.mask, settings=editing.MaskLockingSettings(start="source"))


def test_masks_from_maps_threshold_grow_and_fill_holes():
    ring = torch.zeros(1, 1, 8, 8)
    ring[0, 0, 2:6, 2:6] = 1.0
    ring[0, 0, 3:5, 3:5] = 0.1  # a hole the edit surrounds
    assert editing.mask_from_map(ring, 0.5, grow_cells=0, fill=False).sum() == 12
    assert editing.mask_from_map(ring, 0.5, grow_cells=0).sum() == 16  # the island joins the edit
    assert editing.mask_from_map(ring, 0.5, grow_cells=1).sum() == 36  # one cell more on every side
    shifted = ring + 5.0  # a map with a floor (5 of 6): "max" puts every cell above 0.8, "minmax" finds the ring
    assert editing.mask_from_map(shifted, 0.8, normalise="max", grow_cells=0).all()
    assert editing.mask_from_map(shifted, 0.5, normalise="minmax", grow_cells=0).sum() == 16


def test_automatic_masks_are_where_the_prompts_disagree(parts, cases):
    images = _images(cases)
    sources, targets = [c.source_caption for c in cases], [c.target_caption for c in cases]
    diff = editing.difference_map(parts, editing.encode_image(parts, images), sources, targets, num_draws=2,
                                  generator=torch.Generator().manual_seed(0))
    assert diff.shape == (2, 1, 8, 8) and (diff >= 0).all() and (diff.amax((1, 2, 3)) > 0).all()
    same = editing.difference_map(parts, editing.encode_image(parts, images[:1]), "a red circle", "a red circle",
                                  num_draws=1, generator=torch.Generator().manual_seed(0))
    assert same.abs().max() == 0  # the same prompt disagrees nowhere
    for source in editing.MASK_SOURCES:
        mask = editing.edit_mask(parts, images, sources, targets, source=source, num_draws=1,
                                 generator=torch.Generator().manual_seed(0))
        assert mask.shape == (2, 1, 8, 8) and mask.dtype == torch.bool and mask.any()
    big = editing.diffedit_mask(parts, images, sources, targets, num_draws=1, generator=torch.Generator().manual_seed(0))
    assert big.shape == (2, 1, 32, 32) and big.dtype == torch.bool
    result = editing.mask_locking(parts, images, sources, targets, inversion=editing.InversionSettings(num_steps=4),
                                  settings=editing.MaskLockingSettings(mask_draws=2),
                                  generator=torch.Generator().manual_seed(0))
    out, mask = result.image, result.mask
    assert out.shape == images.shape and mask.shape == (2, 1, 32, 32) and mask.dtype == torch.bool


def test_methods_registry_has_one_signature(parts, cases):
    added = shapes.edit_cases(1, seed=0, kinds=("add",))[0]  # prompts that do not align: P2P refines
    extra = {"mask_locking": {"mask_draws": 1}, "prompt_to_prompt": {"self_window": (0.0, 0.5)}}  # 2 steps: a window
    for case in (cases[1], added):
        for name in editing.UNET_METHODS:  # the UNet family's rows (the flow rows: tests/test_flow_editing.py)
            out = editing.run_case(name, parts, case, generator=torch.Generator().manual_seed(0), num_steps=2,
                                   **extra.get(name, {}))
            assert out.shape == case.source_image.shape and out.abs().max() <= 1, name
        for inversion in editing.INVERSIONS:
            out = editing.run_case("inversion", parts, case, generator=torch.Generator().manual_seed(0), num_steps=2,
                                   inversion=inversion, null_text_steps=1)
            assert out.shape == case.source_image.shape, inversion


def test_any_image_size_the_vae_takes(parts):
    image = torch.rand(3, 48, 40) * 2 - 1  # 12 x 10 latents: nothing assumes 32 x 32
    out = editing.sdedit(parts, image, "", "a red circle", num_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.shape == image.shape
    out = editing.mask_locking(parts, image, "a red circle", "a blue circle",
                               inversion=editing.InversionSettings(num_steps=2),
                               settings=editing.MaskLockingSettings(mask_draws=1),
                               generator=torch.Generator().manual_seed(0)).image
    assert out.shape == image.shape


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

def test_bad_input_gets_clear_errors(parts, cases):
    image, src, tgt = cases[0].source_image, cases[0].source_caption, cases[0].target_caption
    broken = image.clone()
    broken[1, 5, 7] = float("nan")
    for method in (editing.METHODS[name] for name in editing.UNET_METHODS):
        with pytest.raises(CourseInputError, match="multiples of 4"):
            method(parts, torch.zeros(3, 30, 30), src, tgt)
        with pytest.raises(CourseInputError, match="1 NaN and 0 infinite"):
            method(parts, broken, src, tgt)
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
        editing.prompt_to_prompt(parts, image, "a red circle", "a blue circle on the left",
                                 settings=editing.PromptToPromptSettings(mode="swap"))
    with pytest.raises(CourseInputError, match="'circle on the left' -> 'square'"):
        editing.token_mapper(parts.tokenizer, "a red circle on the left", "a red square")
    with pytest.raises(CourseInputError, match="'green' is not in the prompt"):
        editing.prompt_to_prompt(parts, image, "a red circle", "a red circle",
                                 settings=editing.PromptToPromptSettings(reweight={"green": 2.0}))
    with pytest.raises(CourseInputError, match="cross_window"):
        editing.prompt_to_prompt(parts, image, src, tgt, settings=editing.PromptToPromptSettings(cross_window=(0.5, 0.2)))
    z0 = editing.encode_image(parts, image[None])
    with pytest.raises(CourseInputError, match="inversion=.* is not known"):
        editing.invert(parts, z0, src, editing.InversionSettings("exact"))
    for knob, value in (("null_text_steps", 0), ("null_text_steps", -2), ("null_text_lr", 0.0), ("null_text_lr", -1e-3),
                        ("null_text_tolerance", 0.0)):
        with pytest.raises(CourseInputError, match=knob):
            editing.invert(parts, z0, src, editing.InversionSettings("null_text", **{knob: value}))
    with pytest.raises(CourseInputError, match="nothing to edit"):
        editing.mask_locking(parts, image, src, src)
    with pytest.raises(CourseInputError, match="encode the same"):
        editing.prompt_to_prompt(parts, image, src, src.upper())  # the tokenizer lower-cases: no change it can see
    with pytest.raises(CourseInputError, match="must be an editing.Inversion"):
        editing.edit_latents(parts, z0, tgt)
    with pytest.raises(CourseInputError, match="blend_threshold"):
        editing.prompt_to_prompt(parts, image, src, tgt, settings=editing.PromptToPromptSettings(blend_threshold=1.5))
    with pytest.raises(CourseInputError, match="mask source"):
        editing.edit_mask(parts, image, src, tgt, source="oracle")
    with pytest.raises(CourseInputError, match="unknown edit method"):
        editing.run_case("magic", parts, cases[0])


def test_inversions_refuse_a_sampler_that_would_not_retrace_them(parts, cases):
    with pytest.raises(CourseInputError, match="sampler must be 'ddim'.*sdedit takes any sampler"):
        editing.invert(parts, torch.zeros(1, 4, 8, 8), "a red circle", editing.InversionSettings(sampler="dpmpp_2m"))
    with pytest.raises(CourseInputError, match="unknown sampler"):
        editing.sdedit(parts, _images(cases[:1]), "a", "b", sampler="lms")


def test_a_call_from_an_editing_method_down_to_the_unet_never_climbs_back(parts):
    """The modules on the stack, from the public method down to the UNet's forward, each appear as one run:
    editing -> guidance -> latent -> models, and no module is re-entered after the call has left it (issue 22)."""
    import inspect

    seen = []

    def record(module, args):
        chain = []
        for frame in reversed(inspect.stack()):  # outermost first
            name = frame.frame.f_globals.get("__name__", "")
            if name.startswith("course_lib."):
                top = name.split(".")[1]  # course_lib.editing.loop -> editing
                if not chain or chain[-1] != top:
                    chain.append(top)
        seen.append(chain)

    case = shapes.make_edit(shapes.Scene((shapes.ShapeObject("circle", "red", 1, 1),), "black"),
                            shapes.Edit("colour", 0, value="blue"))
    handle = parts.unet.register_forward_pre_hook(record)
    try:
        editing.prompt_to_prompt(parts, case.source_image, case.source_caption, case.target_caption,
                                 inversion=editing.InversionSettings("direct", num_steps=5), generator=0)
        editing.mask_locking(parts, case.source_image, case.source_caption, case.target_caption,
                             inversion=editing.InversionSettings("ddim", num_steps=5), generator=0)
    finally:
        handle.remove()
    assert seen, "the UNet was never called"
    assert ["editing", "guidance", "latent", "models"] in seen or ["editing", "guidance", "models"] in seen, seen[:3]
    for chain in seen:
        assert len(chain) == len(set(chain)), f"the call re-entered a module it had left: {' -> '.join(chain)}"
        assert chain[0] == "editing" and chain[-1] in ("latent", "models"), chain
