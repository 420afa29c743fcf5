"""The shapes VAE (nb 04): AutoencoderKL to 4x8x8 latents, reconstruction + KL, scaling factor in its config.   [LDM, nb 04]"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL

from course_lib import checkpoints, models, noise, shapes, training
from course_lib import vae as vae_lib
from course_lib.recipes.base import LoopRecipe
from course_lib.validation import CourseInputError

VAE_KL_WEIGHT = 1e-5
VAE_TRAIN_CONFIG = training.TrainConfig(steps=4000, batch_size=64, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                        ema_decay=0.999, grad_clip=1.0, seed=0, autocast="bfloat16",
                                        checkpoint_every=250)
# The reconstruction-KL trade-off nb 04 shows: three short runs that differ only in the KL weight.
# Only their measured numbers ship (in the manifest's metrics, key "kl_sweep"), not their weights.
VAE_KL_SWEEP = (1e-5, 1e-3, 1e-1)
VAE_SWEEP_CONFIG = training.TrainConfig(steps=200, batch_size=32, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=50,
                                        ema_decay=0.0, grad_clip=1.0, seed=0, autocast="bfloat16")
VAE_SCALING_IMAGES = 4096  # 'train' scenes whose latents' std gives the scaling factor


def _prior_samples_readable(model: torch.nn.Module, num: int = 256, seed: int = 0) -> float:
    """Return the share of z ~ N(0, I) (unscaled, the VAE's prior) that decode to a scene the shapes judge can read."""
    z = noise.randn((num, *vae_lib.latent_shape(model)), noise.as_generator(seed), device=models.model_device(model))
    with torch.no_grad():  # vae.decode divides by the scaling factor: give it scaled latents
        images = vae_lib.decode(model, z * model.config.scaling_factor).float().cpu().clamp(-1, 1)
    found = [shapes.read_scene(image) for image in images]
    return sum(s is not None and 1 <= len(s.objects) <= shapes.MAX_OBJECTS for s in found) / num


def vae_kl_sweep(device=None) -> list[dict]:
    """Train one short VAE per weight in VAE_KL_SWEEP (VAE_SWEEP_CONFIG) and return their figures (nb 04's table)."""
    device = checkpoints.target_device(device)
    rows = []
    for kl_weight in VAE_KL_SWEEP:
        state = training.train(vae_lib.make_vae(seed=0), vae_lib.vae_batches(VAE_SWEEP_CONFIG.batch_size),
                               functools.partial(vae_lib.vae_loss, kl_weight=kl_weight), VAE_SWEEP_CONFIG,
                               device=device, progress=False)
        model = state.sampling_model.eval()
        figures = vae_lib.measure(model, num_images=256)
        rows.append({"kl_weight": kl_weight, "steps": state.step, "psnr_test": figures["psnr_test"],
                     "kl_per_latent": figures["kl_per_latent"], "latent_std": figures["latent_std"],
                     "posterior_std_mean": figures["posterior_std_mean"],
                     "prior_samples_readable": round(_prior_samples_readable(model), 4),
                     "wall_time_s": round(state.wall_time_s, 1)})
    return rows


def finish_vae(model: torch.nn.Module, *, shift: bool = False, kl_sweep: bool = True) -> dict:
    """Store the scaling factor (and with shift=True the shift factor) in the config, halve the weights to float16
    (what ships), measure; run the KL sweep (nb 04's table) if kl_sweep.

    The figures are measured on the shipped weights (float16, loaded back as float32), so the
    manifest's PSNR is the one a learner gets; psnr_test_float32 is before halving.
    """
    if not isinstance(model, AutoencoderKL):
        raise CourseInputError(f"finish_vae takes a diffusers AutoencoderKL (vae.make_vae), got {type(model).__name__}.")
    model.eval()
    device = models.model_device(model)
    figures = {"psnr_test_float32": vae_lib.measure(model)["psnr_test"]}
    model.half()
    shipped = copy.deepcopy(model).float()
    images = shapes.render(shapes.sample_scenes(VAE_SCALING_IMAGES, seed=1, split="train"))
    mean, std = vae_lib.latent_statistics(shipped, images.to(device), generator=torch.Generator(device).manual_seed(0))
    for m in (model, shipped):
        vae_lib.set_scaling_factor(m, round(1 / std, 5), round(mean, 5) if shift else None)
    figures.update(vae_lib.measure(shipped))
    figures["scaling_factor"] = round(1 / std, 5)
    if shift:
        figures["shift_factor"] = round(mean, 5)
    figures["prior_samples_readable"] = round(_prior_samples_readable(shipped), 4)
    if kl_sweep:
        figures["kl_sweep"] = vae_kl_sweep(device)
    return figures


@dataclass(frozen=True)
class VAERecipe(LoopRecipe):
    """A VAE trained with course_lib.vae.vae_loss (reconstruction + kl_weight * KL) on fresh scenes.

    evaluate() finishes the model as it ships (finish_vae: scaling factor, float16) and measures it.
    architecture: the AutoencoderKL config (vae.VAE_CONFIG, or vae.VAE16_CONFIG for the flow family);
    shift: also store the latents' mean as shift_factor (Stable Diffusion 3's convention).
    """

    kl_weight: float = VAE_KL_WEIGHT
    architecture: tuple = tuple(vae_lib.VAE_CONFIG.items())
    shift: bool = False
    kl_sweep: bool = True

    def build_model(self):
        return vae_lib.make_vae(seed=self.config.seed, **dict(self.architecture))

    def build_data(self):
        return vae_lib.vae_batches(self.config.batch_size)

    def loss_fn(self):
        return functools.partial(vae_lib.vae_loss, kl_weight=self.kl_weight)

    def evaluate(self, model):
        return finish_vae(model, shift=self.shift, kl_sweep=self.kl_sweep)

    def to_dict(self) -> dict:
        return {**super().to_dict(), "loss": {"fn": "course_lib.vae.vae_loss", "kl_weight": self.kl_weight}}


VAE16_TRAIN_CONFIG = training.TrainConfig(steps=3000, batch_size=64, lr=1e-3, lr_schedule="cosine",
                                          lr_warmup_steps=100, ema_decay=0.999, grad_clip=1.0, seed=0,
                                          autocast="bfloat16", checkpoint_every=250)

RECIPES = (
    VAERecipe(
        name="vae",
        description=("Shapes-world AutoencoderKL (course_lib.vae.VAE_CONFIG, 2.7 M parameters): 32x32x3 scenes -> 4x8x8 "
                     "latents, loss MSE + 1e-5 * KL per pixel value, fresh scenes every step from all colour-shape "
                     "pairs (images only, no captions; see vae.vae_batches); scaling factor = 1/std of latents of "
                     "4096 scenes, stored in config.json; EMA weights shipped in float16; metrics include a 3-run "
                     "KL-weight sweep (numbers only)."),
        config=VAE_TRAIN_CONFIG, data_seed=VAE_TRAIN_CONFIG.seed,
    ),
    VAERecipe(
        name="vae16",
        description=("The flow family's AutoencoderKL (course_lib.vae.VAE16_CONFIG, 0.6 M parameters, nb 10): 32x32x3 "
                     "scenes -> 4x16x16 latents (f = 2), no self-attention in the decoder's mid block, the same loss "
                     "and data as 'vae'; shift factor = mean and scaling factor = 1/std of the latents of 4096 scenes "
                     "(Stable Diffusion 3's convention), stored in config.json; EMA weights shipped in float16."),
        config=VAE16_TRAIN_CONFIG, data_seed=VAE16_TRAIN_CONFIG.seed,
        architecture=tuple(vae_lib.VAE16_CONFIG.items()), shift=True, kl_sweep=False,
    ),
)
