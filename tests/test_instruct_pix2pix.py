"""course_lib.instruct_pix2pix: the image-conditioned UNet, its training dropout, the two guidance scales.

Oracles: diffusers' StableDiffusionInstructPix2PixPipeline (built from the parts and loaded back from
a saved folder), three separate UNet calls for the paper's eq. 3, a Monte Carlo count for the
dropout shares, and the base UNet itself for the zero-initialised channels. The UNets are tiny
random ones with text2image.UNET_CONFIG's blocks, so the file runs without the shipped weights.
"""

from __future__ import annotations

import functools

import pytest
import torch

from conftest import record
from course_lib import instruct_pix2pix as ip2p
from course_lib import models, schedules, shapes, text, text2image, training
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

INSTRUCTIONS = ["make the red circle on the left blue", "remove the green square at the top"]


def tiny_base():
    return text2image.make_unet(seed=3, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=2).eval()


@pytest.fixture(scope="module")
def parts():
    """Parts with a tiny IP2P UNet whose image channels are not zero (so the image matters), shipped VAE and text tower."""
    unet = ip2p.make_unet(tiny_base()).eval()
    with torch.no_grad():
        unet.conv_in.weight[:, 4:] = 0.1 * torch.randn(unet.conv_in.weight[:, 4:].shape, generator=torch.Generator().manual_seed(1))
    tokenizer, encoder = text2image.load_text_encoder(device="cpu")
    return text2image.Parts(unet, vae_lib.load_vae(device="cpu"), tokenizer, encoder)


@pytest.fixture(scope="module")
def images():
    scenes = shapes.sample_scenes(2, seed=5, split="test")
    return shapes.render(scenes)


def test_widened_unet_starts_as_the_base_model():
    base = tiny_base()
    unet = ip2p.make_unet(base).eval()
    assert unet.config.in_channels == 8 and float(unet.conv_in.weight[:, 4:].detach().abs().max()) == 0.0
    g = torch.Generator().manual_seed(0)
    z, img = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    c = torch.randn(2, 32, 64, generator=g)
    t = torch.tensor([10, 500])
    with torch.no_grad():
        ours = models.model_output(unet, z, t, encoder_hidden_states=c, image_latents=img)
        theirs = models.model_output(base, z, t, encoder_hidden_states=c)
    assert torch.equal(ours, theirs)  # the new channels have zero weights: bit for bit the base model


def test_conditioning_dropout_shares_match_the_paper():
    n = 40_000
    cond = {"encoder_hidden_states": torch.ones(n, 2, 3), "image_latents": torch.ones(n, 4, 1, 1)}
    out = ip2p.conditioning_dropout(cond, torch.Generator().manual_seed(0), null_text=torch.zeros(1, 2, 3))
    text_gone = out["encoder_hidden_states"][:, 0, 0] == 0
    image_gone = out["image_latents"][:, 0, 0, 0] == 0
    p, sd = ip2p.DROPOUT, (ip2p.DROPOUT * (1 - ip2p.DROPOUT) / n) ** 0.5
    shares = {"text only": (text_gone & ~image_gone), "image only": (~text_gone & image_gone),
              "both": (text_gone & image_gone)}
    for name, rows in shares.items():
        share = rows.float().mean().item()
        assert abs(share - p) < 5 * sd, (name, share)


def test_diffusion_loss_takes_the_dropout_hook_and_the_image_channels(parts):
    data = {"x0": torch.randn(4, 4, 8, 8), "image_latents": torch.randn(4, 4, 8, 8),
            "encoder_hidden_states": torch.randn(4, 32, 64)}
    seen = {}

    def spy(cond, generator):
        seen.update(cond)
        return cond

    loss = training.diffusion_loss(parts.unet, data, torch.Generator().manual_seed(0),
                                   alpha_bars=schedules.NoiseSchedule("scaled_linear", 1000).alpha_bars,
                                   condition_dropout=spy)
    assert torch.isfinite(loss) and set(seen) == {"image_latents", "encoder_hidden_states"}


def test_dual_guidance_is_eq3_from_three_calls(parts, images):
    cond = text.encode_prompt(INSTRUCTIONS, parts.tokenizer, parts.text_encoder)
    uncond = text.encode_prompt(["", ""], parts.tokenizer, parts.text_encoder)
    image = ip2p.image_latents(parts.vae, images)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    s_t, s_i = 3.0, 1.7
    eps = ip2p.dual_cfg_denoiser(parts.unet, s_t, s_i, cond, uncond, image)(z, 301)
    t = torch.full((2,), 301)
    with torch.no_grad():
        e_text = models.model_output(parts.unet, z, t, encoder_hidden_states=cond, image_latents=image)
        e_image = models.model_output(parts.unet, z, t, encoder_hidden_states=uncond, image_latents=image)
        e_none = models.model_output(parts.unet, z, t, encoder_hidden_states=uncond, image_latents=torch.zeros_like(image))
    oracle = e_none + s_i * (e_image - e_none) + s_t * (e_text - e_image)
    err = float((eps - oracle).abs().max() / oracle.abs().max())
    record("ip2p eq. 3, one call vs three (rel)", err)
    assert err < 1e-5


@pytest.mark.parametrize("s_t,s_i", [(4.0, 1.5), (1.0, 1.5), (3.0, 0.5)])
def test_hand_loop_equals_the_diffusers_pipeline(parts, images, s_t, s_i):
    ours = ip2p.edit(parts, images, INSTRUCTIONS, guidance_scale=s_t, image_guidance_scale=s_i, num_steps=6,
                     generator=torch.Generator().manual_seed(4))
    pipe = ip2p.make_pipeline(parts)
    theirs = ip2p.pipeline_images(pipe, images, INSTRUCTIONS, guidance_scale=s_t, image_guidance_scale=s_i,
                                  num_steps=6, generator=torch.Generator().manual_seed(4))
    err = float((ours - theirs).abs().max())
    record(f"ip2p loop vs StableDiffusionInstructPix2PixPipeline (s_T={s_t:g}, s_I={s_i:g})", err)
    assert err < 1e-5


def test_pipeline_folder_loads_with_from_pretrained(parts, images, tmp_path):
    from diffusers import StableDiffusionInstructPix2PixPipeline

    ip2p.make_pipeline(parts).save_pretrained(tmp_path / "ip2p", safe_serialization=True)
    pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(tmp_path / "ip2p", safety_checker=None,
                                                                  requires_safety_checker=False)
    ours = ip2p.edit(parts, images[:1], INSTRUCTIONS[0], num_steps=4, generator=torch.Generator().manual_seed(0))
    theirs = ip2p.pipeline_images(pipe, images[:1], INSTRUCTIONS[:1], num_steps=4, generator=torch.Generator().manual_seed(0))
    assert float((ours - theirs).abs().max()) < 1e-5


def test_pair_dataset_holds_edit_triples(parts):
    data = ip2p.pair_dataset(6, parts.vae, parts.tokenizer, parts.text_encoder, seed=3)
    assert data["x0"].shape == (6, 4, 8, 8) and data["image_latents"].shape == (6, 4, 8, 8)
    assert data["encoder_hidden_states"].shape[0] == 6
    cases = ip2p.random_pairs(6, torch.Generator().manual_seed(3))
    assert all(c.source != c.target for c in cases)
    # the training scenes are 'train' scenes: no held-out colour-shape pair in any source
    many = ip2p.random_pairs(300, torch.Generator().manual_seed(0))
    assert not any(p in shapes.HELDOUT_PAIRS for c in many for p in c.source.pairs())


def test_bad_input_is_refused(parts, images):
    t2i = text2image.Parts(tiny_base(), parts.vae, parts.tokenizer, parts.text_encoder)
    with pytest.raises(CourseInputError, match="input channels"):
        ip2p.edit(t2i, images[0], INSTRUCTIONS[0])
    with pytest.raises(CourseInputError, match="image_guidance_scale"):
        ip2p.edit(parts, images[0], INSTRUCTIONS[0], image_guidance_scale=-1)
    with pytest.raises(CourseInputError, match="one \\(3, H, W\\) image per instruction"):
        ip2p.edit(parts, images, INSTRUCTIONS + ["add a red circle in the middle"])
    with pytest.raises(CourseInputError, match="tensor"):
        ip2p.edit(parts, "image.png", INSTRUCTIONS[0])


def test_recipe_reproduces_the_model_config():
    from course_lib import recipes

    recipe = recipes.get("instruct_pix2pix")
    assert recipe.config.steps > 0 and "instruct_pix2pix" in recipes.RECIPES
    info = recipe.to_dict()
    assert "conv_in widened" in info["init"] and "'train' scenes" in info["data"]
    loss = recipe.loss_fn()
    assert isinstance(loss, functools.partial) and "condition_dropout" in loss.keywords
