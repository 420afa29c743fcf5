"""course_lib.text2image: the training data, the caption-dropout loss, adherence and its sweep, bad input.

Oracles: the shapes world's own ground truth (a rendered scene is what its caption says), the VAE's
posterior, the text encoder called directly, and training.diffusion_loss's formula. The shipped UNet
is exercised by tests/test_pipeline.py's equality with StableDiffusionPipeline and by notebook 06.
"""

from __future__ import annotations

import functools

import pytest
import torch

from course_lib import shapes, text, text2image, training
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def encoder():
    return text2image.load_text_encoder(device="cpu")


@pytest.fixture(scope="module")
def vae():
    return vae_lib.load_vae(device="cpu")


@pytest.fixture(scope="module")
def parts(encoder, vae):
    unet = text2image.make_unet(seed=1, block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=2).eval()
    return text2image.Parts(unet, vae, *encoder)


def test_latent_dataset_is_scaled_posterior_draws_of_captioned_scenes(encoder, vae):
    tokenizer, text_encoder = encoder
    data = text2image.latent_dataset(40, vae, tokenizer, text_encoder, seed=3, batch_size=16)
    assert data["x0"].shape == (40, 4, 8, 8) and data["encoder_hidden_states"].shape == (40, 32, 64)
    again = text2image.latent_dataset(40, vae, tokenizer, text_encoder, seed=3, batch_size=40)
    assert torch.allclose(data["x0"], again["x0"], atol=1e-5)  # same seed, any batching
    assert torch.equal(data["encoder_hidden_states"], again["encoder_hidden_states"])
    # oracle: the same scenes and captions drawn by hand, encoded by the VAE's mean and the text encoder
    g = torch.Generator().manual_seed(3)
    scenes = shapes.sample_scenes(40, split="train", generator=g)
    captions = shapes.random_captions(scenes, g)
    with torch.no_grad():
        mean = vae.encode(shapes.render(scenes)).latent_dist.mean * vae.config.scaling_factor
        states = text_encoder(text.tokenize(captions, tokenizer))[0]
    assert torch.allclose(data["encoder_hidden_states"], states, atol=1e-5)
    assert (data["x0"] - mean).abs().mean() < 0.1  # posterior draws scatter tightly around the mean
    assert 0.7 < float(data["x0"].std()) < 1.3  # the scaling factor makes the latents about unit variance
    assert not any((o.colour, o.shape) in shapes.HELDOUT_PAIRS for s in scenes for o in s.objects)


def test_caption_dropout_puts_the_empty_prompt_in(encoder):
    null = text2image.null_condition(*encoder)["encoder_hidden_states"]
    assert null.shape == (1, 32, 64)
    assert torch.allclose(null, text.encode_prompt([""], *encoder), atol=0)
    cond = {"encoder_hidden_states": torch.randn(6, 32, 64)}
    drop = torch.tensor([True, False, True, False, False, True])
    out = training.drop_condition(cond, {"encoder_hidden_states": null}, drop)["encoder_hidden_states"]
    assert torch.equal(out[drop], null.expand(3, -1, -1)) and torch.equal(out[~drop], cond["encoder_hidden_states"][~drop])


def test_loss_on_latents_is_the_diffusion_loss(parts):
    batch = {"x0": torch.randn(4, 4, 8, 8), "encoder_hidden_states": torch.randn(4, 32, 64)}
    ab = text2image.SCHEDULE.alpha_bars
    loss = training.diffusion_loss(parts.unet, batch, torch.Generator().manual_seed(0), alpha_bars=ab)
    # by hand, with the same draws: t then eps from the generator
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (4,), generator=g)
    eps = torch.randn(4, 4, 8, 8, generator=g)
    abt = ab[t].view(-1, 1, 1, 1)
    xt = abt.sqrt() * batch["x0"] + (1 - abt).sqrt() * eps
    with torch.no_grad():
        pred = parts.unet(xt, t, encoder_hidden_states=batch["encoder_hidden_states"]).sample
    assert abs(float(loss.detach()) - float(((pred - eps) ** 2).mean())) < 1e-5


def test_adherence_of_rendered_scenes_is_perfect_and_of_wrong_scenes_is_not():
    scenes = shapes.sample_scenes(30, seed=2, split="test", num_objects=(1, 1))
    images = shapes.render(scenes)
    right = text2image.adherence(images, scenes)
    assert all(right[k] == 1.0 for k in ("colour", "shape", "position", "count", "all"))
    captions = [shapes.caption(s) for s in scenes]
    assert text2image.adherence(images, captions)["all"] == 1.0  # captions are judged like scenes
    shifted = text2image.adherence(images, scenes[1:] + scenes[:1])  # each image judged against another scene
    assert shifted["all"] < 0.3
    with pytest.raises(CourseInputError, match="one per image"):
        text2image.adherence(images, scenes[:5])


def test_adherence_sweep_rows_share_the_start_noise(parts):
    rows = text2image.adherence_sweep(parts, (1.0, 3.0), num_prompts=3, repeats=2, num_steps=2, seed=0)
    assert [r["guidance_scale"] for r in rows] == [1.0, 3.0]
    for r in rows:
        assert set(text2image.ADHERENCE_KEYS) | {"guidance_scale", "diversity"} == set(r)
        assert all(0.0 <= r[k] <= 1.0 for k in text2image.ADHERENCE_KEYS) and r["diversity"] > 0
    # the same seed reproduces the images: sweeping one scale alone gives that scale's row
    alone = text2image.adherence_sweep(parts, (3.0,), num_prompts=3, repeats=2, num_steps=2, seed=0)
    assert alone[0] == rows[1]


def test_prompt_set_splits():
    scenes, prompts = text2image.prompt_set(20, "heldout", seed=1)
    assert len(prompts) == 20 and all(len(s.objects) == 1 for s in scenes)
    assert all((s.objects[0].colour, s.objects[0].shape) in shapes.HELDOUT_PAIRS for s in scenes)
    assert prompts[0] == shapes.caption(scenes[0], "full")


@pytest.mark.parametrize("bad", [float("nan"), "4", None, True])
def test_bad_guidance_scale_is_refused(parts, bad):
    with pytest.raises(CourseInputError, match="guidance_scale"):
        text2image.generate(parts, ["a red circle"], guidance_scale=bad, num_steps=2)


@pytest.mark.parametrize("bad", [None, [], [None], 3])
def test_bad_prompts_are_refused_by_name(parts, bad):
    with pytest.raises(CourseInputError, match="prompts must be a str"):
        text2image.generate(parts, bad, num_steps=2)


def test_unknown_words_warn_once_per_generate_call(parts):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        text2image.generate(parts, ["a purple hexagon"] * 2, num_steps=1)
    found = [w for w in caught if issubclass(w.category, text.UnknownWordWarning)]
    assert len(found) == 1 and "'purple', 'hexagon'" in str(found[0].message)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_bad_num_steps_is_refused(parts, bad):
    with pytest.raises(CourseInputError, match="num_steps"):
        text2image.generate(parts, ["a red circle"], num_steps=bad)


def test_recipe_uses_caption_dropout_to_the_empty_prompt():
    from course_lib import recipes

    recipe = recipes.get("text2image")
    loss_fn = recipe.loss_fn()
    assert isinstance(loss_fn, functools.partial) and loss_fn.func is training.diffusion_loss
    assert loss_fn.keywords["cond_dropout"] == text2image.CAPTION_DROPOUT == 0.1
    assert torch.equal(loss_fn.keywords["alpha_bars"], text2image.SCHEDULE.alpha_bars)
    assert recipe.schedule.name == "scaled_linear"


# ----------------------------------------------------------------------------------------------
# Which layer of the text encoder the UNet reads
# ----------------------------------------------------------------------------------------------

def test_truncated_text_encoder_is_the_full_one_read_at_layer_k():
    tokenizer, full = text2image.load_text_encoder(device="cpu", num_layers=None)
    ids = text.tokenize(["a blue triangle in the top left", "a red circle", ""], tokenizer)
    with torch.no_grad():
        hidden = full(ids, output_hidden_states=True).hidden_states  # oracle: the full model's own layers
        for k in range(full.config.num_hidden_layers + 1):
            cut = text.truncate_text_encoder(full, k)
            assert cut.config.num_hidden_layers == k
            want = full.final_layer_norm(hidden[k])  # layer k, then the final layer norm
            assert torch.allclose(cut(ids)[0], want, atol=1e-6)
        assert torch.equal(text.truncate_text_encoder(full, 3)(ids)[0], full(ids)[0])
    shipped_tokenizer, shipped = text2image.load_text_encoder(device="cpu")
    assert shipped.config.num_hidden_layers == text2image.TEXT_LAYERS and not shipped.training
    assert not any(p.requires_grad for p in shipped.parameters())
    for bad in (-1, 4, 1.5, True):
        with pytest.raises(CourseInputError, match="num_layers must be an int from 0 to the encoder's 3 layers"):
            text.truncate_text_encoder(full, bad)


def test_layer_probe_reads_unseen_pairs_only_at_the_embedding_layer():
    tokenizer, full = text2image.load_text_encoder(device="cpu", num_layers=None)
    rows = text2image.text_layer_probe(tokenizer, full, num_train=600, num_test=150)
    assert [r["layer"] for r in rows] == [0, 1, 2, 3, "final"]
    assert all(r["train"] >= 0.99 for r in rows)  # every layer knows the shapes of the pairs it saw
    assert rows[0]["heldout"] == 1.0  # token embeddings: the shape word is the shape word
    assert rows[-1]["heldout"] < 0.8  # the last layer mixes the unseen pair's colour into its shape
