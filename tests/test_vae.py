"""The VAE: reparameterisation and KL against diffusers, scaled latents, bad input, and the shipped weights."""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from course_lib import checkpoints, metrics, shapes, training
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(block_out_channels=(8, 16, 16), norm_num_groups=4)


@pytest.fixture(scope="module")
def tiny_vae():
    return vae_lib.make_vae(seed=0, **TINY).eval()


@pytest.fixture(scope="module")
def images():
    return shapes.render(shapes.sample_scenes(16, seed=0, split="test"))


@pytest.fixture(scope="module")
def shipped():
    return vae_lib.load_vae(device="cpu")


def _moments(shape=(4, 4, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(shape, generator=g)
    logvar = 3 * torch.randn(shape, generator=g)
    logvar[0, 0, 0, :2] = torch.tensor([-40.0, 25.0])  # outside diffusers' clamp range [-30, 20]
    return mean, logvar


# ----------------------------------------------------------------------------------------------
# The maths against diffusers' DiagonalGaussianDistribution
# ----------------------------------------------------------------------------------------------

def test_reparameterise_equals_diffusers_sample_for_the_same_noise(worst):
    mean, logvar = _moments()
    dist = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
    expected = dist.sample(generator=torch.Generator().manual_seed(7))
    noise = torch.randn(mean.shape, generator=torch.Generator().manual_seed(7))
    got = vae_lib.reparameterise(mean, logvar, noise)
    worst("vae reparameterise vs DiagonalGaussianDistribution.sample", (got - expected).abs().max())
    assert torch.equal(got, expected)


def test_gaussian_kl_equals_diffusers_and_monte_carlo(worst):
    mean, logvar = _moments()
    dist = DiagonalGaussianDistribution(torch.cat([mean, logvar], dim=1))
    got = vae_lib.gaussian_kl(mean, logvar)
    assert got.shape == (4,)
    worst("vae gaussian_kl vs DiagonalGaussianDistribution.kl (rel)", ((got - dist.kl()) / dist.kl()).abs().max())
    torch.testing.assert_close(got, dist.kl(), rtol=1e-6, atol=1e-4)
    # Monte Carlo: KL = E_q[log q(z) - log p(z)], for a small well-conditioned Gaussian in float64
    m, lv = 0.5 * torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(1)).double(), \
        0.5 * torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(2)).double()
    eps = torch.randn(200_000, 2, 2, 2, generator=torch.Generator().manual_seed(3)).double()
    z = vae_lib.reparameterise(m, lv, eps)
    log_q = (-0.5 * eps**2 - 0.5 * lv).flatten(1).sum(1)
    log_p = (-0.5 * z**2).flatten(1).sum(1)
    mc = (log_q - log_p).mean()
    assert float(vae_lib.gaussian_kl(m, lv)) == pytest.approx(float(mc), abs=0.03)


def test_posterior_and_loss_match_diffusers(tiny_vae, images):
    with torch.no_grad():
        dist = tiny_vae.encode(images).latent_dist
        mean, logvar = vae_lib.posterior(tiny_vae, images)
        assert torch.equal(mean, dist.mean) and torch.equal(logvar, dist.logvar)
        terms = vae_lib.vae_loss_terms(tiny_vae, images, torch.Generator().manual_seed(4), kl_weight=0.01)
        z = dist.sample(generator=torch.Generator().manual_seed(4))
        recon = torch.mean((tiny_vae.decode(z).sample - images) ** 2)
        kl = dist.kl().mean() / images[0].numel()
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["kl"], kl)
    torch.testing.assert_close(terms["loss"], recon + 0.01 * kl)


def test_gradients_flow_through_the_sample(images):
    vae = vae_lib.make_vae(seed=1, **TINY)
    loss = vae_lib.vae_loss(vae, {"x0": images[:4]}, torch.Generator().manual_seed(0))
    loss.backward()
    assert vae.encoder.conv_in.weight.grad.abs().sum() > 0  # the encoder learns through z = mean + std * eps


def test_short_training_lowers_the_loss():
    vae = vae_lib.make_vae(seed=0, **TINY)
    config = training.TrainConfig(steps=30, batch_size=8, lr=2e-3, ema_decay=0.0, seed=0)
    state = training.train(vae, vae_lib.vae_batches(8, size=16), functools.partial(vae_lib.vae_loss, kl_weight=1e-4),
                           config, device="cpu", progress=False)
    assert sum(state.losses[-5:]) / 5 < 0.7 * sum(state.losses[:5]) / 5


# ----------------------------------------------------------------------------------------------
# Scaled latents
# ----------------------------------------------------------------------------------------------

def test_scaling_factor_gives_unit_std_and_round_trips(tiny_vae, images, tmp_path):
    vae = vae_lib.make_vae(seed=0, **TINY).eval()
    sf = vae_lib.compute_scaling_factor(vae, images, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = vae.encode(images).latent_dist.sample(generator=torch.Generator().manual_seed(0))
    assert sf == pytest.approx(1 / z.std().item(), rel=1e-6)
    vae_lib.set_scaling_factor(vae, sf)
    with torch.no_grad():
        latents = vae_lib.encode(vae, images, generator=torch.Generator().manual_seed(0))
        assert latents.std().item() == pytest.approx(1.0, rel=1e-5)
        # decode divides by the factor again: decode(encode(x)) == the raw decoder of the raw mean
        mean_latents = vae_lib.encode(vae, images, sample_mode="argmax")
        torch.testing.assert_close(mean_latents, vae.encode(images).latent_dist.mean * sf)
        torch.testing.assert_close(vae_lib.decode(vae, mean_latents), vae.decode(vae.encode(images).latent_dist.mean).sample,
                                   rtol=1e-4, atol=1e-5)
    vae.save_pretrained(tmp_path)
    from diffusers import AutoencoderKL

    assert AutoencoderKL.from_pretrained(tmp_path).config.scaling_factor == pytest.approx(sf)


def test_latent_shapes(tiny_vae, images):
    assert vae_lib.downsampling_factor(tiny_vae) == 4
    assert vae_lib.latent_shape(tiny_vae) == (4, 8, 8)
    with torch.no_grad():
        assert vae_lib.encode(tiny_vae, images[:2], sample_mode="argmax").shape == (2, 4, 8, 8)
        assert vae_lib.encode(tiny_vae, torch.zeros(1, 3, 64, 48)).shape == (1, 4, 16, 12)
        assert vae_lib.decode(tiny_vae, torch.zeros(2, 4, 8, 8)).shape == (2, 3, 32, 32)


def test_bad_input_gets_clear_errors(tiny_vae, images):
    with pytest.raises(CourseInputError, match="multiples of 4"):
        vae_lib.encode(tiny_vae, torch.zeros(1, 3, 30, 30))
    with pytest.raises(CourseInputError, match=r"shape \(B, 3, H, W\)"):
        vae_lib.encode(tiny_vae, torch.zeros(1, 1, 32, 32))
    with pytest.raises(CourseInputError, match="one image"):
        vae_lib.encode(tiny_vae, images[0])
    with pytest.raises(CourseInputError, match="floating-point"):
        vae_lib.encode(tiny_vae, torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(CourseInputError, match=r"\[-1, 1\]"):
        vae_lib.encode(tiny_vae, torch.full((1, 3, 32, 32), 255.0))
    with pytest.raises(CourseInputError, match="sample_mode"):
        vae_lib.encode(tiny_vae, images, sample_mode="mean")
    for bad in (float("nan"), float("inf")):  # no silent NaN image out of a NaN image in
        broken = images.clone()
        broken[0, 1, 3, 4] = bad
        with pytest.raises(CourseInputError, match="NaN and .* infinite"):
            vae_lib.encode(tiny_vae, broken)
        with pytest.raises(CourseInputError, match="NaN and .* infinite"):
            vae_lib.reconstruct(tiny_vae, broken)
        with pytest.raises(CourseInputError, match="latents holds"):
            vae_lib.decode(tiny_vae, torch.full((1, 4, 8, 8), bad))
    with pytest.raises(CourseInputError, match=r"latents must have shape \(B, 4"):
        vae_lib.decode(tiny_vae, torch.zeros(1, 3, 8, 8))
    with pytest.raises(CourseInputError, match="> 0"):
        vae_lib.set_scaling_factor(tiny_vae, 0.0)


# ----------------------------------------------------------------------------------------------
# The shipped VAE (data/vae)
# ----------------------------------------------------------------------------------------------

def test_shipped_vae_reconstructs_unseen_scenes(shipped):
    for split in ("test", "heldout"):
        scenes = shapes.sample_scenes(64, seed=123, split=split)
        x0 = shapes.render(scenes)
        x0_rec = vae_lib.reconstruct(shipped, x0)
        assert metrics.psnr(x0_rec, x0) >= 32.0, split
        # what a text-to-image model's samples go through: the judge must still read colour, shape, position
        assert sum(shapes.judge(image, scene).ok for image, scene in zip(x0_rec, scenes)) >= 61, split


def test_shipped_vae_manifest_and_config(shipped):
    manifest = checkpoints.verify("vae")
    assert shipped.config.scaling_factor == pytest.approx(manifest["metrics"]["scaling_factor"])
    assert shipped.config.scaling_factor != 0.18215  # its own, not Stable Diffusion's
    assert manifest["metrics"]["psnr_test"] >= 32.0
    assert manifest["command"].startswith("python -m course_lib.recipes vae")
    assert sum(f["bytes"] for f in manifest["files"].values()) <= 6_000_000
    assert vae_lib.latent_shape(shipped) == (4, 8, 8)
    sweep = manifest["metrics"]["kl_sweep"]
    kl = [row["kl_per_latent"] for row in sweep]
    assert [row["kl_weight"] for row in sweep] == sorted(row["kl_weight"] for row in sweep)
    assert kl == sorted(kl, reverse=True)  # a heavier KL weight buys a smaller KL


def test_shipped_latents_have_unit_scale(shipped):
    x0 = shapes.render(shapes.sample_scenes(256, seed=5, split="train"))
    with torch.no_grad():
        latents = vae_lib.encode(shipped, x0, generator=torch.Generator().manual_seed(0))
    assert 0.85 < latents.std().item() < 1.15
