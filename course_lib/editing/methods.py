"""The editing methods on a real image: inversion alone, prompt-to-prompt with local blending, and mask locking.   [nb 07-08]

Each takes (parts, image, source_prompt, target_prompt), an InversionSettings and its own frozen
settings, checks everything once at its door, and composes the package's pieces: the inversion,
the editing loop, the controllers and the masks. prompt_to_prompt and mask_locking return an
EditOutput (the edited image and the mask the edit was confined to); inversion_edit the image.

Each method's defaults come from the ShapesEdit table run on the development cases (shapesedit.DEV_SEED,
100 cases; never the benchmark's): the row with the highest edit success, ties broken by locked PSNR.
inversion_edit: "ddim" (92 % against direct's and edit-friendly's 90 %); prompt_to_prompt:
"edit_friendly" (88 %, direct 82 %); mask_locking: "ddim" (90 %, 32.0 dB; edit-friendly 90 %, 31.8 dB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from course_lib import latent, noise
from course_lib import vae as vae_lib
from course_lib.editing.checks import (check_fraction, check_parts, check_window, image_batch, prompt_batch,
                                       single_or_batch)
from course_lib.editing.controllers import AttentionReplace, AttentionReweight, check_window_steps
from course_lib.editing.inversions import InversionSettings, run_inversion
from course_lib.editing.loop import noisy_start, sample_edit, sample_with_controller
from course_lib.editing.masks import (NORMALISATIONS, LocalBlend, MaskSettings, automatic_mask, check_mask, fill_holes,
                                      image_mask, latent_mask)
from course_lib.editing.primitives import image_latents, latent_images, prompt_embeddings
from course_lib.editing.tokens import (MAPPER_MODES, changed_positions, check_edit_prompts, check_reweight,
                                       reweight_scales, reweighted_positions, token_mapper)
from course_lib.validation import CourseInputError, check_choice, check_int


@dataclass(frozen=True)
class EditOutput:
    """An edit's result: image (3, H, W) or (B, 3, H, W) in [-1, 1], and the mask it was confined to, at image size.

    mask: (1, H, W) or (B, 1, H, W) bool, True where the edit could change the image; None when the
    method used none (prompt-to-prompt without local blending).
    """

    image: torch.Tensor
    mask: torch.Tensor | None = None


def _edit_door(parts, image, source_prompt, target_prompt, inversion, generator):
    """The checks every method shares: (images, was_single, sources, targets, generator)."""
    images, single = image_batch(image, check_parts(parts).vae)
    b = len(images)
    if not isinstance(inversion, InversionSettings):
        raise CourseInputError(f"inversion must be an editing.InversionSettings (e.g. InversionSettings('direct', "
                               f"num_steps=25)), got {type(inversion).__name__}.")
    return (images, single, prompt_batch(parts.tokenizer, source_prompt, b, "source_prompt"),
            prompt_batch(parts.tokenizer, target_prompt, b, "target_prompt"), noise.as_generator(generator))


# ----------------------------------------------------------------------------------------------
# Inversion alone
# ----------------------------------------------------------------------------------------------

@torch.no_grad()
def inversion_edit(parts: latent.UNetSystem, image: torch.Tensor, source_prompt, target_prompt, *,
                   inversion: InversionSettings = InversionSettings(), generator: torch.Generator | int | None = None
                   ) -> torch.Tensor:
    """Edit by inverting under the source prompt, then sampling the target prompt from there with CFG.   [nb 07]

    inversion: which inversion and its settings (InversionSettings; z0 is the VAE posterior mean).
    With "ddim" the unconditional prompt is "" and guidance moves the path; the other inversions
    make the source prompt come back at inversion.guidance_scale, and with it everything the target
    prompt does not change. generator (or an int seed) draws edit-friendly noise.
    Shapes: image (3, H, W) or (B, 3, H, W) in [-1, 1] -> the same shape.
    """
    images, single, sources, targets, generator = _edit_door(parts, image, source_prompt, target_prompt, inversion,
                                                             generator)
    inv = run_inversion(parts, image_latents(parts, images), sources, inversion, generator)
    _, z = sample_edit(parts, inv, prompt_embeddings(parts, targets), inversion.guidance_scale)
    return single_or_batch(latent_images(parts, z), single)


# ----------------------------------------------------------------------------------------------
# Prompt-to-prompt on a real image
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptToPromptSettings:
    """Prompt-to-prompt's settings: its attention windows, the alignment mode, re-weighting and local blending.   [P2P, nb 08]

    cross_window, self_window: fractions [start, end) of the edit's steps in which the target takes
    the source's cross- / self-attention maps (a window of zero width, e.g. (0, 0), is off; one of
    positive width must select at least one step, checked against the step count at the door).
    mode: 'swap' (prompts align token by token), 'refine' (words added or removed) or 'auto'.
    reweight: {word of the target prompt: scale > 0} scales that word's cross-attention (e.g.
    {"red": 2.0}). local_blend: after each step from blend_start on, keep the target's latents only
    where the changed and the re-weighted words are attended (LocalBlend with blend_threshold, blend_grow cells,
    blend_normalise), the source branch's elsewhere.
    """

    cross_window: tuple[float, float] = (0.0, 0.8)
    self_window: tuple[float, float] = (0.0, 0.2)
    mode: str = "auto"
    reweight: dict[str, float] | tuple[tuple[str, float], ...] | None = None
    local_blend: bool = True
    blend_threshold: float = 0.5
    blend_start: float = 0.2
    blend_grow: int = 1
    blend_normalise: str = "minmax"

    def __post_init__(self):
        def keep(name, value):
            object.__setattr__(self, name, value)

        keep("cross_window", check_window(self.cross_window, "cross_window"))
        keep("self_window", check_window(self.self_window, "self_window"))
        keep("mode", check_choice(self.mode, MAPPER_MODES, "mode"))
        if self.reweight is not None:
            keep("reweight", check_reweight(dict(self.reweight) if isinstance(self.reweight, tuple) else self.reweight)
                 or None)
        if not isinstance(self.local_blend, bool):
            raise CourseInputError(f"local_blend must be True or False, got {self.local_blend!r}.")
        keep("blend_threshold", check_fraction(self.blend_threshold, "blend_threshold"))
        keep("blend_start", check_fraction(self.blend_start, "blend_start"))
        keep("blend_grow", check_int(self.blend_grow, "blend_grow", minimum=0))
        keep("blend_normalise", check_choice(self.blend_normalise, NORMALISATIONS, "blend_normalise"))

    def check_steps(self, num_steps: int) -> None:
        """Raise if a window of positive width selects none of the edit's num_steps steps."""
        for name in ("cross_window", "self_window"):
            check_window_steps(name, getattr(self, name), num_steps)


P2P_INVERSION = InversionSettings("edit_friendly")  # prompt-to-prompt's default inversion (see the module docstring)


@torch.no_grad()
def prompt_to_prompt(parts: latent.UNetSystem, image: torch.Tensor, source_prompt, target_prompt, *,
                     inversion: InversionSettings = P2P_INVERSION,
                     settings: PromptToPromptSettings = PromptToPromptSettings(),
                     generator: torch.Generator | int | None = None) -> EditOutput:
    """Edit a real image by prompt-to-prompt: invert under the source prompt, then run source and target side by side.   [P2P, nb 08]

    The source branch follows the inversion (InversionSettings); inside settings' windows the target
    takes the source's attention maps (word swap or refinement; re-weighting scales chosen words),
    and with local blending it keeps its own latents only where the changed (or re-weighted) words are attended.
    Returns EditOutput(image, mask): mask is local blending's final mask at image size (None without it).
    """
    images, single, sources, targets, generator = _edit_door(parts, image, source_prompt, target_prompt, inversion,
                                                             generator)
    if not isinstance(settings, PromptToPromptSettings):
        raise CourseInputError(f"settings must be an editing.PromptToPromptSettings, got {type(settings).__name__}.")
    if not settings.reweight:  # re-weighting may keep the prompt and only scale a word
        check_edit_prompts(parts.tokenizer, sources, targets)
    settings.check_steps(len(inversion.timesteps))
    tokenizer = parts.tokenizer
    mappers = [token_mapper(tokenizer, s, t, settings.mode) for s, t in zip(sources, targets)]
    scales = [reweight_scales(tokenizer, t, settings.reweight) for t in targets] if settings.reweight else None
    if any(not torch.equal(m, mappers[0]) for m in mappers) or \
            (scales is not None and any(not torch.equal(s, scales[0]) for s in scales)):
        raise CourseInputError("prompt_to_prompt runs one controller per batch: give prompt pairs that align alike "
                               "(or edit the images one at a time).")
    blender = None
    if settings.local_blend:
        positions = [changed_positions(tokenizer, s, t) for s, t in zip(sources, targets)]
        if settings.reweight:  # a re-weighted word is edited too (without it a re-weighting alone would lock everything)
            positions = [(sorted(set(p) | set(reweighted_positions(tokenizer, s, settings.reweight))),
                          sorted(set(q) | set(reweighted_positions(tokenizer, t, settings.reweight))))
                         for (p, q), s, t in zip(positions, sources, targets)]
        f = vae_lib.downsampling_factor(parts.vae)
        blender = LocalBlend([p[0] for p in positions], [p[1] for p in positions],
                             side=(images.shape[-2] // f, images.shape[-1] // f), threshold=settings.blend_threshold,
                             start=settings.blend_start, grow_cells=settings.blend_grow,
                             normalise=settings.blend_normalise)
    kwargs = dict(mapper=mappers[0], cross_window=settings.cross_window, self_window=settings.self_window,
                  local_blend=blender)
    controller = AttentionReweight(**kwargs, scales=scales[0]) if scales is not None else AttentionReplace(**kwargs)
    inv = run_inversion(parts, image_latents(parts, images), sources, inversion, generator)
    _, z = sample_with_controller(parts, inv, prompt_embeddings(parts, targets), controller, inversion.guidance_scale,
                                  blend=blender)
    out = single_or_batch(latent_images(parts, z), single)
    mask = None if blender is None else single_or_batch(image_mask(blender.mask(), images.shape[-2:]).cpu(), single)
    return EditOutput(out, mask)


# ----------------------------------------------------------------------------------------------
# Mask locking
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MaskLockingSettings:
    """Mask locking's settings: the automatic mask's (source, draws, noise level, threshold, growth), start, composite.   [nb 08]

    mask_source, mask_draws, mask_strength, mask_threshold, mask_grow: MaskSettings' source,
    num_draws, strength, threshold and grow_cells (used when no mask is given). start: what the
    masked latents start from: "inverted" (the inversion's noisiest latent: the source's layout,
    which a colour or shape edit keeps) or "noise" (fresh N(0, I), as inpainting). composite=True
    pastes the source pixels outside the mask: a perfect lock by construction wherever the mask is
    right (with a given mask, a reference row; with the method's own mask, what inpainting pipelines
    do, and a row a user can run).
    """

    mask_source: str = MaskSettings.source
    mask_draws: int = MaskSettings.num_draws
    mask_strength: float = MaskSettings.strength
    mask_threshold: float | None = None
    mask_grow: int = MaskSettings.grow_cells
    start: str = "inverted"
    composite: bool = False
    mask_settings: MaskSettings = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "mask_settings", MaskSettings(self.mask_source, self.mask_draws, self.mask_strength,
                                                               self.mask_threshold, self.mask_grow))
        check_choice(self.start, ("inverted", "noise"), "start")
        if not isinstance(self.composite, bool):
            raise CourseInputError(f"composite must be True or False, got {self.composite!r}.")


def given_mask(parts, mask, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (pixel mask (B, 1, H, W), latent mask (B, 1, h, w) with holes filled) of a user's mask, else raise."""
    pixels = check_mask(mask, images)
    empty = [i for i, m in enumerate(pixels) if not m.any()]
    if empty:
        raise CourseInputError(f"the mask covers no pixel of image(s) {empty}: nothing could change. Mark the pixels "
                               f"the edit may change with True.")
    full = [i for i, m in enumerate(pixels) if m.all()]
    if full:
        raise CourseInputError(f"the mask covers every pixel of image(s) {full}: nothing would be locked. Give a "
                               f"smaller mask, or use editing.inversion_edit for an edit of the whole image.")
    f = vae_lib.downsampling_factor(parts.vae)
    return pixels, fill_holes(latent_mask(pixels, (images.shape[-2] // f, images.shape[-1] // f)))


@torch.no_grad()
def mask_locking(parts: latent.UNetSystem, image: torch.Tensor, source_prompt, target_prompt, *, mask=None,
                 inversion: InversionSettings = InversionSettings(),
                 settings: MaskLockingSettings = MaskLockingSettings(),
                 generator: torch.Generator | int | None = None) -> EditOutput:
    """Edit inside a mask only: invert, then sample the target with latent blending outside the mask.   [DiffEdit, nb 08]

    mask: True where the edit may change the image, at image size (check_mask's shapes), taken to
    latent size (a cell is in it if any of its pixels is) with its holes filled; it must cover some
    pixels and leave some locked (a mask whose latent cells cover the whole grid, as a background
    edit's, locks the latents nowhere: then only composite=True keeps the locked pixels). None computes it automatically from the image and the
    two prompts (edit_mask with settings.mask_settings; generator draws its noise). After every step
    the latents outside the mask are the inversion's path at that step, so there the final latent
    equals the source's latent z0 exactly and the pixels differ from the source by the VAE's
    reconstruction error (plus the decoder's reach across the mask's border).
    Returns EditOutput(image, mask): mask is the latent mask at image size.
    """
    images, single, sources, targets, generator = _edit_door(parts, image, source_prompt, target_prompt, inversion,
                                                             generator)
    if not isinstance(settings, MaskLockingSettings):
        raise CourseInputError(f"settings must be an editing.MaskLockingSettings, got {type(settings).__name__}.")
    check_edit_prompts(parts.tokenizer, sources, targets)
    z0 = image_latents(parts, images)
    if mask is None:
        pixels, small = None, automatic_mask(parts, z0, sources, targets, settings.mask_settings, generator)
    else:
        pixels, small = given_mask(parts, mask, images)
    small = small.to(parts.device)
    inv = run_inversion(parts, z0, sources, inversion, generator)
    first = noisy_start(inv.start(), small if settings.start == "noise" else None, generator)

    def lock(i, k, source, target):
        return torch.where(small, target, source)

    _, z = sample_edit(parts, inv, prompt_embeddings(parts, targets), inversion.guidance_scale, blend=lock, start=first)
    out = latent_images(parts, z)
    full = image_mask(small.cpu(), images.shape[-2:])
    if settings.composite:
        out = torch.where(full if pixels is None else pixels.cpu(), out, images.float().cpu())
    return EditOutput(single_or_batch(out, single), single_or_batch(full, single))
