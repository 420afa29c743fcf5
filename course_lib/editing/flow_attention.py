"""Attention-level editing with a flow transformer: prompt-to-prompt in joint attention, KV-Edit, and their masks.   [nb 10]

flow_prompt_to_prompt (Hertz et al. 2023, adapted to MMDiT): invert the image under the source prompt,
then run a source row and a target row side by side in one transformer batch. The source row rides the
inversion's path (after each step it is put back on it, as direct inversion does, Ju et al. 2024), so
its attention is the source image's; in the windows the target's image rows take the source's
attention to the unchanged words and its image-to-image pattern (joint_attention.JointAttentionReplace).

kv_edit (Zhu et al. 2025, "KV-Edit: training-free image editing for precise background preservation"):
invert under the source prompt, recording every step's and layer's image keys and values; then sample
the target where the tokens OUTSIDE the mask take the source's cached keys and values (so the edited
tokens attend to the source background) and, after each step, the latents outside the mask are put back
on the inversion's path: outside the mask the final latent IS the source's latent z0. The mask comes
from the image and the two captions alone (flow_edit_mask), or from the user (mask=, a reference row),
at the latent grid, grown to whole tokens (the transformer's p x p patches).

flow_edit_mask: where the prompts disagree, as DiffEdit does for eps (Couairon et al. 2023):
"diffedit" = mean |v(z_sigma, c_tgt) - v(z_sigma, c_src)| over draws z_sigma = (1 - sigma) z0 + sigma eps
and channels; "attention" = the image tokens' joint attention to the changed words. sigma = strength.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib import attention, latent, noise
from course_lib.editing.checks import check_window, single_or_batch
from course_lib.editing.controllers import check_window_steps
from course_lib.editing.flow_inversion import FlowInversionSettings, run_flow_inversion, sample_latents
from course_lib.editing.flow_steps import (GuidedVelocity, branch, check_settings, check_steps, edit_door,
                                           image_latents, solve)
from course_lib.editing.joint_attention import (JointAttentionReplace, JointWordAttention, KVCache, cell_mask,
                                                patch_size, token_mask, whole_tokens)
from course_lib.editing.loop import noisy_start
from course_lib.editing.masks import MaskSettings, fill_holes, image_mask, threshold_map
from course_lib.editing.methods import EditOutput, MaskLockingSettings, given_mask
from course_lib.editing.tokens import MAPPER_MODES, changed_positions, token_mapper
from course_lib.validation import CourseInputError, check_choice


# ----------------------------------------------------------------------------------------------
# Where the prompts disagree: velocity differences and joint attention
# ----------------------------------------------------------------------------------------------

def _noised(z0: torch.Tensor, sigma: float, generator) -> torch.Tensor:
    return (1 - sigma) * z0 + sigma * noise.randn_like(z0, generator)


def velocity_difference(system: latent.FlowSystem, z0: torch.Tensor, sources: list[str], targets: list[str],
                        num_draws: int, strength: float, generator) -> torch.Tensor:
    """Return mean |v(z, c_tgt) - v(z, c_src)| over draws and channels (B, 1, h, w) of checked inputs; sigma = strength."""
    pair = GuidedVelocity(system, [branch(system, "source", sources, 1.0), branch(system, "target", targets, 1.0)])
    total = 0
    for _ in range(num_draws):
        z = _noised(z0, strength, generator)
        v_src, v_tgt = pair(torch.cat([z, z]), strength).chunk(2)
        total = total + (v_tgt - v_src).abs().mean(1, keepdim=True)
    return total / num_draws


def word_attention(system: latent.FlowSystem, z0: torch.Tensor, sources: list[str], targets: list[str],
                   num_draws: int, strength: float, generator) -> torch.Tensor:
    """Return the image tokens' joint attention to the changed words, at the latent cells (B, 1, h, w); checked inputs.

    The source rows' attention to the source's changed words plus the target rows' to the target's
    (tokens.changed_positions), heads and layers averaged, over draws.
    """
    positions = [changed_positions(system.tokenizer, s, t) for s, t in zip(sources, targets)]
    control = JointWordAttention(positions={"source.cond": [p[0] for p in positions],
                                            "target.cond": [p[1] for p in positions]})
    pair = GuidedVelocity(system, [branch(system, "source", sources, 1.0), branch(system, "target", targets, 1.0)],
                          controller=control)
    with attention.record_attention(system.transformer, control):
        for _ in range(num_draws):
            z = _noised(z0, strength, generator)
            pair(torch.cat([z, z]), strength)
    tokens = (control.maps["source.cond"] + control.maps["target.cond"]) / control.layers  # (B, n)
    return cell_mask(tokens, patch_size(system.transformer), tuple(z0.shape[-2:])).to(z0.device)


def automatic_flow_mask(system: latent.FlowSystem, z0: torch.Tensor, sources: list[str], targets: list[str],
                        settings: MaskSettings, generator, *, cells: bool = False) -> torch.Tensor:
    """Return flow_edit_mask's mask (B, 1, h, w) bool on the CPU: thresholded, grown, holes filled, whole tokens
    (or, cells=True, at the latent cells: KV-Edit's lock, finer than its tokens)."""
    mapper = velocity_difference if settings.source == "diffedit" else word_attention
    diff = mapper(system, z0, sources, targets, settings.num_draws, settings.strength, generator)
    mask = threshold_map(diff, settings.threshold, settings.normalise, settings.grow_cells,
                         peak_only=settings.peak_only).cpu()
    if not cells:
        mask = fill_holes(whole_tokens(mask, patch_size(system.transformer)))
    empty = [i for i, m in enumerate(mask) if not m.any()]
    if empty:
        raise CourseInputError(f"the automatic {settings.source} mask of image(s) {empty} covers nothing: the two "
                               f"prompts' velocities agree everywhere. Give the mask (mask=...) or other prompts.")
    return mask


@torch.no_grad()
def flow_edit_mask(system: latent.FlowSystem, image: torch.Tensor, source_prompt, target_prompt, *,
                   source: str = "diffedit", num_draws: int = 4, strength: float = 0.9, threshold: float | None = None,
                   grow_cells: int = 0, normalise: str | None = None, peak_only: bool = False,
                   generator: torch.Generator | int | None = None) -> torch.Tensor:
    """Return the automatic edit mask at latent size (B, 1, h, w) bool, latent cells, from the image and the two prompts.   [nb 10]

    MaskSettings(source, ...) as editing.edit_mask takes it, the map from the flow model: "diffedit" the
    velocity difference, "attention" the joint attention to the changed words, at sigma = strength. The
    defaults are KV-Edit's (KV_EDIT_SETTINGS), so this is the mask kv_edit edits in.
    image_mask() gives it at image size. A mask that covers nothing is refused.
    """
    settings = MaskSettings(source, num_draws, strength, threshold, grow_cells, normalise, peak_only)
    images, _, sources, targets, generator = edit_door(system, image, source_prompt, target_prompt, generator)
    return automatic_flow_mask(system, image_latents(system, images), sources, targets, settings, generator,
                               cells=True)


# ----------------------------------------------------------------------------------------------
# Prompt-to-prompt in joint attention
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FlowP2PSettings:
    """Prompt-to-prompt's windows in joint attention, and the token alignment.   [P2P, nb 10]

    cross_window: fractions [start, end) of the steps in which the target's image-to-text attention is
    the source's (P2P's cross-attention injection); self_window: those in which its image-to-image
    pattern is (the layout). A window of zero width is off; one of positive width must select a step.
    mode: 'swap', 'refine' or 'auto' (tokens.token_mapper).
    """

    cross_window: tuple[float, float] = (0.0, 0.8)
    self_window: tuple[float, float] = (0.0, 0.2)
    mode: str = "auto"

    def __post_init__(self):
        object.__setattr__(self, "cross_window", check_window(self.cross_window, "cross_window"))
        object.__setattr__(self, "self_window", check_window(self.self_window, "self_window"))
        object.__setattr__(self, "mode", check_choice(self.mode, MAPPER_MODES, "mode"))


@torch.no_grad()
def flow_prompt_to_prompt(system: latent.FlowSystem, image: torch.Tensor, source_prompt, target_prompt, *,
                          inversion: FlowInversionSettings = FlowInversionSettings(),
                          settings: FlowP2PSettings = FlowP2PSettings(),
                          generator: torch.Generator | int | None = None) -> EditOutput:
    """Edit by prompt-to-prompt in joint attention: source and target side by side, the source on the inversion's path.   [P2P, nb 10]

    One transformer call per step holds [source cond; target uncond; target cond] (the source's velocity
    is not used: its row is put back on the path after every step). Returns EditOutput(image, None).
    Deterministic (generator accepted for the common signature).
    """
    images, single, sources, targets, _ = edit_door(system, image, source_prompt, target_prompt, generator)
    check_settings(inversion, FlowInversionSettings, "inversion")
    check_settings(settings, FlowP2PSettings)
    n = check_steps(system, inversion.num_steps)
    for name in ("cross_window", "self_window"):
        check_window_steps(name, getattr(settings, name), n)
    mappers = [token_mapper(system.tokenizer, s, t, settings.mode) for s, t in zip(sources, targets)]
    if any(not torch.equal(m, mappers[0]) for m in mappers):
        raise CourseInputError("flow_prompt_to_prompt runs one control per batch: give prompt pairs that align alike "
                               "(or edit the images one at a time).")
    inv = run_flow_inversion(system, image_latents(system, images), sources, inversion)
    control = JointAttentionReplace(mapper=mappers[0], cross_window=settings.cross_window,
                                    self_window=settings.self_window)
    velocity = GuidedVelocity(system, [branch(system, "source", sources, 1.0),
                                       branch(system, "target", targets, inversion.guidance_scale)],
                              controller=control, num_steps=n)

    def on_path(i, x):  # the source row back on the inversion's path
        return torch.cat([inv.path[i + 1], x.chunk(2)[1]])

    with attention.record_attention(system.transformer, control):
        z = solve(velocity, torch.cat([inv.start(), inv.start()]), inv.sigmas, inversion.solver,
                  after_step=on_path).end.chunk(2)[1]
    return EditOutput(single_or_batch(system.decode_latents(z), single))


# ----------------------------------------------------------------------------------------------
# KV-Edit
# ----------------------------------------------------------------------------------------------

# KV-Edit's own mask, chosen on the 50 development cases with the shipped model (guidance 2): the velocity
# difference at sigma 0.9, not grown: 92 % edited at 35.5 dB locked, against 88 % at 34.5 dB with mask locking's
# defaults (sigma 0.7, grown one cell) and 96 % at 33.9 dB grown one cell at sigma 0.9.
KV_EDIT_SETTINGS = MaskLockingSettings(mask_strength=0.9, mask_grow=0)

@torch.no_grad()
def kv_edit_latents(system: latent.FlowSystem, z0: torch.Tensor, sources: list[str], targets: list[str],
                    cells: torch.Tensor, inversion: FlowInversionSettings, start: str,
                    generator: torch.Generator | None) -> torch.Tensor:
    """Return KV-Edit's edited latents of checked inputs; cells (B, 1, h, w) bool: True where the edit may change.

    The keys and values are the source's for the tokens with no cell in the mask (a token is p x p cells);
    the latents are put back on the inversion's path at every cell outside the mask, finer than the tokens.
    """
    cells = cells.to(system.device)
    cache = KVCache(mode="record")
    with attention.record_attention(system.transformer, cache):
        inv = run_flow_inversion(system, z0, sources, inversion, controller=cache)
        cache.mode, cache.background = "inject", ~token_mask(cells, patch_size(system.transformer))
        first = noisy_start(inv.start(), cells if start == "noise" else None, generator)

        def lock(i, x):  # outside the mask, the inversion's path: z0 after the last step
            return torch.where(cells, x, inv.path[i + 1])

        return sample_latents(system, first, targets, inv.sigmas, inversion, after_step=lock, controller=cache).end


@torch.no_grad()
def kv_edit(system: latent.FlowSystem, image: torch.Tensor, source_prompt, target_prompt, *, mask=None,
            inversion: FlowInversionSettings = FlowInversionSettings(),
            settings: MaskLockingSettings = KV_EDIT_SETTINGS,
            generator: torch.Generator | int | None = None) -> EditOutput:
    """Edit inside a mask with KV-Edit: the source's background keys and values, and its latents, outside it.   [KV-Edit, nb 10]

    mask: True where the edit may change the image, at image size (editing.check_mask's shapes), taken to
    the latent grid (the cells a masked pixel touches; the keys and values are replaced per token, a token
    being p x p cells, and the latents locked per cell); a user's mask (a reference row) must cover some pixels and
    leave some locked. None computes it from the image and the two captions (flow_edit_mask with
    settings' mask_source, mask_draws, mask_strength (the map's sigma), mask_threshold, mask_grow; never a
    case's ground truth). settings.start: the masked latents start from the inversion's noise ("inverted") or fresh
    N(0, I) ("noise"); settings.composite pastes the source pixels outside the mask (a reference row).
    generator draws the mask's noise and the fresh start. Returns EditOutput(image, mask at image size).
    """
    images, single, sources, targets, generator = edit_door(system, image, source_prompt, target_prompt, generator)
    check_settings(inversion, FlowInversionSettings, "inversion")
    check_settings(settings, MaskLockingSettings)
    check_steps(system, inversion.num_steps)
    z0 = image_latents(system, images)
    if mask is None:
        pixels, cells = None, automatic_flow_mask(system, z0, sources, targets, settings.mask_settings, generator,
                                                  cells=True)
    else:
        pixels, cells = given_mask(system, mask, images)
    z = kv_edit_latents(system, z0, sources, targets, cells, inversion, settings.start, generator)
    out = system.decode_latents(z)
    full = image_mask(cells.cpu(), images.shape[-2:])
    if settings.composite:
        out = torch.where(full if pixels is None else pixels.cpu(), out, images.float().cpu())
    return EditOutput(single_or_batch(out, single), single_or_batch(full, single))
