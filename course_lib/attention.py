"""Cross-attention: how the denoiser reads the prompt, and which words each image position reads.   [notebook 05]

In Stable Diffusion's UNet (Rombach et al. 2022, sec. 3.3) every transformer block lets the image
features x (N positions, one per pixel of the feature map) read the prompt embedding c (L tokens,
from the text encoder) through

    Q = x W_q,   K = c W_k,   V = c W_v,
    Attention(Q, K, V) = softmax(Q K^T / sqrt(d)) V                              [eq. 5.4, nb 05]

with h heads: W_q, W_k, W_v are split into h blocks of d columns, each head attends on its own, the
h outputs are concatenated and mapped by W_o (+ b_o). Row n of softmax(Q K^T / sqrt(d)) is a
probability distribution over the L tokens: how much image position n reads each word. Those rows,
reshaped to the feature map, are the per-word attention maps that prompt-to-prompt edits (nb 08).

`cross_attention` is eq. 5.4 from scratch (`cross_attention_with_probs` returns the probabilities too); tests/test_attention.py checks it equals diffusers'
`Attention` module (diffusers.models.attention_processor.Attention, the layer inside
UNet2DConditionModel) with the same weights. `AttentionStore` is an attention processor, installed
through diffusers' public processor API (set_processor / set_attn_processor) and removed on exit by
`record_attention`, that computes the same output and keeps the probabilities. `word_maps` turns
probabilities into one map per word, and `dominant_words` into the word each position reads most.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch

from course_lib.validation import CourseInputError, check_float_tensor, check_number, check_positive_int


@dataclass
class AttentionWeights:
    """The weights of one attention layer, nn.Linear convention (out, in): w_q (h d, Dx), w_k, w_v (h d, Dc), w_o (Dx, h d)."""

    w_q: torch.Tensor
    w_k: torch.Tensor
    w_v: torch.Tensor
    w_o: torch.Tensor
    heads: int
    b_o: torch.Tensor | None = None
    b_q: torch.Tensor | None = None
    b_k: torch.Tensor | None = None
    b_v: torch.Tensor | None = None


def weights_of(attn) -> AttentionWeights:
    """Return the weights of a diffusers Attention module that eq. 5.4 needs; raise for variants it does not cover.

    Covered: to_q/to_k/to_v (with or without bias), to_out[0], any number of heads, scale 1/sqrt(d).
    Not covered (raise): group/spatial/cross norms, q/k norms, added key/value projections, residual
    connection, output rescaling.
    """
    unsupported = {"group_norm": attn.group_norm, "spatial_norm": attn.spatial_norm, "norm_cross": attn.norm_cross,
                   "norm_q": attn.norm_q, "add_k_proj": attn.add_k_proj}
    used = [name for name, module in unsupported.items() if module is not None]
    if used or attn.residual_connection or attn.rescale_output_factor != 1.0 or not attn.scale_qk:
        raise CourseInputError(f"this Attention uses {used or 'a residual, rescaling or custom scale'}; "
                               f"cross_attention() covers the plain layer of eq. 5.4 only.")
    lin = lambda m: m.weight.detach()  # noqa: E731
    bias = lambda m: None if m.bias is None else m.bias.detach()  # noqa: E731
    return AttentionWeights(lin(attn.to_q), lin(attn.to_k), lin(attn.to_v), lin(attn.to_out[0]), attn.heads,
                            bias(attn.to_out[0]), bias(attn.to_q), bias(attn.to_k), bias(attn.to_v))


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    return x @ w.T + (b if b is not None else 0)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, inner = x.shape  # (B, N, h d) -> (B, h, N, d)
    if inner % heads:
        raise CourseInputError(f"the projection width {inner} is not a multiple of heads={heads}.")
    return x.reshape(b, n, heads, inner // heads).transpose(1, 2)


def _check_inputs(hidden_states: torch.Tensor, context: torch.Tensor, w: AttentionWeights) -> None:
    check_float_tensor(hidden_states, "hidden_states")
    check_float_tensor(context, "context")
    if not isinstance(w, AttentionWeights):
        raise CourseInputError(f"weights must be an attention.AttentionWeights (weights_of(layer)), got {type(w).__name__}.")
    check_positive_int(w.heads, "heads")
    if hidden_states.ndim != 3 or context.ndim != 3 or hidden_states.shape[0] != context.shape[0]:
        raise CourseInputError(f"hidden_states must be (B, N, Dx) and context (B, L, Dc) with the same B; got "
                               f"{tuple(hidden_states.shape)} and {tuple(context.shape)}. Flatten a feature map "
                               f"(B, C, H, W) to (B, H*W, C) first.")
    if hidden_states.shape[-1] != w.w_q.shape[1] or context.shape[-1] != w.w_k.shape[1]:
        raise CourseInputError(f"widths do not match the weights: hidden_states has {hidden_states.shape[-1]} "
                               f"(W_q takes {w.w_q.shape[1]}), context has {context.shape[-1]} (W_k takes {w.w_k.shape[1]}).")


def attention_probs(hidden_states: torch.Tensor, context: torch.Tensor, weights: AttentionWeights) -> torch.Tensor:
    """Return softmax(Q K^T / sqrt(d)) per head: how much each image position reads each token.   [eq. 5.4, nb 05]

    Shapes: hidden_states (B, N, Dx), context (B, L, Dc) -> (B, h, N, L); each row sums to 1.
    """
    _check_inputs(hidden_states, context, weights)
    q = _split_heads(_linear(hidden_states, weights.w_q, weights.b_q), weights.heads)  # (B, h, N, d)
    k = _split_heads(_linear(context, weights.w_k, weights.b_k), weights.heads)  # (B, h, L, d)
    return (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).softmax(dim=-1)


def cross_attention_with_probs(hidden_states: torch.Tensor, context: torch.Tensor,
                               weights: AttentionWeights) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (W_o concat_heads(softmax(Q K^T / sqrt(d)) V) + b_o, softmax(Q K^T / sqrt(d))): the output and the probabilities.   [eq. 5.4, nb 05]

    Q = x W_q, K = c W_k, V = c W_v, per head. The same numbers as diffusers'
    Attention(query_dim=Dx, cross_attention_dim=Dc, heads=h, dim_head=d) called as
    attn(hidden_states, encoder_hidden_states=context), with its weights (weights_of(attn)).
    Shapes: (B, N, Dx), (B, L, Dc) -> out (B, N, Dx) and probs (B, h, N, L).
    """
    probs = attention_probs(hidden_states, context, weights)
    v = _split_heads(_linear(context, weights.w_v, weights.b_v), weights.heads)  # (B, h, L, d)
    out = (probs @ v).transpose(1, 2).flatten(2)  # (B, N, h d): heads side by side
    return _linear(out, weights.w_o, weights.b_o), probs


def cross_attention(hidden_states: torch.Tensor, context: torch.Tensor, weights: AttentionWeights) -> torch.Tensor:
    """Return W_o concat_heads(softmax(Q K^T / sqrt(d)) V) + b_o, Q = x W_q, K = c W_k, V = c W_v.   [eq. 5.4, nb 05]

    The output of cross_attention_with_probs (which also returns the probabilities).
    Shapes: (B, N, Dx), (B, L, Dc) -> (B, N, Dx).
    """
    return cross_attention_with_probs(hidden_states, context, weights)[0]


# ----------------------------------------------------------------------------------------------
# Recording attention inside diffusers models, through the public processor API
# ----------------------------------------------------------------------------------------------

@dataclass
class AttentionStore:
    """A diffusers attention processor that computes like AttnProcessor and keeps the probabilities.   [nb 05-06]

    One instance serves many layers: install it with `record_attention`, which gives each layer
    its own name. probs[name] is a list (one entry per call) of (B, h, N, L) tensors on the CPU;
    only cross-attention calls (encoder_hidden_states given) are kept unless self_attention=True.
    """

    self_attention: bool = False
    probs: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    def processor(self, name: str):
        """Return the processor to install at layer `name`: it records under that name."""
        return RecordingProcessor(self, name)

    def clear(self) -> None:
        self.probs.clear()


class RecordingProcessor:
    """diffusers' AttnProcessor computation, with a hook on the probabilities between softmax and V."""

    def __init__(self, store: AttentionStore, name: str):
        self.store, self.name = store, name

    def handle(self, probs: torch.Tensor, is_cross: bool) -> torch.Tensor:
        """Keep probs (B, heads, N, L) in the store and return them unchanged (editing overrides this)."""
        if is_cross or self.store.self_attention:
            self.store.probs.setdefault(self.name, []).append(probs.detach().float().cpu())
        return probs

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        # AttnProcessor's computation, step by step, with the probabilities kept.
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        batch, length, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, length, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B h, N, L), rows batch-major
        probs = self.handle(probs.view(-1, attn.heads, *probs.shape[1:]), is_cross).reshape(probs.shape)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@contextlib.contextmanager
def record_attention(model, store: AttentionStore | None = None, *, layers=None):
    """Install an AttentionStore's processors, yield the store, restore the original processors on exit.   [nb 05-06]

    model: a diffusers Attention module, or a model with attn_processors / set_attn_processor
    (e.g. UNet2DConditionModel, whose cross-attention layers are named "...attn2.processor").
    layers: names to record (default: all); the others keep their own processor.
    """
    store = store if store is not None else AttentionStore()
    if not isinstance(store, AttentionStore):
        raise CourseInputError(f"store must be an attention.AttentionStore (or a subclass), got {type(store).__name__}.")
    if isinstance(layers, str):
        layers = [layers]
    if hasattr(model, "set_attn_processor"):
        originals = dict(model.attn_processors)
        wanted = set(originals) if layers is None else set(layers)
        missing = wanted - set(originals)
        if missing:
            raise CourseInputError(f"no attention layer named {sorted(missing)}; the model has {sorted(originals)}.")
        model.set_attn_processor({n: store.processor(n) if n in wanted else p for n, p in originals.items()})
        try:
            yield store
        finally:
            model.set_attn_processor(originals)
    elif hasattr(model, "set_processor") and hasattr(model, "processor"):
        original = model.processor
        model.set_processor(store.processor("attn"))
        try:
            yield store
        finally:
            model.set_processor(original)
    else:
        raise CourseInputError(f"{type(model).__name__} is neither a diffusers Attention nor a model with set_attn_processor.")


def cross_attention_layers(unet, resolution: int | None = None) -> list[str]:
    """Return the names of a UNet2DConditionModel's cross-attention processors whose feature map is resolution x resolution.

    Read from the names: down_blocks.i works at sample_size / 2^i, the mid block at the coarsest
    level, up_blocks.j at sample_size / 2^(len(up_blocks) - 1 - j). resolution None: all of them.
    """
    if getattr(unet, "attn_processors", None) is None or getattr(unet.config, "block_out_channels", None) is None:
        raise CourseInputError(f"unet must be a diffusers UNet2DConditionModel, got {type(unet).__name__}.")
    if resolution is not None:
        resolution = check_positive_int(resolution, "resolution")
    size = unet.config.sample_size if isinstance(unet.config.sample_size, int) else unet.config.sample_size[0]
    levels = len(unet.config.block_out_channels)
    out = []
    for name in unet.attn_processors:
        if ".attn2." not in name:
            continue
        block, _, rest = name.partition(".")
        if block == "mid_block":
            level = levels - 1
        else:
            index = int(rest.split(".")[0])
            level = index if block == "down_blocks" else levels - 1 - index
        if resolution is None or size // 2**level == resolution:
            out.append(name)
    return out


# ----------------------------------------------------------------------------------------------
# From probabilities to pictures: which words each image position reads
# ----------------------------------------------------------------------------------------------

def _as_maps(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    check_float_tensor(probs, "probs")
    height, width = check_positive_int(height, "height"), check_positive_int(width, "width")
    if probs.ndim == 4:  # (B, h, N, L): average the heads
        probs = probs.mean(1)
    if probs.ndim != 3 or probs.shape[1] != height * width:
        raise CourseInputError(f"probs must be (B, [heads,] N, L) with N = height * width = {height * width}; "
                               f"got {tuple(probs.shape)}.")
    return probs.transpose(1, 2).reshape(probs.shape[0], probs.shape[2], height, width)  # (B, L, H, W)


def word_maps(probs: torch.Tensor, tokens: list[str], height: int, width: int, *,
              skip=("<|pad|>",)) -> list[tuple[str, torch.Tensor]]:
    """Return [(token, map (H, W))] for one prompt: how much each position reads each token, heads averaged.   [nb 05]

    probs: (1, [h,] N, L) for one image; tokens: the L token strings (text.tokens(ids, tokenizer));
    tokens in `skip` (padding, by default) are left out.
    """
    maps = _as_maps(probs, height, width)
    if maps.shape[0] != 1 or maps.shape[1] != len(tokens):
        raise CourseInputError(f"word_maps takes one prompt: probs for B = 1 and L = len(tokens) = {len(tokens)}; "
                               f"got B = {maps.shape[0]}, L = {maps.shape[1]}.")
    return [(tok, maps[0, i]) for i, tok in enumerate(tokens) if tok not in skip]


def dominant_words(probs: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Return, for each image position, the index of the token it reads most (heads averaged).   Shapes: -> (B, H, W)."""
    return _as_maps(probs, height, width).argmax(dim=1)


# ----------------------------------------------------------------------------------------------
# A layer with weights set by hand: every pixel reads the word that names its colour
# ----------------------------------------------------------------------------------------------

def colour_reader(tokenizer, word_colours: dict[str, tuple[float, float, float]], *, temperature: float = 0.02):
    """Return a diffusers Attention whose pixels attend to the word naming their colour (weights set by hand).   [nb 05]

    Queries read pixel features [r, g, b, 1] (colours in [0, 1]); keys read one-hot token ids
    (context = one_hot(input_ids, vocab)). For a colour word with RGB c the key is [2c, -|c|^2],
    so the logit is (2 p.c - |c|^2) / (tau) = (|p|^2 - |p - c|^2) / tau: the softmax over words
    prefers the word whose colour is nearest the pixel's. Other words get a key far away. Values
    carry each word's colour, so the output repaints the image from the prompt's colour words.
    """
    from diffusers.models.attention_processor import Attention

    temperature = check_number(temperature, "temperature", low=0, low_open=True, hint="the softmax's sharpness; 0.02")
    vocab = tokenizer.get_vocab()
    missing = [w for w in word_colours if w not in vocab]
    if missing:
        raise CourseInputError(f"words {missing} are not in the tokenizer's vocabulary.")
    dim = 4
    attn = Attention(query_dim=dim, cross_attention_dim=len(vocab), heads=1, dim_head=dim, bias=False, out_bias=False)
    w_k = torch.zeros(dim, len(vocab))
    w_v = torch.zeros(dim, len(vocab))
    w_k[3] = -4.0  # a word without a colour sits at |c|^2 = 4, far from every colour in [0, 1]^3
    for word, rgb in word_colours.items():
        c = torch.tensor(rgb, dtype=torch.float32)
        w_k[:3, vocab[word]] = 2 * c
        w_k[3, vocab[word]] = -(c**2).sum()
        w_v[:3, vocab[word]] = c
    # the layer scales logits by 1/sqrt(d) = 1/2; W_q = (2 / tau) I turns that into 1 / tau
    with torch.no_grad():
        attn.to_q.weight.copy_(torch.eye(dim) * 2 / temperature)
        attn.to_k.weight.copy_(w_k)
        attn.to_v.weight.copy_(w_v)
        attn.to_out[0].weight.copy_(torch.eye(dim))
    return attn.eval()


def pixel_features(images: torch.Tensor) -> torch.Tensor:
    """Return colour_reader's query input [r, g, b, 1] per pixel, colours in [0, 1].   Shapes: (B, 3, H, W) -> (B, H*W, 4)."""
    check_float_tensor(images, "images")
    if images.ndim != 4 or images.shape[1] != 3:
        raise CourseInputError(f"images must be (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}.")
    rgb = (images.clamp(-1, 1) + 1) / 2
    flat = rgb.flatten(2).transpose(1, 2)  # (B, H*W, 3)
    return torch.cat([flat, torch.ones_like(flat[..., :1])], dim=-1)
