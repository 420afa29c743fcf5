"""The MMDiT from scratch: Stable Diffusion 3's transformer as plain functions of tensors and its weights.   [nb 10]

SD3's denoiser (Esser et al. 2024, sec. 4, fig. 2) is a DiT (Peebles & Xie 2023) whose blocks carry two
streams, image tokens and text tokens, each with its own weights, that meet in one attention:

    z (B, C, H, W) --patchify--> (B, n, p p C), n = (H/p)(W/p)
    x = patches W_e^T + b_e + P            (B, n, D)   P: a fixed 2D sin-cos table, not learned
    y = caption W_y^T + b_y                (B, L, D)   the text stream
    c = MLP_t(sinusoid(t)) + MLP_g(pooled) (B, D)      t = 1000 sigma: the noise level and the whole prompt
    per block and stream, (shift, scale, gate) x 2 = Linear(SiLU(c))   (AdaLN-Zero)
        [a_x; a_y] = attention over all n + L tokens of LN(.) (1 + scale_1) + shift_1, per stream W_q, W_k, W_v, W_o
        x = x + gate_1 a_x;  x = x + gate_2 MLP(LN(x) (1 + scale_2) + shift_2);  the same for y
    v = unpatchify(Linear(LN(x) (1 + scale) + shift))   (B, C, H, W): the velocity

Each function computes the diffusers module its docstring names from that module's weights (tests/test_mmdit.py
checks it). Tokens run row-major over the (H/p, W/p) grid; a token holds its p x p cells as (row p, column q,
channel C), the order SD3 unpatchifies its output in. Covered: SD3's blocks with qk-norm None, "layer_norm" or
"rms_norm"; not SD3.5's dual-attention blocks.

    >>> v = mmdit.forward(transformer, z, 1000 * sigma, states, pooled)     # = transformer(...).sample
    >>> quadrants = mmdit.attention_quadrants(transformer, z, 1000 * sigma, states, pooled, index=2)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from diffusers import SD3Transformer2DModel
from diffusers.models.attention import JointTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import CombinedTimestepTextProjEmbeddings, PatchEmbed
from diffusers.models.normalization import RMSNorm

from course_lib.validation import (CourseInputError, check_finite, check_float_tensor, check_int, check_number,
                                   check_positive_int)

EPS = 1e-6  # the epsilon of every LayerNorm in SD3's blocks and final layer
TIME_CHANNELS = 256  # width of the sinusoidal noise-level embedding that the time MLP reads


class Modulation(NamedTuple):
    """AdaLayerNormZero's outputs in its order: the modulated input, then four of the six vectors from c."""

    x: torch.Tensor  # (B, N, D): LN(x) (1 + scale_msa) + shift_msa, the attention's input
    gate_msa: torch.Tensor  # (B, D)
    shift_mlp: torch.Tensor  # (B, D)
    scale_mlp: torch.Tensor  # (B, D)
    gate_mlp: torch.Tensor  # (B, D)


class Quadrants(NamedTuple):
    """One joint attention's probabilities (B, h, queries, keys), split at the n image and L text tokens."""

    image_to_image: torch.Tensor  # (B, h, n, n): the UNet's self-attention
    image_to_text: torch.Tensor  # (B, h, n, L): the UNet's cross-attention
    text_to_image: torch.Tensor  # (B, h, L, n): new in MMDiT, the words read the image
    text_to_text: torch.Tensor  # (B, h, L, L)


# ----------------------------------------------------------------------------------------------
# Elementary operations, written out; input checks, once per public entry point
# ----------------------------------------------------------------------------------------------

def _linear(x: torch.Tensor, layer) -> torch.Tensor:
    return x @ layer.weight.T + (0 if layer.bias is None else layer.bias)


def _silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _layer_norm(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:  # no weight or bias: AdaLN supplies them
    centred = x - x.mean(-1, keepdim=True)
    return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)


def _mlp(x: torch.Tensor, ff) -> torch.Tensor:  # diffusers' FeedForward: Linear, tanh-GELU, Linear
    u = _linear(x, ff.net[0].proj)
    return _linear(0.5 * u * (1 + torch.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u**3))), ff.net[2])


def _head_norm(x: torch.Tensor, norm) -> torch.Tensor:  # qk-norm of each head's d values: LayerNorm, RMSNorm, none
    if norm is None:
        return x
    if isinstance(norm, torch.nn.LayerNorm):
        x = _layer_norm(x, norm.eps)
    else:  # RMSNorm: x / sqrt(mean(x^2) + eps), no centring
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)
    x = x if norm.weight is None else x * norm.weight
    return x if getattr(norm, "bias", None) is None else x + norm.bias


def _tensor(x, name: str, shape: str, ndim: int, width: int | None = None, batch: int | None = None) -> torch.Tensor:
    check_float_tensor(x, name)
    if x.ndim != ndim or (width is not None and x.shape[-1] != width):
        raise CourseInputError(f"{name} must have the shape {shape}{f' with width {width}' if width else ''}, "
                               f"got {tuple(x.shape)}.")
    if batch is not None and len(x) != batch:
        raise CourseInputError(f"{name} must have one row per image ({batch}), got {len(x)}.")
    return check_finite(x, name)


def _check_module(module, cls, name: str, where: str) -> None:
    if not isinstance(module, cls):
        raise CourseInputError(f"{name} must be a diffusers {cls.__name__} ({where}), got {type(module).__name__}.")


def _check_grid(height: int, width: int, p: int, name: str) -> None:
    if height % p or width % p:
        raise CourseInputError(f"{name} height and width ({height}, {width}) must be multiples of patch_size={p}: "
                               f"crop or pad the latents, or use a patch size that divides both.")


def _check_attention(attn) -> None:
    _check_module(attn, Attention, "attn", "block.attn of a JointTransformerBlock")
    if attn.add_q_proj is None or attn.add_k_proj is None:
        raise CourseInputError("attn has no text-stream projections (add_q_proj, add_k_proj): not a joint attention.")
    head = (attn.to_q.out_features // attn.heads,)
    for name, norm in [(name, getattr(attn, name)) for name in ("norm_q", "norm_k", "norm_added_q", "norm_added_k")]:
        if norm is not None and (not isinstance(norm, (torch.nn.LayerNorm, RMSNorm))
                                 or tuple(getattr(norm, "normalized_shape", getattr(norm, "dim", ()))) != head):
            raise CourseInputError(f"attn.{name} is not a per-head LayerNorm or RMSNorm; mmdit covers qk_norm None, "
                                   f"'layer_norm' and 'rms_norm'.")


def _check_streams(image_tokens, text_tokens, c, block) -> None:
    """Check a block (SD3's, not SD3.5's) and its inputs x (B, n, D), y (B, L, D), c (B, D)."""
    _check_module(block, JointTransformerBlock, "block", "transformer.transformer_blocks[i]")
    if block.use_dual_attention:
        raise CourseInputError("block is an SD3.5 dual-attention block (use_dual_attention=True); mmdit covers SD3's.")
    _check_attention(block.attn)
    dim = block.norm1.linear.in_features
    x = _tensor(image_tokens, "image_tokens", "(B, n, D)", 3, dim)
    _tensor(text_tokens, "text_tokens", "(B, L, D)", 3, dim, len(x))
    _tensor(c, "c", "(B, D)", 2, dim, len(x))


def _check_adaln(x, c, linear, chunks: int) -> None:
    _check_module(linear, torch.nn.Linear, "linear", "block.norm1.linear, or norm_out.linear")
    dim = linear.in_features
    if linear.out_features != chunks * dim:
        raise CourseInputError(f"linear must map D to {chunks} D ({chunks} vectors), got {dim} -> {linear.out_features}.")
    _tensor(c, "c", "(B, D)", 2, dim, len(_tensor(x, "x", "(B, N, D)", 3, dim)))


def _timesteps(timestep, batch: int | None) -> torch.Tensor:
    """Return timestep as a float tensor (B,): from a number, or a tensor (B,) or (); one value serves every image."""
    if isinstance(timestep, torch.Tensor) and timestep.numel() > 1:
        if timestep.ndim != 1 or timestep.dtype == torch.bool or timestep.is_complex():
            raise CourseInputError(f"timestep must be a number or a real tensor (B,) (t = 1000 sigma), got a "
                                   f"{timestep.dtype} tensor of shape {tuple(timestep.shape)}.")
        t = check_finite(timestep.float(), "timestep")
    else:
        t = torch.tensor([check_number(timestep, "timestep", hint="SD3's t = 1000 sigma")])
    if batch is not None and len(t) not in (1, batch):
        raise CourseInputError(f"timestep must be one number or one per image ({batch}), got {len(t)} values.")
    return t if batch is None else t.expand(batch)


# ----------------------------------------------------------------------------------------------
# 1. Patches and positions
# ----------------------------------------------------------------------------------------------

def patchify(latents: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut latents into p x p patches, one token each, row-major.   [DiT sec. 3.1, nb 10]

    Shapes: (B, C, H, W) -> (B, (H/p)(W/p), p p C), a token's values ordered (row p, column q, channel C).
    """
    latents, p = _tensor(latents, "latents", "(B, C, H, W)", 4), check_positive_int(patch_size, "patch_size")
    _check_grid(*latents.shape[-2:], p, "latents'")
    return _patchify(latents, p)


def _patchify(latents: torch.Tensor, p: int) -> torch.Tensor:
    b, ch, h, w = latents.shape
    x = latents.reshape(b, ch, h // p, p, w // p, p)  # (B, C, h', p, w', q)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), p * p * ch)  # (B, h' w', p q C)


def unpatchify(tokens: torch.Tensor, patch_size: int, height: int, width: int) -> torch.Tensor:
    """Put tokens (B, (H/p)(W/p), p p C) back as latents (B, C, H, W): the inverse of patchify.   [DiT sec. 3.1, nb 10]"""
    tokens, p = _tensor(tokens, "tokens", "(B, n, p p C)", 3), check_positive_int(patch_size, "patch_size")
    height, width = check_positive_int(height, "height"), check_positive_int(width, "width")
    _check_grid(height, width, p, "the")
    n = (height // p) * (width // p)
    if tokens.shape[1] != n or tokens.shape[2] % (p * p):
        raise CourseInputError(f"tokens of a {height}x{width} latent in {p}x{p} patches must be (B, {n}, {p}*{p}*C), "
                               f"got {tuple(tokens.shape)}.")
    return _unpatchify(tokens, p, height, width)


def _unpatchify(tokens: torch.Tensor, p: int, height: int, width: int) -> torch.Tensor:
    b, _, k = tokens.shape
    x = tokens.reshape(b, height // p, width // p, p, p, k // (p * p))  # (B, h', w', p, q, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, k // (p * p), height, width)  # (B, C, h', p, w', q) -> (B, C, H, W)


def sincos_position_table(dim: int, grid_size: int, base_size: float, interpolation_scale: float = 1.0) -> torch.Tensor:
    """Return the fixed position table P (G G, D): row g G + j = [s(x_j), s(y_g)].   [DiT sec. 3.1, nb 10]

    s(u) = [sin(u w_k), cos(u w_k)] (D/2 values), w_k = 10000^(-k / (D/4)), k < D/4; positions
    x_j = j base_size / (G interpolation_scale), the same for the rows y_g. The first half of a row encodes
    the column, the second the row.
    Equal to diffusers' get_2d_sincos_pos_embed(D, G, base_size=..., interpolation_scale=...).
    """
    dim, grid_size = check_positive_int(dim, "dim"), check_positive_int(grid_size, "grid_size")
    if dim % 4:
        raise CourseInputError(f"dim must be a multiple of 4 (a sin and a cos for each of two axes), got {dim}.")
    return _sincos_table(dim, grid_size, check_number(base_size, "base_size", low=0, low_open=True),
                         check_number(interpolation_scale, "interpolation_scale", low=0, low_open=True))


def _sincos_table(dim: int, grid: int, base: float, scale: float) -> torch.Tensor:
    positions = torch.arange(grid, dtype=torch.float64) * base / (grid * scale)  # (G,)
    omega = 10000.0 ** (-torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (D/4,)
    rows, cols = torch.meshgrid(positions, positions, indexing="ij")  # (G, G) each

    def s(u):  # (G G,) -> (G G, D/2)
        angles = torch.outer(u.flatten(), omega)
        return torch.cat([angles.sin(), angles.cos()], dim=1)
    return torch.cat([s(cols), s(rows)], dim=1).float()  # (G G, D)


def _check_latents(latents, pos_embed) -> torch.Tensor:
    """Check latents (B, C, H, W) against SD3's PatchEmbed: its channels, H and W multiples of p, within its table."""
    _check_module(pos_embed, PatchEmbed, "pos_embed", "transformer.pos_embed")
    if pos_embed.pos_embed_max_size is None or pos_embed.norm is not None:
        raise CourseInputError("pos_embed must be SD3's PatchEmbed: pos_embed_max_size set and no layer_norm.")
    channels, p, grid = pos_embed.proj.in_channels, pos_embed.patch_size, pos_embed.pos_embed_max_size
    latents = _tensor(latents, "latents", f"(B, {channels}, H, W)", 4)
    if latents.shape[1] != channels:
        raise CourseInputError(f"latents must have {channels} channels, got {latents.shape[1]}.")
    _check_grid(*latents.shape[-2:], p, "latents'")
    if max(latents.shape[-2:]) // p > grid:
        raise CourseInputError(f"latents of {tuple(latents.shape[-2:])} make a token grid larger than the position "
                               f"table's {grid}x{grid} (pos_embed_max_size): use at most {grid * p}x{grid * p} latents.")
    return latents


def patch_embed(latents: torch.Tensor, pos_embed: PatchEmbed) -> torch.Tensor:
    """Embed latents as tokens: x = patchify(z) W_e^T + b_e + P, P the centre of the sin-cos table.   [SD3 sec. 4, nb 10]

    pos_embed: transformer.pos_embed. Its convolution with kernel = stride = p is a linear map of each patch:
    W_e is its weight (D, C, p, q) reordered to (D, p q C). The table covers a G x G grid (G = pos_embed_max_size)
    and is cropped to the (H/p, W/p) grid at its centre. Shapes: (B, C, H, W) -> (B, (H/p)(W/p), D).
    """
    return _patch_embed(_check_latents(latents, pos_embed), pos_embed)


def _patch_embed(latents: torch.Tensor, module) -> torch.Tensor:
    p, grid, conv = module.patch_size, module.pos_embed_max_size, module.proj
    h, w = latents.shape[-2] // p, latents.shape[-1] // p
    table = _sincos_table(conv.out_channels, grid, module.base_size, module.interpolation_scale).view(grid, grid, -1)
    top, left = (grid - h) // 2, (grid - w) // 2
    table = table[top: top + h, left: left + w].reshape(h * w, -1)  # (n, D)
    w_e = conv.weight.permute(0, 2, 3, 1).flatten(1)  # (D, C, p, q) -> (D, p q C)
    return _patchify(latents, p) @ w_e.T + conv.bias + table.to(latents)  # (B, n, D)


# ----------------------------------------------------------------------------------------------
# 2. The conditioning vector c: noise level and pooled text
# ----------------------------------------------------------------------------------------------

def timestep_embedding(timestep, dim: int = TIME_CHANNELS) -> torch.Tensor:
    """Return [cos(t f_k), sin(t f_k)], f_k = 10000^(-k / (dim/2)), k < dim/2.   [Transformer sec. 3.5, nb 10]

    timestep: a number or a tensor (B,), SD3's t = 1000 sigma. Equal to diffusers' Timesteps(dim,
    flip_sin_to_cos=True, downscale_freq_shift=0), SD3's time_proj. Shapes: (B,) -> (B, dim).
    """
    dim = check_positive_int(dim, "dim")
    if dim % 2:
        raise CourseInputError(f"dim must be even (a cos and a sin per frequency), got {dim}.")
    return _timestep_embedding(_timesteps(timestep, None), dim)


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float32, device=t.device) / (dim // 2))
    angles = t.float()[:, None] * freqs  # (B, dim/2)
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def conditioning(timestep, pooled_projections: torch.Tensor,
                 time_text_embed: CombinedTimestepTextProjEmbeddings) -> torch.Tensor:
    """Return c = MLP_t(sinusoid(t)) + MLP_g(pooled), each MLP Linear-SiLU-Linear.   [SD3 fig. 2, nb 10]

    time_text_embed: transformer.time_text_embed; timestep: a number or (B,), t = 1000 sigma.
    Shapes: pooled (B, P) -> c (B, D), the vector that modulates every block.
    """
    _check_module(time_text_embed, CombinedTimestepTextProjEmbeddings, "time_text_embed", "transformer.time_text_embed")
    width = time_text_embed.text_embedder.linear_1.in_features
    pooled = _tensor(pooled_projections, "pooled_projections", "(B, P)", 2, width)
    return _conditioning(_timesteps(timestep, len(pooled)), pooled, time_text_embed)


def _conditioning(t: torch.Tensor, pooled: torch.Tensor, module) -> torch.Tensor:
    time, text = module.timestep_embedder, module.text_embedder
    sinusoid = _timestep_embedding(t, time.linear_1.in_features).to(pooled)  # (B, 256)
    return (_linear(_silu(_linear(sinusoid, time.linear_1)), time.linear_2)
            + _linear(_silu(_linear(pooled, text.linear_1)), text.linear_2))  # (B, D)


# ----------------------------------------------------------------------------------------------
# 3. AdaLN: shifts, scales and gates from c
# ----------------------------------------------------------------------------------------------

def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Return LN(x) (1 + scale) + shift, LN without weights (eps 1e-6).   [DiT sec. 3.2, nb 10]

    Shapes: x (B, N, D), shift and scale (B, D) -> (B, N, D).
    """
    x = _tensor(x, "x", "(B, N, D)", 3)
    for name, v in (("shift", shift), ("scale", scale)):
        _tensor(v, name, "(B, D)", 2, x.shape[-1], len(x))
    return _modulate(x, shift, scale)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return _layer_norm(x) * (1 + scale[:, None]) + shift[:, None]


def adaln_modulation(x: torch.Tensor, c: torch.Tensor, linear: torch.nn.Linear) -> Modulation:
    """Split Linear(SiLU(c)) into (shift, scale, gate) x 2; x' = LN(x) (1 + scale_msa) + shift_msa.   [DiT sec. 3.2, nb 10]

    AdaLN-Zero: the gates multiply the attention's and the MLP's outputs, so a zero `linear` (the init) makes
    the block the identity. linear: block.norm1.linear (image) or block.norm1_context.linear (text).
    Equal to diffusers' AdaLayerNormZero(x, emb=c). Shapes: x (B, N, D), c (B, D).
    """
    _check_adaln(x, c, linear, 6)
    return _adaln_zero(x, c, linear)


def _adaln_zero(x: torch.Tensor, c: torch.Tensor, linear) -> Modulation:
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = _linear(_silu(c), linear).chunk(6, dim=1)
    return Modulation(_modulate(x, shift_msa, scale_msa), gate_msa, shift_mlp, scale_mlp, gate_mlp)


def adaln_continuous(x: torch.Tensor, c: torch.Tensor, linear: torch.nn.Linear) -> torch.Tensor:
    """Return LN(x) (1 + scale) + shift, (scale, shift) = Linear(SiLU(c)): scale first, no gate.   [SD3 sec. 4, nb 10]

    The final layer's norm (norm_out), and the text's in the last block, whose text has no output.
    Equal to diffusers' AdaLayerNormContinuous. Shapes: x (B, N, D), c (B, D) -> (B, N, D).
    """
    _check_adaln(x, c, linear, 2)
    return _adaln_continuous(x, c, linear)


def _adaln_continuous(x: torch.Tensor, c: torch.Tensor, linear) -> torch.Tensor:
    scale, shift = _linear(_silu(c), linear).chunk(2, dim=1)
    return _modulate(x, shift, scale)


# ----------------------------------------------------------------------------------------------
# 4-5. Joint attention, the joint block, the way out, the whole transformer
# ----------------------------------------------------------------------------------------------

def _joint_probs(x: torch.Tensor, y: torch.Tensor, attn) -> tuple[torch.Tensor, torch.Tensor]:
    """Return P = softmax(Q K^T / sqrt(d)) (B, h, n+L, n+L) and V (B, h, n+L, d), image tokens first."""
    def heads(t):  # (B, N, h d) -> (B, h, N, d)
        return t.view(t.shape[0], t.shape[1], attn.heads, t.shape[2] // attn.heads).transpose(1, 2)

    def stream(tokens, to_q, to_k, to_v, norm_q, norm_k):  # each stream: its own projections and qk-norm
        return (_head_norm(heads(_linear(tokens, to_q)), norm_q), _head_norm(heads(_linear(tokens, to_k)), norm_k),
                heads(_linear(tokens, to_v)))
    qx, kx, vx = stream(x, attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k)
    qy, ky, vy = stream(y, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj, attn.norm_added_q, attn.norm_added_k)
    q, k = torch.cat([qx, qy], dim=2), torch.cat([kx, ky], dim=2)
    return (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(dim=-1), torch.cat([vx, vy], dim=2)


def _joint_attention(x: torch.Tensor, y: torch.Tensor, attn) -> tuple[torch.Tensor, torch.Tensor]:
    probs, v = _joint_probs(x, y, attn)
    out = (probs @ v).transpose(1, 2).flatten(2)  # (B, n+L, h d): heads side by side
    out_x, out_y = out[:, : x.shape[1]], out[:, x.shape[1]:]  # split back into the streams
    return _linear(out_x, attn.to_out[0]), out_y if attn.to_add_out is None else _linear(out_y, attn.to_add_out)


def joint_attention(image_tokens: torch.Tensor, text_tokens: torch.Tensor,
                    attn: Attention) -> tuple[torch.Tensor, torch.Tensor]:
    """Attend over both streams: [a_x; a_y] = softmax([Q_x; Q_y][K_x; K_y]^T / sqrt(d)) [V_x; V_y].   [SD3 sec. 4, nb 10]

    Each stream has its own W_q, W_k, W_v (to_* for the image, add_*_proj for the text), qk-norm and output
    projection (to_out[0], to_add_out). In the last block (context_pre_only) the text has no output projection:
    its rows come back as attended, and the block drops them. Equal to JointAttnProcessor2_0 on attn (block.attn).
    Shapes: (B, n, D), (B, L, D) -> (a_x (B, n, D), a_y (B, L, D)).
    """
    _check_attention(attn)
    dim = attn.to_q.in_features
    x = _tensor(image_tokens, "image_tokens", "(B, n, D)", 3, dim)
    _tensor(text_tokens, "text_tokens", "(B, L, D)", 3, dim, len(x))
    return _joint_attention(x, text_tokens, attn)


def _attention_inputs(x, y, c, block) -> tuple[Modulation, torch.Tensor, Modulation | None]:
    """The block's AdaLN: the image's Modulation, the text's attention input, the text's Modulation (None if last)."""
    m = _adaln_zero(x, c, block.norm1.linear)
    if block.context_pre_only:
        return m, _adaln_continuous(y, c, block.norm1_context.linear), None
    m_y = _adaln_zero(y, c, block.norm1_context.linear)
    return m, m_y.x, m_y


def joint_block(image_tokens: torch.Tensor, text_tokens: torch.Tensor, c: torch.Tensor,
                block: JointTransformerBlock) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run one MMDiT block, per stream: x += gate_1 a_x; x += gate_2 MLP(LN(x) (1 + scale_2) + shift_2).   [SD3 fig. 2, nb 10]

    a_x, a_y: joint_attention of the AdaLN-modulated streams. Returns (image, text), image first as everywhere
    here (diffusers' block returns (text, image)); text is None after the last block (context_pre_only).
    Shapes: (B, n, D), (B, L, D), c (B, D) -> ((B, n, D), (B, L, D) or None).
    """
    _check_streams(image_tokens, text_tokens, c, block)
    return _joint_block(image_tokens, text_tokens, c, block)


def _joint_block(x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, block) -> tuple[torch.Tensor, torch.Tensor | None]:
    m, y_in, m_y = _attention_inputs(x, y, c, block)
    a_x, a_y = _joint_attention(m.x, y_in, block.attn)
    x = x + m.gate_msa[:, None] * a_x
    x = x + m.gate_mlp[:, None] * _mlp(_modulate(x, m.shift_mlp, m.scale_mlp), block.ff)
    if m_y is None:
        return x, None
    y = y + m_y.gate_msa[:, None] * a_y
    return x, y + m_y.gate_mlp[:, None] * _mlp(_modulate(y, m_y.shift_mlp, m_y.scale_mlp), block.ff_context)


def _check_transformer_inputs(transformer, latents, timestep, encoder_hidden_states, pooled_projections) -> tuple:
    _check_module(transformer, SD3Transformer2DModel, "transformer", "flow_text2image.make_transformer()")
    config = transformer.config
    if config.dual_attention_layers:
        raise CourseInputError("transformer has SD3.5's dual-attention layers; mmdit covers SD3's blocks.")
    for block in transformer.transformer_blocks:
        _check_attention(block.attn)
    latents = _check_latents(latents, transformer.pos_embed)
    states = _tensor(encoder_hidden_states, "encoder_hidden_states", "(B, L, joint_attention_dim)", 3,
                     config.joint_attention_dim, len(latents))
    pooled = _tensor(pooled_projections, "pooled_projections", "(B, pooled_projection_dim)", 2,
                     config.pooled_projection_dim, len(latents))
    return latents, _timesteps(timestep, len(latents)), states, pooled


def _run_blocks(transformer, latents, t, states, pooled, stop: int) -> tuple:
    x = _patch_embed(latents, transformer.pos_embed)  # (B, n, D)
    c = _conditioning(t, pooled, transformer.time_text_embed)  # (B, D)
    y = _linear(states, transformer.context_embedder)  # (B, L, D): the caption's tokens, at the blocks' width
    for block in transformer.transformer_blocks[:stop]:
        x, y = _joint_block(x, y, c, block)
    return x, y, c


def final_layer(image_tokens: torch.Tensor, c: torch.Tensor, transformer: SD3Transformer2DModel,
                height: int, width: int) -> torch.Tensor:
    """Return v = unpatchify(Linear(LN(x) (1 + scale) + shift)), (scale, shift) from c.   [DiT sec. 3.2, nb 10]

    SD3's way out: norm_out (adaln_continuous), proj_out (D -> p p C), unpatchify to (B, C, height, width).
    """
    _check_module(transformer, SD3Transformer2DModel, "transformer", "flow_text2image.make_transformer()")
    _check_adaln(image_tokens, c, transformer.norm_out.linear, 2)
    p = transformer.config.patch_size
    height, width = check_positive_int(height, "height"), check_positive_int(width, "width")
    _check_grid(height, width, p, "the")
    if image_tokens.shape[1] != (height // p) * (width // p):
        raise CourseInputError(f"image_tokens must hold {(height // p) * (width // p)} tokens for a {height}x{width} "
                               f"latent in {p}x{p} patches, got {image_tokens.shape[1]}.")
    return _final_layer(image_tokens, c, transformer, height, width)


def _final_layer(x: torch.Tensor, c: torch.Tensor, transformer, height: int, width: int) -> torch.Tensor:
    out = _linear(_adaln_continuous(x, c, transformer.norm_out.linear), transformer.proj_out)  # (B, n, p p C)
    return _unpatchify(out, transformer.config.patch_size, height, width)


def attention_quadrants(transformer: SD3Transformer2DModel, latents: torch.Tensor, timestep,
                        encoder_hidden_states: torch.Tensor, pooled_projections: torch.Tensor, index: int) -> Quadrants:
    """Return block `index`'s joint-attention probabilities per head, as image/text queries x keys.   [SD3 sec. 4, nb 10]

    Arguments as forward's. A query's row sums to 1 over its two quadrants: an image token shares one unit
    of attention between the image and the words.
    """
    inputs = _check_transformer_inputs(transformer, latents, timestep, encoder_hidden_states, pooled_projections)
    index = check_int(index, "index", minimum=0, maximum=len(transformer.transformer_blocks) - 1)
    x, y, c = _run_blocks(transformer, *inputs, index)
    block = transformer.transformer_blocks[index]
    m, y_in, _ = _attention_inputs(x, y, c, block)
    probs, n = _joint_probs(m.x, y_in, block.attn)[0], x.shape[1]
    return Quadrants(probs[..., :n, :n], probs[..., :n, n:], probs[..., n:, :n], probs[..., n:, n:])


def forward(transformer: SD3Transformer2DModel, latents: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
            pooled_projections: torch.Tensor) -> torch.Tensor:
    """Return the velocity v(z, t, text): patch_embed, conditioning, every joint_block, final_layer.   [SD3 fig. 2, nb 10]

    Equal to transformer(latents, timestep=..., encoder_hidden_states=..., pooled_projections=...).sample.
    timestep: a number or (B,), t = 1000 sigma. Shapes: latents (B, C, H, W), encoder_hidden_states
    (B, L, joint_attention_dim), pooled_projections (B, pooled_projection_dim) -> (B, C_out, H, W).
    """
    latents, t, states, pooled = _check_transformer_inputs(transformer, latents, timestep, encoder_hidden_states,
                                                           pooled_projections)
    x, _, c = _run_blocks(transformer, latents, t, states, pooled, len(transformer.transformer_blocks))
    return _final_layer(x, c, transformer, *latents.shape[-2:])
