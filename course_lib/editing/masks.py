"""Maps and masks: where two prompts disagree, from noise predictions or from attention, and masks made from them.   [nb 08]

difference_map (DiffEdit, Couairon et al. 2023) and attention_map (the changed words'
cross-attention) say where an edit should happen; mask_from_map thresholds, grows and fills a
map; LocalBlend (prompt-to-prompt's local blending, Hertz et al. 2023, sec. 3.3) builds its mask
from the attention seen while sampling; edit_mask is the automatic mask mask locking uses.
Masks are (B, 1, h, w) bool at latent size (True = may change) unless image_mask takes them to pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from course_lib import attention, latent, noise, schedules
from course_lib.editing.checks import (check_fraction, check_parts, check_strength, image_batch, latent_batch,
                                       prompt_batch)
from course_lib.editing.primitives import alpha_bars, image_latents, prompt_embeddings, unet_eps
from course_lib.editing.tokens import changed_positions
from course_lib.validation import CourseInputError, check_choice, check_int

NORMALISATIONS = ("max", "minmax")
MASK_SOURCES = ("diffedit", "attention")
MASK_THRESHOLDS = {"diffedit": 0.3, "attention": 0.5}  # chosen on the development cases (shapesedit.DEV_SEED)


# ----------------------------------------------------------------------------------------------
# From a map to a mask
# ----------------------------------------------------------------------------------------------

def normalise_map(diff: torch.Tensor, how: str = "max") -> torch.Tensor:
    """Scale each map (B, 1, h, w) to [0, 1]: by its maximum ("max", DiffEdit's), or from its minimum to its maximum ("minmax")."""
    check_choice(how, NORMALISATIONS, "normalise")
    flat = diff.flatten(1)
    low = flat.amin(1).view(-1, 1, 1, 1) if how == "minmax" else 0.0
    return (diff - low) / (flat.amax(1).view(-1, 1, 1, 1) - low).clamp_min(1e-12)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Return the mask (B, 1, h, w) bool with every region it encloses added (scipy.ndimage.binary_fill_holes).   [nb 08]

    A latent cell that the edit surrounds cannot stay as it was: the VAE decodes each cell with its
    neighbours, so an unchanged island in a changed sea decodes wrong (nb 08 measures it).
    """
    from scipy import ndimage

    filled = [torch.from_numpy(ndimage.binary_fill_holes(m[0].cpu().numpy())) for m in mask]
    return torch.stack(filled)[:, None].to(mask.device)


def grow(mask: torch.Tensor, cells: int = 1) -> torch.Tensor:
    """Return the mask (B, 1, h, w) bool grown by `cells` in every direction (a (2c+1) x (2c+1) max filter)."""
    if cells == 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * cells + 1, 1, cells) > 0.5


def peak_region(mask: torch.Tensor, diff: torch.Tensor) -> torch.Tensor:
    """Return the part of each mask (B, 1, h, w) bool connected (8 neighbours) to the map's maximum.   [nb 08]

    One edit changes one connected region (an object, or the background); the other blobs a map
    shows are where the prompts' difference leaks to other objects through diffuse attention.
    """
    from scipy import ndimage

    out = []
    for m, d in zip(mask, diff):
        labels, _ = ndimage.label(m[0].cpu().numpy(), structure=[[1, 1, 1], [1, 1, 1], [1, 1, 1]])
        peak = labels.flat[int(d[0].flatten().argmax())]
        out.append(torch.from_numpy(labels == peak) if peak else m[0].cpu())
    return torch.stack(out)[:, None].to(mask.device)


def threshold_map(diff: torch.Tensor, threshold: float, normalise: str, grow_cells: int, fill: bool = True,
                  peak_only: bool = False) -> torch.Tensor:
    """Return mask_from_map's mask of a checked map and checked settings."""
    mask = normalise_map(diff, normalise) > threshold
    if peak_only:
        mask = peak_region(mask, diff)
    mask = grow(mask, grow_cells)
    return fill_holes(mask) if fill else mask


def mask_from_map(diff: torch.Tensor, threshold: float = 0.3, *, normalise: str = "max", grow_cells: int = 1,
                  fill: bool = True, peak_only: bool = False) -> torch.Tensor:
    """Return an edit mask (B, 1, h, w) bool from a map: normalise, threshold, keep the peak's region, grow, fill holes.   [nb 08]"""
    latent_batch(diff, 1, "diff")
    return threshold_map(diff, check_fraction(threshold, "threshold"), check_choice(normalise, NORMALISATIONS, "normalise"),
                         check_int(grow_cells, "grow_cells", minimum=0), bool(fill), bool(peak_only))


# ----------------------------------------------------------------------------------------------
# Where the prompts disagree: noise predictions (DiffEdit) and cross-attention
# ----------------------------------------------------------------------------------------------

def _noisy(parts, z0, strength, generator):
    """z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps at t = round(strength * (T - 1)): one draw of the maps' noise level."""
    ab = alpha_bars(parts)
    t = round(strength * (len(ab) - 1))
    return t, schedules.q_sample(z0, t, ab, noise.randn_like(z0, generator))


def eps_difference(parts: latent.UNetSystem, z0: torch.Tensor, sources: list[str], targets: list[str], num_draws: int,
                   strength: float, generator: torch.Generator | None) -> torch.Tensor:
    """Return difference_map of checked latents and prompts (one per row)."""
    cond = prompt_embeddings(parts, sources + targets)
    z0 = z0.to(parts.device, torch.float32)
    total = torch.zeros(len(z0), 1, *z0.shape[2:], device=z0.device)
    for _ in range(num_draws):
        t, z_t = _noisy(parts, z0, strength, generator)
        eps_src, eps_tgt = unet_eps(parts, torch.cat([z_t, z_t]), t, cond).chunk(2)
        total += (eps_tgt - eps_src).abs().mean(1, keepdim=True)
    return total / num_draws


def _check_map_inputs(parts, latents, source_prompt, target_prompt, num_draws, strength, generator):
    z0 = latent_batch(latents, check_parts(parts).unet.config.in_channels)
    b = len(z0)
    return (z0, prompt_batch(parts.tokenizer, source_prompt, b, "source_prompt"),
            prompt_batch(parts.tokenizer, target_prompt, b, "target_prompt"),
            check_int(num_draws, "num_draws", minimum=1), check_strength(strength), noise.as_generator(generator))


@torch.no_grad()
def difference_map(parts: latent.UNetSystem, latents: torch.Tensor, source_prompt, target_prompt, *,
                   num_draws: int = 4, strength: float = 0.7, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Return where the prompts disagree: mean |eps(z_t, tgt) - eps(z_t, src)| over draws and channels.   [DiffEdit, nb 08]

    z_t = sqrt(ab_t) z0 + sqrt(1 - ab_t) eps_k at t = strength * (T - 1), one eps_k per draw. Under CFG
    the difference is g times the conditional one (the unconditional parts cancel), so the
    conditional predictions suffice. Unnormalised (normalise_map, mask_from_map do that).
    Shapes: latents (B, C, h, w) -> (B, 1, h, w).
    """
    return eps_difference(parts, *_check_map_inputs(parts, latents, source_prompt, target_prompt, num_draws, strength,
                                                    generator))


def word_maps(probs: torch.Tensor, rows: list[int], positions: list[list[int]], size: tuple[int, int]) -> torch.Tensor | None:
    """Return the attention (heads averaged) of each row to its token positions, summed, as maps (R, 1, h, w); None off-size."""
    h, w = size
    if probs.shape[2] != h * w:
        return None
    maps = []
    for row, pos in zip(rows, positions):
        p = probs[row].float().mean(0)  # (N, L)
        maps.append(p[:, pos].sum(-1) if pos else torch.zeros(p.shape[0], device=p.device))
    return torch.stack(maps).view(len(rows), 1, h, w)


def word_attention(parts: latent.UNetSystem, z0: torch.Tensor, sources: list[str], targets: list[str], num_draws: int,
                   strength: float, generator: torch.Generator | None) -> torch.Tensor:
    """Return attention_map of checked latents and prompts (one per row)."""
    b = len(z0)
    positions = [changed_positions(parts.tokenizer, s, t_) for s, t_ in zip(sources, targets)]
    cond = prompt_embeddings(parts, sources + targets)
    z0 = z0.to(parts.device, torch.float32)
    size = tuple(z0.shape[-2:])
    sample_size = parts.unet.config.sample_size
    layers = attention.cross_attention_layers(parts.unet, sample_size if isinstance(sample_size, int) else sample_size[0])
    total = torch.zeros(b, 1, *size)
    for _ in range(num_draws):
        t, z_t = _noisy(parts, z0, strength, generator)
        with attention.record_attention(parts.unet, attention.AttentionStore(), layers=layers) as store:
            unet_eps(parts, torch.cat([z_t, z_t]), t, cond)
        for name in layers:
            maps = word_maps(store.probs[name][0], list(range(2 * b)),
                             [p[0] for p in positions] + [p[1] for p in positions], size)
            total += maps[:b] + maps[b:]
    return total / (num_draws * len(layers))


@torch.no_grad()
def attention_map(parts: latent.UNetSystem, latents: torch.Tensor, source_prompt, target_prompt, *,
                  num_draws: int = 4, strength: float = 0.7, generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Return the changed words' cross-attention at latent size, at one noise level: a mask map like difference_map's.   [nb 08]

    z_t as difference_map draws it; the UNet reads [source; target] prompts once per draw; the map
    is the source rows' attention to the source's changed words plus the target rows' to the
    target's (changed_positions), heads and the full-latent-size layers averaged. Shapes: (B, C, h, w) -> (B, 1, h, w).
    """
    return word_attention(parts, *_check_map_inputs(parts, latents, source_prompt, target_prompt, num_draws, strength,
                                                    generator))


# ----------------------------------------------------------------------------------------------
# Local blending: the mask from the attention seen while sampling
# ----------------------------------------------------------------------------------------------

@dataclass
class LocalBlend:
    """Prompt-to-prompt's local blending: the target keeps its own latents only where the edited words are attended.   [P2P sec. 3.3, nb 08]

    observe() (called by an AttentionController's processors) adds up, per step, the conditional
    rows' cross-attention at latent size to the changed words: the source's to source_positions and
    the target's to target_positions (changed_positions). After each step, from step int(start * k)
    on, the maps averaged over the steps so far become a mask (mask_from_map: minmax normalisation,
    threshold, grow, fill) and the target becomes where(mask, target, source). The original scales
    each map by its maximum; with this course's diffuse maps ("max" leaves every cell above 0.3)
    minmax is what finds the object (nb 08 measures both). side: the latent side, or (h, w).
    """

    source_positions: list[list[int]]
    target_positions: list[list[int]]
    side: int | tuple[int, int]
    threshold: float = 0.5
    start: float = 0.2
    grow_cells: int = 1
    normalise: str = "minmax"
    fill: bool = True
    sums: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self):
        if len(self.source_positions) != len(self.target_positions):
            raise CourseInputError("LocalBlend needs one list of source positions and one of target positions per image.")
        size = (self.side, self.side) if isinstance(self.side, int) else tuple(self.side)
        if len(size) != 2:
            raise CourseInputError(f"side must be the latent side or (h, w), got {self.side!r}.")
        self._size = (check_int(size[0], "side", minimum=1), check_int(size[1], "side", minimum=1))
        self.threshold = check_fraction(self.threshold, "threshold")
        self.start = check_fraction(self.start, "start")
        self.grow_cells = check_int(self.grow_cells, "grow_cells", minimum=0)
        self.normalise = check_choice(self.normalise, NORMALISATIONS, "normalise")

    def observe(self, probs: torch.Tensor, step: int) -> None:
        b = probs.shape[0] // 4
        rows = [2 * b + i for i in range(b)] + [3 * b + i for i in range(b)]  # cond_src, cond_tgt (CFG_LAYOUT)
        maps = word_maps(probs, rows, list(self.source_positions) + list(self.target_positions), self._size)
        if maps is None:
            return
        maps = (maps[:b] + maps[b:]).detach().float().cpu()
        while len(self.sums) <= step:
            self.sums.append(torch.zeros_like(maps))
        self.sums[step] += maps

    def mask(self, upto: int | None = None) -> torch.Tensor:
        """The mask (B, 1, h, w) bool from the maps of steps 0..upto (all observed by default)."""
        sums = self.sums if upto is None else self.sums[: upto + 1]
        if not sums:
            raise CourseInputError("LocalBlend has observed no cross-attention at latent size yet.")
        return threshold_map(torch.stack(sums).mean(0), self.threshold, self.normalise, self.grow_cells, self.fill)

    def __call__(self, i: int, k: int, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if i < int(self.start * k):
            return target
        return torch.where(self.mask(i).to(target.device), target, source)


# ----------------------------------------------------------------------------------------------
# Masks at image and latent size, and the automatic edit mask
# ----------------------------------------------------------------------------------------------

def check_mask(mask, images: torch.Tensor) -> torch.Tensor:
    """Return mask as (B, 1, H, W) bool for images (B, 3, H, W); accept (H, W), (1|B, H, W), (1|B, 1, H, W), bool or [0, 1]."""
    if not isinstance(mask, torch.Tensor):
        raise CourseInputError(f"mask must be a torch.Tensor (True where the edit may change the image), "
                               f"got {type(mask).__name__}.")
    b, _, h, w = images.shape
    m = mask
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1] != 1 or m.shape[-2:] != (h, w) or m.shape[0] not in (1, b):
        raise CourseInputError(f"mask must have the image's size {h}x{w}: shape (H, W), (B, H, W) or (B, 1, H, W) "
                               f"with B = 1 or {b}; got {tuple(mask.shape)}.")
    if not m.dtype == torch.bool:
        if not m.is_floating_point() or not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise CourseInputError("mask must be bool or hold finite values in [0, 1] (1 = may change).")
        m = m > 0.5
    return m.expand(b, 1, h, w)


def latent_mask(mask: torch.Tensor, latent_size) -> torch.Tensor:
    """Return the mask at latent size (B, 1, h, w) bool: a latent cell is in it if any of its pixels is (max-pooling)."""
    h, w = latent_size
    f = mask.shape[-2] // h
    return F.max_pool2d(mask.float(), kernel_size=f, stride=f)[..., :h, :w] > 0.5


def image_mask(mask: torch.Tensor, image_size) -> torch.Tensor:
    """Return a latent-size mask (B, 1, h, w) at image size (B, 1, H, W) bool (each cell's pixels)."""
    return F.interpolate(mask.float(), size=tuple(image_size), mode="nearest") > 0.5


@dataclass(frozen=True)
class MaskSettings:
    """How edit_mask finds the edit: the map (source), its draws and noise level, threshold, growth, normalisation.   [nb 08]

    source "diffedit": difference_map (normalised by its maximum); "attention": attention_map
    (minmax). threshold None takes MASK_THRESHOLDS[source]; normalise None the source's own;
    grow_cells: cells added on every side; peak_only keeps the region of the map's maximum.
    """

    source: str = "diffedit"
    num_draws: int = 4
    strength: float = 0.7
    threshold: float | None = None
    grow_cells: int = 1
    normalise: str | None = None
    peak_only: bool = False

    def __post_init__(self):
        def keep(name, value):
            object.__setattr__(self, name, value)

        keep("source", check_choice(self.source, MASK_SOURCES, "mask source"))
        keep("num_draws", check_int(self.num_draws, "num_draws", minimum=1, hint="noise draws the map averages"))
        keep("strength", check_strength(self.strength))
        keep("threshold", MASK_THRESHOLDS[self.source] if self.threshold is None
             else check_fraction(self.threshold, "threshold"))
        keep("grow_cells", check_int(self.grow_cells, "grow_cells", minimum=0))
        keep("normalise", ("max" if self.source == "diffedit" else "minmax") if self.normalise is None
             else check_choice(self.normalise, NORMALISATIONS, "normalise"))
        keep("peak_only", bool(self.peak_only))


def automatic_mask(parts: latent.UNetSystem, z0: torch.Tensor, sources: list[str], targets: list[str],
                   settings: MaskSettings, generator: torch.Generator | None) -> torch.Tensor:
    """Return edit_mask's mask (B, 1, h, w) bool, on the CPU, of checked latents and prompts."""
    mapper = eps_difference if settings.source == "diffedit" else word_attention
    diff = mapper(parts, z0, sources, targets, settings.num_draws, settings.strength, generator)
    mask = threshold_map(diff, settings.threshold, settings.normalise, settings.grow_cells,
                         peak_only=settings.peak_only).cpu()
    empty = [i for i, m in enumerate(mask) if not m.any()]
    if empty:
        raise CourseInputError(f"the automatic {settings.source} mask of image(s) {empty} covers nothing: the two "
                               f"prompts' difference is flat there. Give the mask (mask=...) or other prompts.")
    return mask


def _automatic_mask_door(parts, image, source_prompt, target_prompt, settings: MaskSettings, generator):
    images, _ = image_batch(image, check_parts(parts).vae)
    b = len(images)
    sources = prompt_batch(parts.tokenizer, source_prompt, b, "source_prompt")
    targets = prompt_batch(parts.tokenizer, target_prompt, b, "target_prompt")
    small = automatic_mask(parts, image_latents(parts, images), sources, targets, settings, noise.as_generator(generator))
    return images, small


@torch.no_grad()
def edit_mask(parts: latent.UNetSystem, image: torch.Tensor, source_prompt, target_prompt, *, source: str = "diffedit",
              num_draws: int = 4, strength: float = 0.7, threshold: float | None = None, grow_cells: int = 1,
              normalise: str | None = None, peak_only: bool = False,
              generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Return the automatic edit mask at latent size (B, 1, h, w) bool, from the image and the two prompts alone.   [nb 08]

    The map of MaskSettings(source, ...) thresholded by mask_from_map (threshold, grow_cells, holes
    filled; peak_only keeps the region of the map's maximum). image_mask() gives it at image size.
    A mask that covers nothing is refused (the prompts' difference is flat).
    """
    settings = MaskSettings(source, num_draws, strength, threshold, grow_cells, normalise, peak_only)
    return _automatic_mask_door(parts, image, source_prompt, target_prompt, settings, generator)[1]


@torch.no_grad()
def diffedit_mask(parts: latent.UNetSystem, image: torch.Tensor, source_prompt, target_prompt, *, num_draws: int = 4,
                  strength: float = 0.7, threshold: float | None = None, grow_cells: int = 1,
                  generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Return DiffEdit's automatic mask at image size (B, 1, H, W) bool (edit_mask with source="diffedit").   [DiffEdit, nb 08]"""
    settings = MaskSettings("diffedit", num_draws, strength, threshold, grow_cells)
    images, small = _automatic_mask_door(parts, image, source_prompt, target_prompt, settings, generator)
    return image_mask(small, images.shape[-2:])
