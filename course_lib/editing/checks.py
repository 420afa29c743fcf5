"""Checks at the door of the editing functions: images, latents, prompts, strengths and windows.   [notebooks 07-08]

Every public editing function runs its arguments through these once, at its entry; what they
return (a batch of images, one prompt per image, plain floats) is what the internals take on trust.
"""

from __future__ import annotations

import math

import torch

from course_lib import latent, text
from course_lib import vae as vae_lib
from course_lib.validation import CourseInputError, check_finite, check_float_tensor, check_number


# the registry's rows of each family (editing.METHODS), named in the messages that send a system to its own
UNET_METHODS = ("sdedit", "inversion", "prompt_to_prompt", "mask_locking")
FLOW_METHODS = ("flow_inversion", "rf_inversion", "flowedit", "flow_p2p", "kv_edit")


def check_strength(strength) -> float:
    """Return strength as a float if it lies in [0, 1] (0 keeps the image, 1 starts from pure noise), else raise."""
    return check_number(strength, "strength", low=0, high=1,
                        hint="the share of the denoising steps to redo: 0 keeps the image, 1 starts from noise")


def check_window(window, name: str = "window") -> tuple[float, float]:
    """Return (start, end), fractions of the sampling steps with 0 <= start <= end <= 1, else raise."""
    try:
        start, end = window
    except (TypeError, ValueError):
        raise CourseInputError(f"{name} must be a pair (start, end) of fractions of the steps, e.g. (0.0, 0.8); "
                               f"got {window!r}.") from None
    start = check_number(start, f"{name}'s start", low=0, high=1, hint="a fraction of the steps")
    end = check_number(end, f"{name}'s end", low=0, high=1, hint="a fraction of the steps")
    if start > end:
        raise CourseInputError(f"{name} must satisfy 0 <= start <= end <= 1 (fractions of the steps), got {window!r}.")
    return start, end


def check_fraction(value, name: str) -> float:
    """Return value as a float in [0, 1), else raise naming `name`."""
    return check_number(value, name, low=0, high=1, high_open=True)


def check_edit_window(num_steps: int, strength: float) -> None:
    """Raise if an edit of `strength` over num_steps steps would run no step: int(num_steps * strength) = 0."""
    if strength == 0:
        raise CourseInputError("strength 0 redoes no step: the edit window is empty and the result would be the VAE "
                               "round trip, not an edit. Give a strength in (0, 1] (1 runs every step from noise).")
    if int(num_steps * strength) == 0:
        fewest = math.ceil(1 / strength)
        while int(fewest * strength) == 0:  # guard against float rounding
            fewest += 1
        raise CourseInputError(
            f"an edit of strength {strength:g} over num_steps={num_steps} runs int({num_steps} x {strength:g}) = 0 steps: "
            f"the edit window is empty and the result would be the VAE round trip, not an edit. Raise num_steps to "
            f"at least {fewest}, or strength to at least 1/{num_steps} = {1 / num_steps:.3g}.")


def image_batch(image, vae) -> tuple[torch.Tensor, bool]:
    """Return (images (B, C, H, W), was_single) after checking shape, range, finiteness and size against the VAE."""
    check_float_tensor(image, "image")
    single = image.ndim == 3
    images = image[None] if single else image
    if images.ndim != 4 or images.shape[0] == 0:
        raise CourseInputError(f"image must be (3, H, W) or (B, 3, H, W), got shape {tuple(image.shape)}.")
    return vae_lib.check_images(images, vae), single


def latent_batch(latents, channels: int, name: str = "latents") -> torch.Tensor:
    """Return latents if they are a finite (B, channels, h, w) float batch (encode_image gives them), else raise."""
    check_float_tensor(latents, name)
    if latents.ndim != 4 or latents.shape[0] == 0 or latents.shape[1] != channels:
        raise CourseInputError(f"{name} must be (B, {channels}, h, w) (encode_image gives them), "
                               f"got {tuple(latents.shape)}.")
    return check_finite(latents, name)


def check_parts(parts) -> latent.UNetSystem:
    """Return parts if it is the UNet family's latent system (latent.UNetSystem = text2image.Parts), else raise."""
    if isinstance(parts, latent.FlowSystem):
        raise CourseInputError(
            f"parts is a latent.FlowSystem: Stable Diffusion 3's family, a transformer predicting the velocity "
            f"v = eps - x0. The UNet editing methods take DDIM steps with an eps-predicting UNet and need a "
            f"latent.UNetSystem (text2image.load_parts()). For a FlowSystem use the flow methods: editing.METHODS "
            f"{', '.join(FLOW_METHODS)}.")
    return latent.check_system(parts, latent.UNetSystem)


def prompt_batch(tokenizer, prompts, batch: int | None, name: str) -> list[str]:
    """Return one prompt per image (one prompt is repeated) after checking that each fits the tokenizer, else raise.

    batch: the number of images, or None to take the prompts as they come (a str is one prompt).
    A prompt longer than tokenizer.model_max_length tokens (start and end tokens counted) is refused:
    the text encoder would silently drop its tail, and two prompts differing only there would encode alike.
    """
    try:
        prompts = text.as_prompts(prompts)
    except CourseInputError as error:
        raise CourseInputError(f"{name}: {error}") from None
    if batch is not None and len(prompts) == 1:
        prompts = prompts * batch
    elif batch is not None and len(prompts) != batch:
        raise CourseInputError(f"{name}: give one prompt, or one per image ({batch}); got {len(prompts)}.")
    limit = tokenizer.model_max_length
    unique = list(dict.fromkeys(prompts))
    for prompt, ids in zip(unique, tokenizer(unique, verbose=False).input_ids):
        if len(ids) > limit:
            raise CourseInputError(
                f"{name} {prompt[:60] + '...' if len(prompt) > 60 else prompt!r} is {len(ids)} tokens long (with its "
                f"start and end tokens), but the text encoder reads at most {limit} (tokenizer.model_max_length): "
                f"everything past token {limit} would be dropped without a word. Shorten it.")
    return prompts


def single_or_batch(images: torch.Tensor, single: bool) -> torch.Tensor:
    """Return images[0] if the input was one image (3, H, W), else the batch."""
    return images[0] if single else images
