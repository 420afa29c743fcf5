"""The course's CLIPModel: its two small towers, its config, and the checks every clip entry point shares.   [nb 05]

The model is transformers' CLIPModel built from a CLIPConfig (TEXT_CONFIG, VISION_CONFIG): a
vision transformer on 32x32 scenes (4x4 patches) and a causal text transformer over the course
tokenizer's ids (course_lib.text).
"""

from __future__ import annotations

import math

import torch
from transformers import CLIPConfig, CLIPModel

from course_lib import models, shapes, text
from course_lib.validation import CourseInputError, check_finite, check_float_tensor, check_int

# The towers: ~0.2 M parameters each; hidden size 64 is also the prompt embedding width that the
# text-to-image UNet of notebook 06 cross-attends to (its cross_attention_dim).
TEXT_CONFIG = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                   hidden_act="quick_gelu")
VISION_CONFIG = dict(image_size=shapes.DEFAULT_SIZE, patch_size=4, num_channels=3, hidden_size=64,
                     intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, hidden_act="quick_gelu")
PROJECTION_DIM = 64
LOGIT_SCALE_INIT = math.log(1 / 0.07)  # CLIP's initial temperature tau = 0.07 (transformers' 2.6592)
MAX_LOGIT_SCALE = 100.0  # CLIP clips 1 / tau at 100 (its paper, sec. 2.5)


class CourseCLIPConfig(CLIPConfig):
    """A CLIPConfig that also reads as a dict, dict(config), the way recipes.run records a model's config.

    It saves as a plain CLIPConfig (model_type "clip"); CLIPModel.from_pretrained loads it as one.
    """

    def keys(self):
        return self.to_dict().keys()

    def __getitem__(self, key):
        return self.to_dict()[key]


def _check_overrides(overrides, name: str) -> dict:
    if overrides is None:
        return {}
    if not isinstance(overrides, dict):
        raise CourseInputError(f"{name} must be a dict of config fields (e.g. {{'num_hidden_layers': 2}}) or None, "
                               f"got {type(overrides).__name__}.")
    return overrides


def clip_config(tokenizer=None, *, text_overrides: dict | None = None, vision_overrides: dict | None = None,
                projection_dim: int = PROJECTION_DIM) -> CourseCLIPConfig:
    """Return the CLIPConfig of the course's CLIP: TEXT_CONFIG, VISION_CONFIG, and the tokenizer's ids and sizes.   [nb 05]"""
    tokenizer = tokenizer if tokenizer is not None else text.build_tokenizer()
    projection_dim = check_int(projection_dim, "projection_dim", minimum=1, hint="the width of the shared embedding")
    text_config = {**TEXT_CONFIG, **text.text_config_kwargs(tokenizer), **_check_overrides(text_overrides, "text_overrides")}
    vision_config = {**VISION_CONFIG, **_check_overrides(vision_overrides, "vision_overrides")}
    return CourseCLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim,
                            logit_scale_init_value=LOGIT_SCALE_INIT)


def make_clip(tokenizer=None, seed: int = 0, **config_kwargs) -> CLIPModel:
    """Return a fresh CLIPModel with clip_config(tokenizer, **config_kwargs), initialised from `seed`."""
    seed = check_int(seed, "seed", minimum=0, hint="the seed of the initial weights")
    config = clip_config(tokenizer, **config_kwargs)
    with models.seeded(seed):
        return CLIPModel(config)


# ----------------------------------------------------------------------------------------------
# The checks the entry points share: a CLIPModel, its input ids, its images
# ----------------------------------------------------------------------------------------------

def check_clip_model(model, name: str = "model") -> CLIPModel:
    """Return `model` if it is a transformers CLIPModel, else raise saying how to get one."""
    if not isinstance(model, CLIPModel):
        raise CourseInputError(f"{name} must be a transformers CLIPModel, got {type(model).__name__}; "
                               f"use clip.make_clip(tokenizer) or clip.load('clip').")
    return model


def check_input_ids(input_ids, model: CLIPModel, name: str = "input_ids") -> torch.Tensor:
    """Return `input_ids` if it is an integer tensor (B, L) of ids the text tower knows, else raise."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.is_floating_point() or input_ids.dtype == torch.bool \
            or input_ids.is_complex():
        got = f"dtype {input_ids.dtype}" if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise CourseInputError(f"{name} must be an integer tensor of token ids, got {got}; "
                               f"make it with text.tokenize(captions, tokenizer).")
    config = model.config.text_config
    if input_ids.ndim != 2 or not input_ids.numel() or input_ids.shape[1] > config.max_position_embeddings:
        raise CourseInputError(f"{name} must have shape (B, L) with B >= 1 and 1 <= L <= "
                               f"{config.max_position_embeddings}, got {tuple(input_ids.shape)}.")
    if int(input_ids.min()) < 0 or int(input_ids.max()) >= config.vocab_size:
        raise CourseInputError(f"{name} holds ids outside 0..{config.vocab_size - 1} (the text tower's vocabulary): "
                               f"tokenize with the tokenizer the model was built with.")
    return input_ids


def check_pixel_values(pixel_values, model: CLIPModel, name: str = "pixel_values") -> torch.Tensor:
    """Return images (B, 3, S, S) if they are finite floats at the vision tower's size S, else raise."""
    check_float_tensor(pixel_values, name)
    size = model.config.vision_config.image_size
    if pixel_values.ndim != 4 or pixel_values.shape[1:] != (3, size, size) or not len(pixel_values):
        raise CourseInputError(f"{name} must have shape (B, 3, {size}, {size}) with B >= 1 (rendered scenes in "
                               f"[-1, 1], shapes.render(scenes)), got {tuple(pixel_values.shape)}.")
    return check_finite(pixel_values, name)
