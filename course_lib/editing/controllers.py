"""Prompt-to-prompt's attention controllers (policy) and the processor that calls them (mechanism).   [P2P, nb 08]

Controllers are diffusers attention processors installed by layer name (attention.record_attention,
which restores the originals on exit); the sampling loop tells the controller the step (set_step),
nothing counts calls. A controller's edit(name, probs, is_cross) may change the probabilities;
small subclasses (replace, re-weight) override that one method.

Batch layout of the two-branch loop (explicit, CFG_LAYOUT): the latents hold rows [source; target]
(B each), the UNet gets them twice, so its 4B rows are

    [uncond_src (B), uncond_tgt (B), cond_src (B), cond_tgt (B)]

and an attention probability tensor (4B, heads, N, L) views as (2 [uncond, cond], 2 [src, tgt],
B, heads, N, L). Controllers edit the conditional target rows only, as the original code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_lib import attention
from course_lib.editing.checks import check_window
from course_lib.editing.masks import LocalBlend
from course_lib.validation import CourseInputError, check_finite, check_float_tensor

CFG_LAYOUT = ("uncond_src", "uncond_tgt", "cond_src", "cond_tgt")  # rows of the two-branch UNet batch


def window_steps(window: tuple[float, float], num_steps: int) -> range:
    """Return the steps i a window of fractions [start, end) selects of num_steps: int(start N) <= i < int(end N), as P2P."""
    start, end = window
    return range(int(start * num_steps), int(end * num_steps))


def check_window_steps(name: str, window: tuple[float, float], num_steps: int) -> None:
    """Raise if a window of positive width selects none of num_steps steps (it would change nothing)."""
    start, end = window
    selected = window_steps((start, end), num_steps)
    if start < end and len(selected) == 0:
        raise CourseInputError(
            f"{name} ({start:g}, {end:g}) selects no step of the {num_steps} the edit runs (steps i with "
            f"int({start:g} x {num_steps}) = {selected.start} <= i < int({end:g} x {num_steps}) = {selected.stop}): "
            f"it would change nothing. Widen it, raise num_steps or strength, or turn it off with a window of "
            f"zero width, e.g. ({start:g}, {start:g}).")


def check_mapper(mapper) -> torch.Tensor | None:
    """Return mapper if it is None or a 1-D integer tensor (L,) of source positions (-1 for none), else raise."""
    if mapper is not None and (not isinstance(mapper, torch.Tensor) or mapper.ndim != 1 or mapper.is_floating_point()):
        raise CourseInputError("mapper must be a 1-D integer tensor (L,) of source positions, -1 for none "
                               "(editing.token_mapper gives it), or None.")
    return mapper


def cfg_layout(probs: torch.Tensor) -> torch.Tensor:
    """View (4B, ...) as (2 [uncond, cond], 2 [src, tgt], B, ...) (CFG_LAYOUT)."""
    rows = probs.shape[0]
    if rows % 4:
        raise CourseInputError(f"prompt-to-prompt expects the UNet batch {CFG_LAYOUT} (4B rows), got {rows} rows.")
    return probs.view(2, 2, rows // 4, *probs.shape[1:])


def layout_rows(probs: torch.Tensor, row: str) -> torch.Tensor:
    """Return the B rows of one CFG_LAYOUT branch, e.g. 'cond_tgt', of recorded probabilities (4B, heads, N, L)."""
    if row not in CFG_LAYOUT:
        raise CourseInputError(f"row must be one of {CFG_LAYOUT}, got {row!r}.")
    check_float_tensor(probs, "probs")
    i = CFG_LAYOUT.index(row)
    return cfg_layout(probs)[i // 2, i % 2]


@dataclass
class StepControl(attention.AttentionStore):
    """An attention processor factory that the sampling loop tells its step (set_step), nothing counts calls.   [P2P, nb 08, 10]

    active(window): whether step i lies in a window of fractions [start, end) of the steps (window_steps).
    The UNet's AttentionController and the MMDiT's JointAttentionControl (joint_attention.py) build on it.
    """

    step: int = 0
    num_steps: int = 1

    def set_step(self, step: int, num_steps: int) -> None:
        self.step, self.num_steps = int(step), int(num_steps)

    def active(self, window: tuple[float, float]) -> bool:
        return self.step in window_steps(window, self.num_steps)


@dataclass
class AttentionController(StepControl):
    """An attention processor factory whose edit(name, probs, is_cross) may change attention probabilities.   [P2P, nb 08]

    Install with attention.record_attention(unet, controller) (it restores the originals on exit).
    The sampling loop calls set_step(i, num_steps) before each UNet call; `active(window)` says if
    step i lies in a window of fractions [start, end) of the steps (window_steps). probs arrive as
    (R, heads, N, L) with R = 4B rows in the CFG_LAYOUT order. With record=True the probabilities
    AFTER the edit are kept in self.probs, as AttentionStore does (cross-attention only unless
    self_attention=True). local_blend, when given, sees every cross-attention map BEFORE the edit
    (the target's own). The base class edits nothing.
    """

    record: bool = False
    local_blend: LocalBlend | None = None

    def processor(self, name: str):
        return _ControlProcessor(self, name)

    def edit(self, name: str, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        return probs


class _ControlProcessor(attention.RecordingProcessor):
    """attention's recording processor whose hook lets the controller edit the probabilities before V."""

    def __init__(self, controller: AttentionController, name: str):
        super().__init__(controller, name)
        self.controller = controller

    def handle(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        if is_cross and self.controller.local_blend is not None:
            self.controller.local_blend.observe(probs, self.controller.step)
        probs = self.controller.edit(self.name, probs, is_cross)  # (R, heads, N, L)
        if self.controller.record and (is_cross or self.controller.self_attention):
            self.controller.probs.setdefault(self.name, []).append(probs.detach().float().cpu())
        return probs


@dataclass
class AttentionReplace(AttentionController):
    """Word swap / refinement: in the window, the target's cross-attention maps become the source's.   [P2P sec. 3.2, nb 08]

    mapper (L,): for each target token position the source position whose map it takes, or -1 to
    keep its own (a word swap maps every position to itself). self_window: in it, the target's
    self-attention maps become the source's too (keeps the layout more firmly).
    """

    mapper: torch.Tensor | None = None
    cross_window: tuple[float, float] = (0.0, 0.8)
    self_window: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        self.cross_window = check_window(self.cross_window, "cross_window")
        self.self_window = check_window(self.self_window, "self_window")
        check_mapper(self.mapper)

    def edit(self, name: str, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        window = self.cross_window if is_cross else self.self_window
        if not self.active(window):
            return probs
        p = cfg_layout(probs).clone()
        source, target = p[1, 0], p[1, 1]  # conditional rows
        if not is_cross or self.mapper is None:
            p[1, 1] = source
        else:
            mapper = self.mapper.to(probs.device)
            taken = mapper >= 0
            target[..., taken] = source[..., mapper[taken]]
        return p.view_as(probs)


@dataclass
class AttentionReweight(AttentionReplace):
    """Re-weighting: after the replacement, multiply the target's cross-attention to some tokens by a scale.   [P2P sec. 3.2, nb 08]

    scales (L,): a factor per token position (1 for the others, 0 removes a token's attention; finite
    and >= 0); applied in reweight_window. With source == target prompts the target's maps are the source's with the
    chosen words scaled.
    """

    scales: torch.Tensor | None = None
    reweight_window: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        super().__post_init__()
        self.reweight_window = check_window(self.reweight_window, "reweight_window")
        if self.scales is not None:
            check_finite(check_float_tensor(self.scales, "scales"), "scales")
            if self.scales.ndim != 1 or (self.scales < 0).any():
                raise CourseInputError("scales must be a 1-D tensor (L,) of factors >= 0 (1 leaves a token alone, "
                                       "0 removes its attention).")

    def edit(self, name: str, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        probs = super().edit(name, probs, is_cross)
        if not is_cross or self.scales is None or not self.active(self.reweight_window):
            return probs
        p = cfg_layout(probs).clone()
        p[1, 1] = p[1, 1] * self.scales.to(probs.device, probs.dtype)
        return p.view_as(probs)
