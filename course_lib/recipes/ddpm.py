"""Pixel-space DDPMs: a TimeMLP on two moons (nb 03), UNet2DModels on the digits, unconditional (nb 03) and
class-conditional with label dropout for classifier-free guidance (nb 06).   [DDPM, nb 03 and 06]"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib import data, metrics, models, noise, training
from course_lib.recipes.base import DiffusionRecipe
from course_lib.validation import CourseInputError, check_int

# The schedule every nb-03 model is trained and sampled with: DDPM's linear betas, 1,000 steps.
SCHEDULE = models.SCHEDULE  # the models' training schedule (course_lib.models)

# ----------------------------------------------------------------------------------------------
# 2D: two moons
# ----------------------------------------------------------------------------------------------

MOONS_TRAIN_POINTS = 20_000
MOONS_CONFIG = training.TrainConfig(steps=4000, batch_size=512, lr=2e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                    ema_decay=0.995, grad_clip=1.0, seed=0)


def moons_data(data_seed: int = 0) -> torch.Tensor:
    """Return the fixed two-moons training set of the ddpm_moons recipe: (20000, 2)."""
    return data.two_moons(MOONS_TRAIN_POINTS, generator=noise.as_generator(data_seed, "data_seed"))


def evaluate_2d(model: torch.nn.Module, draw_data=data.two_moons, num_samples: int = 2000, seed: int = 1) -> dict:
    """Return DDIM-50 and DDPM-1000 distance to data, and the data-data floor, for a 2D model (nb 03's figures)."""
    num_samples = check_int(num_samples, "num_samples", minimum=2, hint="an energy distance needs two points or more")
    seed = check_int(seed, "seed", minimum=0)
    if not callable(draw_data):
        raise CourseInputError("draw_data must be a function draw_data(n, generator) -> (n, 2), e.g. data.two_moons.")
    out = {}
    for sampler, steps in (("ddim", 50), ("ddpm", 1000)):
        x = models.generate(model, (num_samples, 2), SCHEDULE.alpha_bars, sampler=sampler, num_steps=steps,
                            generator=noise.as_generator(seed)).x0
        out[f"energy_distance_{sampler}{steps}"] = metrics.distance_to_data(x, draw_data,
                                                                           generator=noise.as_generator(seed + 1))
    out["energy_distance_floor"] = metrics.data_floor(draw_data, num_samples, generator=noise.as_generator(seed + 2))
    out["ratio_ddim50_to_floor"] = out["energy_distance_ddim50"] / out["energy_distance_floor"]
    return {k: round(v, 6) for k, v in out.items()}


@dataclass(frozen=True)
class MoonsRecipe(DiffusionRecipe):
    """A TimeMLP eps-predictor on a fixed set of two-moons points."""

    def build_model(self):
        return models.time_mlp(seed=self.config.seed)

    def build_data(self):
        return moons_data(self.data_seed)

    def evaluate(self, model):
        return evaluate_2d(model)


# ----------------------------------------------------------------------------------------------
# Digits: an unconditional UNet2DModel (nb 03), and a class-conditional one with label dropout (nb 06)
# ----------------------------------------------------------------------------------------------

DIGITS_LABEL_DROPOUT = 0.2
DIGITS_CONFIG = training.TrainConfig(steps=2500, batch_size=128, lr=1e-3, lr_schedule="cosine", lr_warmup_steps=100,
                                     ema_decay=0.998, grad_clip=1.0, seed=0, checkpoint_every=250)
DIGITS_COND_CONFIG = training.TrainConfig(steps=2000, batch_size=128, lr=1e-3, lr_schedule="cosine",
                                          lr_warmup_steps=100, ema_decay=0.998, grad_clip=1.0, seed=0,
                                          checkpoint_every=250)


def digits_data(labels: bool = False):
    """Return the digits training set: all 1,797 images at 16x16 in [-1, 1], with their labels if asked."""
    x0, y = data.load_digits(16)
    return {"x0": x0, "class_labels": y} if labels else x0


def evaluate_digits(model: torch.nn.Module, num_samples: int = 500, seed: int = 1) -> dict:
    """Return the classifier figures of DDIM-50 samples: unconditional and, for a conditional model, null-label and per-class."""
    num_samples = check_int(num_samples, "num_samples", minimum=1)
    seed = check_int(seed, "seed", minimum=0)
    if not hasattr(model, "config"):
        raise CourseInputError(f"model must be a digits UNet2DModel (models.digits_unet or checkpoints.load"
                               f"('ddpm_digits')), got {type(model).__name__}.")
    conditional = getattr(model.config, "num_class_embeds", None) is not None
    runs = [("uncond", {"class_labels": models.NULL_CLASS} if conditional else {})]
    if conditional:
        runs.append(("cond", {"class_labels": torch.arange(num_samples) % models.NUM_DIGIT_CLASSES}))
    out = {}
    for tag, condition in runs:
        x = models.generate(model, (num_samples, 1, 16, 16), SCHEDULE.alpha_bars, sampler="ddim", num_steps=50,
                            clip_sample=True, generator=noise.as_generator(seed), **condition).x0
        figs = metrics.digit_figures(x)
        out[f"{tag}_confident_share"] = round(figs["confident_share"], 4)
        out[f"{tag}_tv_from_uniform"] = round(figs["tv_from_uniform"], 4)
        if tag == "cond":
            predicted, _ = metrics.classify_digits(x)
            out["cond_accuracy"] = round(float((predicted == condition["class_labels"]).double().mean()), 4)
    return out


@dataclass(frozen=True)
class DigitsRecipe(DiffusionRecipe):
    """The digits UNet2DModel; conditional=True adds class labels, dropped to the null class with label_dropout."""

    conditional: bool = False
    label_dropout: float = 0.0

    def build_model(self):
        return models.digits_unet(seed=self.config.seed, conditional=self.conditional)

    def build_data(self):
        return digits_data(labels=self.conditional)

    def loss_options(self) -> dict:
        if not self.conditional:
            return {}
        return {"cond_dropout": self.label_dropout, "null_cond": {"class_labels": models.NULL_CLASS}}

    def loss_record(self) -> dict:
        options = self.loss_options()
        if options:
            options["null_cond"] = {k: int(v) for k, v in options["null_cond"].items()}
        return options

    def evaluate(self, model):
        return evaluate_digits(model)


RECIPES = (
    MoonsRecipe(
        name="ddpm_moons",
        description="TimeMLP eps-predictor on two moons (20k fixed points), linear schedule, 1000 steps.",
        config=MOONS_CONFIG, data_seed=0,
    ),
    DigitsRecipe(
        name="ddpm_digits",
        description="Unconditional UNet2DModel eps-predictor on sklearn digits at 16x16 (nb 03).",
        config=DIGITS_CONFIG, data_seed=0,
    ),
    DigitsRecipe(
        name="ddpm_digits_cond",
        description=("Class-conditional UNet2DModel (11 class embeddings: digits 0-9 and the null class 10) on "
                     "sklearn digits at 16x16, labels dropped to the null class with probability 0.2, for "
                     "classifier-free guidance (nb 06)."),
        config=DIGITS_COND_CONFIG, data_seed=0, conditional=True, label_dropout=DIGITS_LABEL_DROPOUT,
    ),
)
