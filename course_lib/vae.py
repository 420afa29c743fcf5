"""The variational autoencoder that gives latent diffusion its latents.   [notebook 04]

Stable Diffusion denoises in the latent space of a VAE (Rombach et al. 2022, "LDM"). The encoder
maps an image x0 to a diagonal Gaussian q(z | x0) = N(mean, diag(exp(logvar))), the decoder maps a
latent z back to an image, and training maximises the evidence lower bound (ELBO, Kingma & Welling
2014, eq. 3):

    log p(x0) >= E_q[log p(x0 | z)] - KL(q(z | x0) || N(0, I))

With a Gaussian decoder, -log p(x0 | z) is a scaled squared error, so the loss this module trains
with is   MSE(x0, decoder(z)) + kl_weight * KL / (number of pixel values),   z = mean + std * eps
(the reparameterisation trick), i.e. a beta-weighted ELBO (reconstruction="l1" takes a Laplace decoder
instead: a mean absolute error).

The encoder outputs a log-variance (`logvar`, diffusers' name), the one place in the course where a
log-variance is stored: it is unconstrained, so a network can output it. diffusers clamps it to
[-30, 20]; so does `reparameterise` here, so that both give the same sample for the same noise.

The shapes VAE: a diffusers AutoencoderKL (VAE_CONFIG), 32x32x3 scenes -> 4x8x8 latents (f = 4).
Latents are multiplied by `vae.config.scaling_factor` = 1 / std(latents), computed from a large
sample of latents after training (Stable Diffusion's 0.18215 was found the same way), so that the
diffusion model sees latents of unit variance; `encode` and `decode` apply it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib import checkpoints, environment, metrics, models, shapes
from course_lib import noise as noise_lib
from course_lib.validation import (CourseInputError, check_choice, check_finite, check_float_tensor, check_number,
                                   check_positive_int)

# 32x32 RGB -> 4 x 8 x 8: three blocks (two downsamplings, f = 4), about 2.7 M parameters.
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 128),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=16,
    sample_size=32,
    mid_block_add_attention=True,
    scaling_factor=1.0,  # replaced by compute_scaling_factor() after training
)
# 32x32 RGB -> 4 x 16 x 16: two blocks (one downsampling, f = 2), about 0.6 M parameters: the flow family's
# latent space (nb 10). A finer grid lets an editor keep a latent cell that lies wholly inside an object (at
# f = 4 no cell does: every one also holds background), and without the mid block's self-attention the
# decoder is convolutional only, so a changed cell reaches only the pixels within its receptive field
# (with it, every pixel). Stable Diffusion 3 stores a shift as well as a scale: latents are (z - shift) * scale.
VAE16_CONFIG = dict(
    VAE_CONFIG,
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(32, 64),
    mid_block_add_attention=False,
    shift_factor=0.0,  # replaced by compute_scaling_factor's companion, the latents' mean, after training
)
LOGVAR_RANGE = (-30.0, 20.0)  # diffusers' DiagonalGaussianDistribution clamps logvar to this


def make_vae(seed: int = 0, **overrides):
    """Return a fresh AutoencoderKL with VAE_CONFIG (updated by `overrides`), initialised from `seed`."""
    from diffusers import AutoencoderKL

    with models.seeded(seed):
        return AutoencoderKL(**{**VAE_CONFIG, **overrides})


def downsampling_factor(vae) -> int:
    """Return f, the image side divided by the latent side: 2 ** (number of encoder blocks - 1)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def latent_shape(vae, image_size: int = shapes.DEFAULT_SIZE) -> tuple[int, int, int]:
    """Return (C, H, W) of the latents of a square image of side `image_size` (a multiple of the factor f)."""
    f = downsampling_factor(vae)
    image_size = check_positive_int(image_size, "image_size")
    if image_size % f:
        raise CourseInputError(f"image_size must be a multiple of this VAE's factor {f}, got {image_size}.")
    return vae.config.latent_channels, image_size // f, image_size // f


def check_images(x0, vae, name: str = "x0") -> torch.Tensor:
    """Return x0 if it is a (B, C, H, W) float batch in [-1, 1] that the VAE can take, else raise."""
    check_float_tensor(x0, name)
    if x0.ndim == 3:
        raise CourseInputError(f"{name} must be a batch (B, C, H, W); got one image {tuple(x0.shape)}: use {name}[None].")
    if x0.ndim != 4 or x0.shape[1] != vae.config.in_channels or x0.shape[0] == 0:
        raise CourseInputError(f"{name} must have shape (B, {vae.config.in_channels}, H, W) with B >= 1, "
                               f"got {tuple(x0.shape)}.")
    f = downsampling_factor(vae)
    h, w = x0.shape[-2:]
    if h % f or w % f:
        raise CourseInputError(f"this VAE halves the image {f.bit_length() - 1} times, so height and width must be "
                               f"multiples of {f}; got {h}x{w}. Resize or crop to e.g. {h // f * f or f}x{w // f * f or f}.")
    check_finite(x0, "images")
    if x0.numel() and (x0.min() < -1.5 or x0.max() > 1.5):
        raise CourseInputError(f"images must lie in [-1, 1], got values in [{x0.min():.3g}, {x0.max():.3g}]. "
                               f"Convert uint8 pixels with x / 127.5 - 1.")
    return x0


def check_latents(latents, vae) -> torch.Tensor:
    """Return latents if they are a (B, latent_channels, h, w) float batch, else raise."""
    check_float_tensor(latents, "latents")
    if latents.ndim != 4 or latents.shape[1] != vae.config.latent_channels or latents.shape[0] == 0:
        raise CourseInputError(f"latents must have shape (B, {vae.config.latent_channels}, h, w), got {tuple(latents.shape)}.")
    return check_finite(latents, "latents")


# ----------------------------------------------------------------------------------------------
# The maths: reparameterisation and the KL term [VAE, nb 04]
# ----------------------------------------------------------------------------------------------

def reparameterise(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Sample z = mean + exp(logvar / 2) * eps, a differentiable function of (mean, logvar).   [VAE eq. 10, nb 04]

    logvar is clamped to [-30, 20] first, as diffusers' DiagonalGaussianDistribution does.
    Shapes: all (B, C, h, w).
    """
    logvar = logvar.clamp(*LOGVAR_RANGE)
    return mean + torch.exp(0.5 * logvar) * noise


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Return KL(N(mean, exp(logvar)) || N(0, I)) = 0.5 sum(mean^2 + var - 1 - logvar) per example.   [VAE app. B, nb 04]

    Summed over all but the batch dimension, as diffusers' DiagonalGaussianDistribution.kl(). Shapes:
    (B, ...) -> (B,).
    """
    logvar = logvar.clamp(*LOGVAR_RANGE)
    return 0.5 * (mean**2 + logvar.exp() - 1 - logvar).flatten(1).sum(1)


def posterior(vae, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the encoder's (mean, logvar) of q(z | x0), unscaled.   Shapes: (B, 3, H, W) -> 2 x (B, C, h, w)."""
    check_images(x0, vae)
    dist = vae.encode(x0).latent_dist
    return dist.mean, dist.logvar


RECONSTRUCTION_LOSSES = ("mse", "l1")


def vae_loss_terms(vae, x0: torch.Tensor, generator: torch.Generator | None = None, *,
                   kl_weight: float = 1e-4, reconstruction: str = "mse",
                   noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Return {"loss", "recon", "kl"}: recon = MSE(x0, decode(z)), kl = KL / pixel values, loss = recon + kl_weight * kl.   [nb 04]

    z = reparameterise(mean, logvar, eps) with eps from `noise` or drawn from `generator`. kl is
    gaussian_kl averaged over the batch and divided by the number of values per image (3 * H * W),
    so that kl_weight compares nats per value with squared error per value.
    """
    check_choice(reconstruction, RECONSTRUCTION_LOSSES, "reconstruction")
    kl_weight = check_number(kl_weight, "kl_weight", low=0, hint="the weight of the KL term; 1e-4 here")
    mean, logvar = posterior(vae, x0)
    if noise is None:
        noise = noise_lib.randn_like(mean, noise_lib.as_generator(generator))
    z = reparameterise(mean, logvar, noise)
    x0_hat = vae.decode(z).sample
    if reconstruction == "mse":  # a Gaussian decoder, eq. (4.2)
        recon = F.mse_loss(x0_hat.float(), x0.float())
    else:  # a Laplace decoder: -log p(x0 | z) = |x0 - D(z)| / b + const
        recon = F.l1_loss(x0_hat.float(), x0.float())
    kl = gaussian_kl(mean.float(), logvar.float()).mean() / x0[0].numel()
    return {"loss": recon + kl_weight * kl, "recon": recon, "kl": kl}


def vae_loss(vae, batch, generator: torch.Generator | None = None, *, kl_weight: float = 1e-4,
             reconstruction: str = "mse") -> torch.Tensor:
    """Return the training loss of vae_loss_terms for a batch {"x0": images} or a tensor; a loss_fn for training.train.   [nb 04]"""
    x0 = batch["x0"] if isinstance(batch, dict) else batch
    return vae_loss_terms(vae, x0, generator, kl_weight=kl_weight, reconstruction=reconstruction)["loss"]


# ----------------------------------------------------------------------------------------------
# Scaled latents: the scaling factor, encode and decode
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def latent_statistics(vae, x0: torch.Tensor, generator: torch.Generator | None = None,
                      batch_size: int = 512) -> tuple[float, float]:
    """Return (mean, std) of the unscaled latents z ~ q(z | x0) over a (large) batch of images.   [LDM sec. 4.3.2, nb 04]

    The latents are drawn with latent_dist.sample(generator), as diffusers' training scripts encode.
    Stable Diffusion's scaling factor 0.18215 is 1 / std for its VAE on its data; Stable Diffusion 3
    also stores the mean as shift_factor (0.0609), so that (z - shift) * scale has mean 0 and std 1.
    """
    check_images(x0, vae)
    generator = noise_lib.as_generator(generator)
    batch_size = check_positive_int(batch_size, "batch_size")
    device = models.model_device(vae)
    z = torch.cat([vae.encode(x0[i: i + batch_size].to(device)).latent_dist.sample(generator=generator).float().cpu()
                   for i in range(0, len(x0), batch_size)])
    return float(z.mean()), float(z.std())


def compute_scaling_factor(vae, x0: torch.Tensor, generator: torch.Generator | None = None,
                           batch_size: int = 512) -> float:
    """Return 1 / std of the latents z ~ q(z | x0) over a (large) batch of images (latent_statistics).   [LDM sec. 4.3.2, nb 04]"""
    return 1 / latent_statistics(vae, x0, generator, batch_size)[1]


def set_scaling_factor(vae, value: float, shift: float | None = None) -> None:
    """Store the scaling factor (and, if given, the shift factor) in vae.config, so that save_pretrained writes them."""
    value = check_number(value, "the scaling factor", low=0, low_open=True, hint="1 / std of the latents")
    vae.register_to_config(scaling_factor=value)
    if shift is not None:
        vae.register_to_config(shift_factor=check_number(shift, "the shift factor", hint="the mean of the latents"))


def shift_factor(vae) -> float:
    """Return the VAE's shift_factor (Stable Diffusion 3's VAEs have one; the course's and SD 1.x's: 0)."""
    return float(getattr(vae.config, "shift_factor", None) or 0.0)


def encode(vae, x0: torch.Tensor, *, generator=None, sample_mode: str = "sample") -> torch.Tensor:
    """Return scaled latents (z - shift_factor) * scaling_factor, z ~ q(z | x0) ("sample") or z = mean ("argmax").   [LDM, nb 04]

    sample_mode and generator (a torch.Generator or an int seed) work as in diffusers' pipelines
    (retrieve_latents), so an img2img pipeline given the same generator starts from the same latents;
    the shift is Stable Diffusion 3's (0 here and in SD 1.x). The images go to the VAE's device and
    dtype. Shapes: (B, 3, H, W) -> (B, C, H/f, W/f).
    """
    if sample_mode not in ("sample", "argmax"):
        raise CourseInputError(f"sample_mode must be 'sample' or 'argmax' (the mean), got {sample_mode!r}.")
    check_images(x0, vae)
    generator = noise_lib.as_generator(generator)
    dist = vae.encode(x0.to(models.model_device(vae), next(vae.parameters()).dtype)).latent_dist
    z = dist.sample(generator=generator) if sample_mode == "sample" else dist.mode()
    shift = shift_factor(vae)
    return (z - shift if shift else z) * vae.config.scaling_factor


def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Return images decoder(latents / scaling_factor + shift_factor), unclamped, about [-1, 1].   [LDM, nb 04]

    The latents go to the VAE's device and dtype. Shapes: (B, C, h, w) -> (B, 3, f h, f w).
    """
    check_latents(latents, vae)
    z = latents.to(models.model_device(vae), next(vae.parameters()).dtype) / vae.config.scaling_factor
    shift = shift_factor(vae)
    return vae.decode(z + shift if shift else z).sample


@torch.no_grad()
def reconstruct(vae, x0: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Return decode(encode(x0)) with the posterior mean, clamped to [-1, 1], in batches."""
    check_images(x0, vae)
    batch_size = check_positive_int(batch_size, "batch_size")
    device = models.model_device(vae)
    out = [decode(vae, encode(vae, x0[i: i + batch_size].to(device), sample_mode="argmax")).float().clamp(-1, 1).cpu()
           for i in range(0, len(x0), batch_size)]
    return torch.cat(out)


# ----------------------------------------------------------------------------------------------
# Training, saving and loading
# ----------------------------------------------------------------------------------------------

def heldout_images(n: int = 256, seed: int = 0, size: int = shapes.DEFAULT_SIZE) -> torch.Tensor:
    """Return the VAE's held-out images: n scenes of the 'heldout' split (unseen colour-shape pairs, unseen seeds)."""
    return shapes.render(shapes.sample_scenes(n, seed=seed, split="heldout"), size)


def vae_batches(batch_size: int = 64, size: int = shapes.DEFAULT_SIZE):
    """Return data(generator) -> {"x0": images}: fresh scenes every step, from all colour-shape pairs.

    The VAE sees images only, never captions, so it may see the pairs held out from the captioned
    training of CLIP and the denoiser (as Stable Diffusion's VAE was trained on a broader image set
    than its text-image pairs). A VAE trained without them reconstructs them badly: it turns a yellow
    circle, never seen, into the yellow square it knows, which would hide any generalisation of the
    text-to-image model behind the decoder.
    """
    return shapes.image_batches(batch_size, "train", size=size, include_heldout=True)


@torch.no_grad()
def measure(vae, num_images: int = 512, seed: int = 0) -> dict:
    """Return the VAE's figures on unseen scenes: PSNR on 'test' and 'heldout' splits, KL and latent statistics.   [nb 04]

    psnr_test: scenes of the training law from seeds training never draws; psnr_heldout_pairs: scenes
    holding a colour-shape pair the VAE never saw. Reconstructions use the posterior mean.
    kl_per_latent: KL(q(z|x0) || N(0, I)) in nats per latent value; latent_std: std of unscaled z.
    """
    vae.eval()
    out = {}
    for split in ("test", "heldout"):
        x0 = shapes.render(shapes.sample_scenes(num_images, seed=seed, split=split))
        out[f"psnr_{'test' if split == 'test' else 'heldout_pairs'}"] = round(metrics.psnr(reconstruct(vae, x0), x0), 3)
    x0 = shapes.render(shapes.sample_scenes(num_images, seed=seed, split="test"))
    device = models.model_device(vae)
    mean, logvar = posterior(vae, x0.to(device))
    z = reparameterise(mean, logvar, noise_lib.randn(mean.shape, torch.Generator().manual_seed(seed),
                                                     device=mean.device, dtype=mean.dtype))
    out["kl_per_latent"] = round(float(gaussian_kl(mean.float(), logvar.float()).mean() / mean[0].numel()), 4)
    out["latent_std"] = round(float(z.float().std()), 4)
    out["posterior_std_mean"] = round(float(torch.exp(0.5 * logvar.float()).mean()), 5)
    return out


def load_vae(name_or_path: str | Path = "vae", device: torch.device | str | None = None):
    """Load the shipped shapes VAE in float32, eval mode, after checking its files' SHA-256.   [nb 04]

    The weights ship in float16 (half the bytes); they are loaded back as float32.
    """
    from diffusers import AutoencoderKL

    checkpoints.verify(name_or_path)
    vae = AutoencoderKL.from_pretrained(checkpoints.checkpoint_dir(name_or_path), torch_dtype=torch.float32,
                                        low_cpu_mem_usage=False)
    device = torch.device(device) if device is not None else environment.default_device()
    return vae.to(device).eval()
