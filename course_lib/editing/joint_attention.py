"""Attention control in joint attention (SD3's MMDiT): the processor (mechanism) and its controls (policy).   [nb 10]

An MMDiT block attends over the image tokens and the text tokens together (Esser et al. 2024, sec. 3):
queries, keys and values of the n image tokens and the L text tokens are concatenated,

    Q = [Q_img; Q_txt],  K = [K_img; K_txt],  V = [V_img; V_txt],  P = softmax(Q K^T / sqrt(d)),

so one probability matrix (n + L) x (n + L) holds four blocks: image-to-image (the UNet's self-attention),
image-to-text (its cross-attention), text-to-image and text-to-text. JointAttentionProcessor computes
diffusers' JointAttnProcessor2_0 step by step and hands the controller two hooks: edit_kv (keys and values,
before the product) and edit_probs (P, before it weights V; computed only when the control wants it).
Controls are installed with attention.record_attention(transformer, control), which restores the original
processors on exit; the sampling loop (flow_steps.GuidedVelocity) tells the control the step and the
batch's blocks ("source.cond", "target.uncond", ...), nothing counts calls.

    JointAttentionReplace  prompt-to-prompt in joint attention: the target's image-to-text probabilities
                           (and in self_window its image-to-image pattern) come from the source branch
    KVCache                KV-Edit: record the source's image keys and values per step and layer while
                           inverting; while editing, background tokens take them
    JointWordAttention     record the image tokens' attention to chosen text positions (mask maps)

Tokens and latent cells: the transformer patchifies the latent (C, h, w) into (h/p)(w/p) tokens of p x p
cells, row-major (diffusers' PatchEmbed); token_mask and cell_mask convert masks between the two grids.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from course_lib.editing.checks import check_window
from course_lib.editing.controllers import StepControl, check_mapper
from course_lib.validation import CourseInputError

# ----------------------------------------------------------------------------------------------
# Tokens <-> latent cells
# ----------------------------------------------------------------------------------------------


def patch_size(transformer) -> int:
    """The side p of the transformer's patches, in latent cells (config.patch_size)."""
    return int(transformer.config.patch_size)


def token_mask(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Return (B, n) bool: a token is in the mask if any of its p x p latent cells is.   Shapes: (B, 1, h, w) -> (B, h/p w/p)."""
    return (F.max_pool2d(mask.float(), patch, patch) > 0.5).flatten(1)


def cell_mask(tokens: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """Return the latent-cell grid (B, 1, h, w) of a token mask (B, n) bool (or a per-token map): each token's p x p cells."""
    h, w = size
    grid = tokens.view(len(tokens), 1, h // patch, w // patch)
    return grid.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


def whole_tokens(mask: torch.Tensor, patch: int) -> torch.Tensor:
    """Return the mask (B, 1, h, w) grown to whole tokens: the cells of every token that has a cell in it."""
    return cell_mask(token_mask(mask, patch), patch, tuple(mask.shape[-2:]))


# ----------------------------------------------------------------------------------------------
# The mechanism: JointAttnProcessor2_0 with hooks
# ----------------------------------------------------------------------------------------------

@dataclass
class JointAttentionControl(StepControl):
    """A joint-attention control: a processor factory whose hooks may change keys, values and probabilities.   [nb 10]

    Install with attention.record_attention(transformer, control). step and num_steps: set by the loop
    before each transformer call (controllers.StepControl.set_step; active(window) reads them); blocks:
    the names of the batch's B-row blocks, set by the loop too. The base class changes nothing (the
    transformer's output is JointAttnProcessor2_0's).
    """

    blocks: tuple[str, ...] = ()

    def processor(self, name: str):
        return JointAttentionProcessor(self, name)

    def rows(self, tensor: torch.Tensor, block: str) -> torch.Tensor:
        """The rows of one block (a view of a contiguous tensor): tensor (R, ...) with R = len(blocks) B."""
        if block not in self.blocks:
            raise CourseInputError(f"the batch has no block {block!r}; its blocks: {self.blocks}.")
        return tensor.reshape(len(self.blocks), -1, *tensor.shape[1:])[self.blocks.index(block)]

    def wants_probs(self, name: str) -> bool:
        """Whether layer `name` should compute P explicitly (for edit_probs) this call; else SDPA runs."""
        return False

    def edit_kv(self, name: str, key: torch.Tensor, value: torch.Tensor, n: int):
        """Return (key, value) (R, heads, n + L, d): the first n tokens are the image's."""
        return key, value

    def edit_probs(self, name: str, probs: torch.Tensor, n: int) -> torch.Tensor:
        """Return P (R, heads, n + L, n + L), rows summing to 1: the first n rows and columns are the image's."""
        return probs


class JointAttentionProcessor:
    """diffusers' JointAttnProcessor2_0 computation (SD3's MMDiT attention), with the control's hooks."""

    def __init__(self, control: JointAttentionControl, name: str):
        self.control, self.name = control, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        b, n = hidden_states.shape[:2]
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def heads(t):  # (B, N, h d) -> (B, h, N, d)
            return t.view(b, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = heads(query), heads(key), heads(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if encoder_hidden_states is not None:  # the text stream's projections, after the image's
            q_txt = heads(attn.add_q_proj(encoder_hidden_states))
            k_txt = heads(attn.add_k_proj(encoder_hidden_states))
            v_txt = heads(attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                q_txt = attn.norm_added_q(q_txt)
            if attn.norm_added_k is not None:
                k_txt = attn.norm_added_k(k_txt)
            query, key, value = torch.cat([query, q_txt], 2), torch.cat([key, k_txt], 2), torch.cat([value, v_txt], 2)
        control = self.control
        key, value = control.edit_kv(self.name, key, value, n)
        if control.wants_probs(self.name):
            probs = (query @ key.transpose(-1, -2) / head_dim**0.5).softmax(-1)  # (B, h, n + L, n + L)
            out = control.edit_probs(self.name, probs, n) @ value
        else:
            out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(b, -1, attn.heads * head_dim).to(query.dtype)
        if encoder_hidden_states is not None:
            out, text_out = out[:, :n], out[:, n:]
            if not attn.context_pre_only:
                text_out = attn.to_add_out(text_out)
        out = attn.to_out[1](attn.to_out[0](out))
        return (out, text_out) if encoder_hidden_states is not None else out


# ----------------------------------------------------------------------------------------------
# The policies
# ----------------------------------------------------------------------------------------------

@dataclass
class JointAttentionReplace(JointAttentionControl):
    """Prompt-to-prompt in joint attention: in its windows the target's image rows take the source's attention.   [P2P sec. 3.2, nb 10]

    For each image query of the target's conditional rows ("target.cond"), with the source's ("source.cond")
    at the same step: in cross_window, the probabilities on the text tokens become the source's (text
    position j takes the source's column mapper[j]; mapper -1 keeps the target's own, a new word), as
    P2P's M_t := M_s; the image part is rescaled so the row still sums to 1. In self_window, the image
    part's pattern becomes the source's (image-to-image attention: the layout), rescaled to the row's
    image mass. mapper: (L,) over the text positions (editing.token_mapper), the positions past it (T5's
    zero rows) map to themselves. The unconditional rows are left alone, as the UNet controllers do.
    """

    mapper: torch.Tensor | None = None
    cross_window: tuple[float, float] = (0.0, 0.8)
    self_window: tuple[float, float] = (0.0, 0.2)

    def __post_init__(self):
        self.mapper = check_mapper(self.mapper)
        self.cross_window, self.self_window = (check_window(w, name) for w, name in
                                               ((self.cross_window, "cross_window"), (self.self_window, "self_window")))

    def wants_probs(self, name: str) -> bool:
        return self.active(self.cross_window) or self.active(self.self_window)

    def edit_probs(self, name: str, probs: torch.Tensor, n: int) -> torch.Tensor:
        probs = probs.clone()
        source = self.rows(probs, "source.cond")[:, :, :n]  # (B, h, n, n + L): image queries
        target = self.rows(probs, "target.cond")[:, :, :n]
        row = target.clone()
        if self.active(self.cross_window):
            length = row.shape[-1] - n
            mapper = torch.arange(length, device=row.device)
            if self.mapper is not None:
                mapper[: len(self.mapper)] = self.mapper.to(row.device)
            taken = (mapper >= 0).nonzero().flatten()
            row[..., n + taken] = source[..., n + mapper[taken]]
            text = row[..., n:].sum(-1, keepdim=True)
            image = row[..., :n].sum(-1, keepdim=True)
            row[..., :n] *= (1 - text).clamp_min(0) / image.clamp_min(1e-12)
        if self.active(self.self_window):
            image = row[..., :n].sum(-1, keepdim=True)
            row[..., :n] = source[..., :n] * image / source[..., :n].sum(-1, keepdim=True).clamp_min(1e-12)
        target.copy_(row)
        return probs


@dataclass
class KVCache(JointAttentionControl):
    """KV-Edit's cache: the source's image keys and values per step and layer, and where they replace the target's.   [KV-Edit, nb 10]

    mode "record" (while inverting): keep the image tokens' K and V of the "source.cond" rows under
    (step, layer), step being the SAMPLING step whose interval the inversion step covers. mode "inject"
    (while editing): in every row of the batch, the tokens where background is True (B, n) take the
    recorded K and V of the same step and layer, so the edited tokens attend to the source's background
    (Zhu et al. 2025: the foreground's queries read the background's cached keys and values).
    """

    mode: str = "record"
    background: torch.Tensor | None = None
    cache: dict = field(default_factory=dict)

    def edit_kv(self, name: str, key: torch.Tensor, value: torch.Tensor, n: int):
        if self.mode == "record":
            self.cache[(self.step, name)] = (self.rows(key, "source.cond")[:, :, :n].clone(),
                                             self.rows(value, "source.cond")[:, :, :n].clone())
            return key, value
        k_src, v_src = self.cache[(self.step, name)]  # (B, h, n, d)
        repeat = len(self.blocks)
        keep = self.background.to(key.device)[:, None, :, None].repeat(repeat, 1, 1, 1)  # (R, 1, n, 1)
        key, value = key.clone(), value.clone()
        key[:, :, :n] = torch.where(keep, k_src.repeat(repeat, 1, 1, 1), key[:, :, :n])
        value[:, :, :n] = torch.where(keep, v_src.repeat(repeat, 1, 1, 1), value[:, :, :n])
        return key, value


@dataclass
class JointWordAttention(JointAttentionControl):
    """Record, per block of rows, the image tokens' attention to chosen text positions, heads and layers summed.   [nb 10]

    positions: {block: [text positions per image row of that block]} (a list of B lists). maps[block]
    (B, n) adds, at every layer, each image token's probability on its row's positions; layers counts the
    layers seen.
    """

    positions: dict = field(default_factory=dict)
    maps: dict = field(default_factory=dict)
    layers: int = 0

    def wants_probs(self, name: str) -> bool:
        return True

    def edit_probs(self, name: str, probs: torch.Tensor, n: int) -> torch.Tensor:
        self.layers += 1
        for block, per_row in self.positions.items():
            image = self.rows(probs, block)[:, :, :n, n:].mean(1)  # (B, n, L): heads averaged
            got = torch.stack([image[i][:, pos].sum(-1) if pos else image.new_zeros(n) for i, pos in enumerate(per_row)])
            self.maps[block] = self.maps.get(block, 0) + got.detach().float().cpu()
        return probs
